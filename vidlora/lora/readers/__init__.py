"""The key-scheme readers, one per producer naming, each driven by the families' name tables.

Which reader owns a file: the first, in a fixed order, whose signature keys it holds. The
order puts the most specific signatures first: a two-expert file (W6) is also an
original-names file once its sub-prefix is removed, and kohya-style keys carry their own
prefixes. The chosen reader then accounts for every key of the file or fails naming the
ones it cannot read, so a file is never half-read.
"""

from __future__ import annotations

from vidlora.errors import LoRAFormatError

from ..keys import is_text_encoder_key
from . import combo, diffusers, kohya, original
from .base import Reader, ReadResult, fail_keys

__all__ = ["READERS", "pick_reader", "Reader", "ReadResult"]

READERS: tuple[Reader, ...] = (
    combo.READER,  # W6
    kohya.READER,  # W3, W3b, W7, H2, H3, H6 legacy
    original.READER,  # W1, W2, W4b, W5, H1, H4, H6 split index
    diffusers.READER,  # W4, W4b, H5
)


def pick_reader(path: str, keys: list[str]) -> Reader:
    if not keys:
        raise LoRAFormatError(f"{path}: the file holds no tensors")
    for reader in READERS:
        if reader.claims(keys):
            return reader
    if all(is_text_encoder_key(k) for k in keys):
        raise LoRAFormatError(f"{path}: only text-encoder keys; vidlora patches the video transformer (Wan, HunyuanVideo)")
    raise fail_keys(
        path,
        "keys, none of them in a known Wan/HunyuanVideo LoRA key scheme (W1-W7, H1-H6)",
        sorted(keys),
    )
