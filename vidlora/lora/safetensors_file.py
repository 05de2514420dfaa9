"""Reading a .safetensors file safely: never unpickle, bound and check the header first.

The header is parsed and checked here, before safetensors sees the file, so that every
malformed file (truncated, oversized or non-JSON header, offsets that do not tile the data
area, unknown dtypes) fails with one LoRAFormatError naming the file, and so that a
pickle (.ckpt/.pt/.bin/.pth, or a pickle renamed .safetensors) is refused without a
single byte of it being deserialized. Only then does safetensors load the tensors.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass

import torch

from vidlora.errors import LoRAFormatError, UnsafeFileError

__all__ = ["RawFile", "read_safetensors", "MAX_HEADER_BYTES", "PICKLE_SUFFIXES"]

# safetensors' own bound (100,000,000 bytes). A real LoRA header is far smaller: ~150
# bytes per tensor, so 2,400 tensors (a rank-128 Wan 14B LoRA with diffs) is ~0.4 MB.
MAX_HEADER_BYTES = 100_000_000

# Extensions whose loaders unpickle: loading one can run arbitrary code.
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")

_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip of pickles)
_HASH_CHUNK = 1 << 24


@dataclass
class RawFile:
    """A safetensors file as read from disk, before any LoRA interpretation."""

    path: str
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    size_bytes: int

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def _fail(path: str, what: str) -> LoRAFormatError:
    return LoRAFormatError(f"{path}: {what}")


def _refuse_pickle(path: str, why: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"{path}: refused: {why}; loading it would unpickle, and unpickling runs arbitrary code. "
        "vidlora reads .safetensors files only (convert the file with a tool you trust)"
    )


def _looks_pickled(head: bytes) -> bool:
    return head.startswith(_PICKLE_MAGIC) or head.startswith(_ZIP_MAGIC)


def _check_header(path: str, header: object, data_len: int) -> dict[str, str]:
    """Validate the parsed JSON header; return its __metadata__ (str -> str)."""
    if not isinstance(header, dict):
        raise _fail(path, "not a safetensors file (its header is not a JSON object)")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _fail(path, "malformed safetensors header: __metadata__ must map strings to strings")
    spans = []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise _fail(path, f"malformed safetensors header: entry {key!r} is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _ITEMSIZE:
            raise _fail(path, f"tensor {key!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise _fail(path, f"tensor {key!r} has a malformed shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise _fail(path, f"tensor {key!r} has malformed data_offsets {offsets!r}")
        nbytes = math.prod(shape) * _ITEMSIZE[dtype]
        if offsets[1] - offsets[0] != nbytes:
            raise _fail(
                path, f"tensor {key!r}: {dtype}{shape} needs {nbytes} bytes, data_offsets give {offsets[1] - offsets[0]}"
            )
        spans.append((offsets[0], offsets[1], key))
    spans.sort()
    end = 0
    for begin, stop, key in spans:
        if begin != end:
            raise _fail(path, f"malformed safetensors data: tensor {key!r} starts at byte {begin}, expected {end}")
        end = stop
    if end > data_len:
        raise _fail(path, f"truncated file: tensors need {end} data bytes, the file holds {data_len}")
    if end < data_len:
        raise _fail(path, f"malformed safetensors file: {data_len - end} bytes after the last tensor")
    return dict(metadata)


def read_safetensors(path: str) -> RawFile:
    """Read a local .safetensors file with every structural check done up front."""
    if os.path.isdir(path):
        raise _fail(path, "is a directory; expected a .safetensors file")
    if not os.path.exists(path):
        raise _fail(path, "no such file")
    if path.lower().endswith(PICKLE_SUFFIXES):
        raise _refuse_pickle(path, f"{os.path.splitext(path)[1]} checkpoints are pickles")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                if _looks_pickled(head):
                    raise _refuse_pickle(path, "the file is a pickle")
                raise _fail(path, f"truncated file: {size} bytes, a safetensors file starts with an 8-byte header length")
            (header_len,) = struct.unpack("<Q", head)
            # Pickle magic is only meaningful when the bytes are no safetensors header:
            # a valid header length can start with the same two bytes (0x80 0x02 = 640).
            if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
                if _looks_pickled(head):
                    raise _refuse_pickle(path, "the file is a pickle / torch.save archive, not safetensors")
                if header_len > MAX_HEADER_BYTES:
                    raise _fail(
                        path, f"not a safetensors file, or a corrupt one: header length {header_len} exceeds the "
                        f"{MAX_HEADER_BYTES}-byte bound"
                    )
                raise _fail(path, f"truncated file: header of {header_len} bytes, the file has {size - 8} after the length")
            raw_header = f.read(header_len)
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        if _looks_pickled(head):
            raise _refuse_pickle(path, "the file is a pickle / torch.save archive, not safetensors") from None
        raise _fail(path, "not a safetensors file (its header is not JSON)") from None
    metadata = _check_header(path, header, size - 8 - header_len)

    try:
        from safetensors.torch import load_file

        tensors = load_file(path, device="cpu")
    except Exception as exc:  # safetensors' own checks: one clean error for any of them
        raise _fail(path, f"safetensors could not read it ({type(exc).__name__}: {exc})") from None
    return RawFile(
        path=path,
        tensors=tensors,
        metadata=metadata,
        size_bytes=size,
    )
