"""Reading a .safetensors file safely: never unpickle, bound and check the header first.

Every file goes through the one validator (:mod:`.safetensors_check`) before safetensors
sees it, so that every malformed file (truncated, oversized or non-JSON header, offsets
that do not tile the data area, unknown dtypes) fails with one LoRAFormatError naming the
file, and a pickle (.ckpt/.pt/.bin/.pth, or a pickle renamed .safetensors) is refused
without a single byte of it being deserialized. Only then does safetensors load the tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from vidlora.errors import LoRAFormatError

from .safetensors_check import check_safetensors_file

__all__ = ["RawFile", "read_safetensors"]


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


def read_safetensors(path: str) -> RawFile:
    """Read a local .safetensors file with every structural check done up front."""
    if os.path.isdir(path):
        raise LoRAFormatError(f"{path}: is a directory; expected a .safetensors file")
    if not os.path.exists(path):
        raise LoRAFormatError(f"{path}: no such file")
    try:
        header = check_safetensors_file(path)
    except OSError as exc:
        raise LoRAFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        from safetensors.torch import load_file

        tensors = load_file(path, device="cpu")
    except Exception as exc:  # safetensors' own checks: one clean error for any of them
        raise LoRAFormatError(f"{path}: safetensors could not read it ({type(exc).__name__}: {exc})") from None
    return RawFile(path=path, tensors=tensors, metadata=header.metadata, size_bytes=header.size)
