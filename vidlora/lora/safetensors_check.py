"""The one safetensors validator and the one pickle refusal, from a file's bytes alone.

Used on every file before it is kept or read: a download before it is moved into the
cache (``sources``), a local file before ``resolve_source`` accepts it, and every file
before ``read_safetensors`` hands it to safetensors. Only the 8-byte length and the JSON
header are parsed; nothing is ever unpickled. A pickle (by its name: .ckpt/.pt/.pth/
.bin/.pkl/.pickle, or by its first bytes under any name, torch.save's zip included)
raises UnsafeFileError; anything else that is not a complete safetensors file (an HTML
login page, a JSON error, a truncated transfer, a corrupt header) raises LoRAFormatError
with what is wrong. Both name the file.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field

from vidlora.errors import LoRAFormatError, UnsafeFileError

__all__ = [
    "MAX_HEADER_BYTES", "PICKLE_SUFFIXES", "SafetensorsHeader", "check_safetensors_file",
    "is_pickle_name", "looks_like_html",
]  # fmt: skip

# The bound of safetensors' own reader (MAX_HEADER_SIZE = 100,000,000 bytes, decimal):
# with the same number, every file accepted here is one safetensors opens, and a header
# between 100 MB and 100 MiB (which a 100 MiB bound let through) cannot reach
# safetensors to fail there with its own message. A real LoRA header is far smaller:
# ~150 bytes per tensor, so 2,400 tensors (a rank-128 Wan 14B LoRA with diffs) is ~0.4 MB.
MAX_HEADER_BYTES = 100_000_000

# Extensions whose loaders (torch.load, pickle) unpickle: loading one can run arbitrary code.
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")

_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}  # fmt: skip
_UNPICKLES = "loading it would unpickle, and unpickling runs arbitrary code"
_SAFETENSORS_ONLY = "vidlora reads .safetensors files only (convert it with a tool you trust)"


@dataclass(frozen=True)
class SafetensorsHeader:
    """What the check learned: file size, header length, ``__metadata__`` (str -> str) and
    the checked tensor entries (key -> {"dtype", "shape", "data_offsets"})."""

    size: int
    header_len: int
    metadata: dict[str, str]
    entries: dict = field(default_factory=dict, repr=False)


def is_pickle_name(name: str | os.PathLike) -> bool:
    """Whether a file name has a suffix whose loader unpickles (``PICKLE_SUFFIXES``)."""
    return os.fspath(name).lower().endswith(PICKLE_SUFFIXES)


def looks_like_html(head: bytes) -> bool:
    """Whether a file's first bytes are an HTML/XML page (a login or error page)."""
    return head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body"))


def check_safetensors_file(path: str | os.PathLike, *, what: str | None = None) -> SafetensorsHeader:
    """Check that ``path`` holds a complete, well-formed safetensors file.

    what: how messages name the file (default: the path). Checks, in order: the name is
    no pickle's; the first bytes are no pickle / zip; the header length is within
    ``MAX_HEADER_BYTES`` and the file; the header is a JSON object whose ``__metadata__``
    maps strings to strings; every tensor has a known dtype, a shape and data_offsets
    whose length matches; the tensors tile the data area exactly (no gap, no overlap, no
    byte missing or left over). OSError (unreadable file) propagates to the caller.
    """
    what = what or os.fspath(path)
    if is_pickle_name(path):
        suffix = os.path.splitext(os.fspath(path))[1]
        raise UnsafeFileError(f"{what}: refused: a {suffix} file is a pickled checkpoint; {_UNPICKLES}. {_SAFETENSORS_ONLY}")
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(16)
        if len(head) < 8:
            _refuse_if_pickled(what, head)
            raise _fail(what, f"truncated file: {size} bytes, a safetensors file starts with an 8-byte header length")
        (header_len,) = struct.unpack("<Q", head[:8])
        # <u64 length><JSON object>: test that shape before sniffing, since a real length
        # can start with a pickle's magic (0x80 0x02 = 640) or read as '{"' (8827).
        if not (2 <= header_len <= MAX_HEADER_BYTES and head[8:9] == b"{"):
            _refuse_if_pickled(what, head)
            foreign = _foreign_text(head)
            if foreign is not None:
                raise _fail(what, f"not a safetensors file: it is {foreign}")
        if header_len > MAX_HEADER_BYTES:
            raise _fail(
                what, f"not a safetensors file, or a corrupt one: header length {header_len} exceeds the "
                f"{MAX_HEADER_BYTES}-byte bound"
            )
        if 8 + header_len > size:
            raise _fail(what, f"truncated file: header of {header_len} bytes, the file has {size - 8} after the length")
        handle.seek(8)
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        _refuse_if_pickled(what, head)
        raise _fail(what, "not a safetensors file (its header is not JSON)") from None
    metadata = _check_header(what, header, size - 8 - header_len)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    return SafetensorsHeader(size=size, header_len=header_len, metadata=metadata, entries=entries)


def _fail(what: str, problem: str) -> LoRAFormatError:
    return LoRAFormatError(f"{what}: {problem}")


def _refuse_if_pickled(what: str, head: bytes) -> None:
    kind = None
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        kind = f"a pickle (protocol {head[1]})"
    elif head[:4] == b"PK\x03\x04":
        kind = "a zip archive (torch.save format, which holds a pickle)"
    if kind is not None:
        raise UnsafeFileError(f"{what}: refused: it is {kind}, not safetensors; {_UNPICKLES}. {_SAFETENSORS_ONLY}")


def _foreign_text(head: bytes) -> str | None:
    if looks_like_html(head):
        return "an HTML page (an error or login page?)"
    if head.lstrip().startswith((b"{", b"[")):
        return "JSON text (an API error message?)"
    return None


def _check_header(what: str, header: object, data_len: int) -> dict[str, str]:
    """Validate the parsed JSON header against a data area of ``data_len`` bytes; return
    its __metadata__."""
    if not isinstance(header, dict):
        raise _fail(what, "not a safetensors file (its header is not a JSON object)")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise _fail(what, "malformed safetensors header: __metadata__ must map strings to strings")
    spans = []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise _fail(what, f"malformed safetensors header: entry {key!r} is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _ITEMSIZE:
            raise _fail(what, f"tensor {key!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise _fail(what, f"tensor {key!r} has a malformed shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise _fail(what, f"tensor {key!r} has malformed data_offsets {offsets!r}")
        nbytes = math.prod(shape) * _ITEMSIZE[dtype]
        if offsets[1] - offsets[0] != nbytes:
            raise _fail(what, f"tensor {key!r}: {dtype}{shape} needs {nbytes} bytes, data_offsets give {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], key))
    spans.sort()
    end = 0
    for begin, stop, key in spans:
        if begin != end:
            raise _fail(what, f"malformed safetensors data: tensor {key!r} starts at byte {begin}, expected {end}")
        end = stop
    if end > data_len:
        raise _fail(what, f"truncated file: tensors need {end} data bytes, the file holds {data_len}")
    if end < data_len:
        raise _fail(what, f"malformed safetensors file: {data_len - end} bytes after the last tensor")
    return dict(metadata)
