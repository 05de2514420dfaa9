"""Reading a safetensors file's header, and single tensors (or row ranges of one) with plain
file reads.

safetensors' own ``safe_open`` maps the whole file copy-on-write (torch's MapAllocator with
MAP_PRIVATE): the kernel counts such a mapping as the process's data, so on a machine (or
under an RLIMIT_DATA) smaller than the checkpoint it fails before a byte is read. Here a
tensor is read with ``readinto`` into its own buffer; the page cache holds the file, the
process holds one tensor. The file is first checked by the one validator
(:func:`~vidlora.lora.safetensors_check.check_safetensors_file`: no pickle, header bounds,
dtypes, offsets tiling the data).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from ..safetensors_check import check_safetensors_file

__all__ = ["TensorFile", "TensorInfo", "DTYPES"]

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute file offset of the first byte
    end: int

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize if self.dtype in DTYPES else 1


class TensorFile:
    """A checked safetensors file: ``tensors`` (key -> TensorInfo) and ``metadata`` from
    its header; ``read(key, rows)`` reads one tensor, or rows [a, b) of its first dim."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        header = check_safetensors_file(self.path)
        self.metadata = header.metadata
        self.size = header.size
        base = 8 + header.header_len
        self.tensors: dict[str, TensorInfo] = {
            key: TensorInfo(e["dtype"], tuple(e["shape"]), base + e["data_offsets"][0], base + e["data_offsets"][1])
            for key, e in header.entries.items()
        }

    def read(self, key: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        with open(self.path, "rb") as f:
            return self._read(f, key, rows)

    def read_many(self, keys) -> dict[str, torch.Tensor]:
        """Several (small) tensors through one open file."""
        with open(self.path, "rb") as f:
            return {key: self._read(f, key, None) for key in keys}

    def _read(self, f, key: str, rows: tuple[int, int] | None) -> torch.Tensor:
        info = self.tensors[key]
        dtype = DTYPES.get(info.dtype)
        if dtype is None:
            raise ValueError(f"{self.path}: tensor {key!r} has dtype {info.dtype}, which torch cannot hold")
        shape, begin, end = info.shape, info.begin, info.end
        if rows is not None:
            row_bytes = math.prod(shape[1:]) * info.itemsize
            begin, end = info.begin + rows[0] * row_bytes, info.begin + rows[1] * row_bytes
            shape = (rows[1] - rows[0], *shape[1:])
        buf = bytearray(end - begin)
        f.seek(begin)
        view = memoryview(buf)
        done = 0
        while done < len(buf):  # readinto may return less than asked on large reads
            n = f.readinto(view[done:])
            if not n:
                raise OSError(f"{self.path}: file ended while reading tensor {key!r}")
            done += n
        if not buf:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(buf, dtype=torch.uint8).view(dtype).reshape(shape)
