"""Which reader owns a file: the first, in a fixed order, whose signature keys it holds.

The order puts the most specific signatures first: a W6 file is also W1-shaped once its
sub-prefix is removed, a kohya Hunyuan key also starts with ``lora_unet_``, and a
OneTrainer split-index key also looks Tencent. The chosen reader then accounts for every
key of the file or fails naming the ones it cannot read, so a file is never half-read.
"""

from __future__ import annotations

from .reader_base import Reader, fail_keys
from . import (
    diffusers_names,
    hunyuan_kohya,
    hunyuan_onetrainer,
    hunyuan_original,
    wan_aitoolkit_combo,
    wan_kohya,
    wan_lycoris_old,
    wan_original,
)
from .key_parts import is_text_encoder_key
from vidlora.errors import LoRAFormatError

__all__ = ["READERS", "pick_reader"]

READERS: tuple[Reader, ...] = (
    wan_aitoolkit_combo.READER,  # W6
    wan_lycoris_old.READER,  # W7
    hunyuan_onetrainer.READER,  # H6
    hunyuan_kohya.READER,  # H2, H3
    wan_kohya.READER,  # W3, W3b
    hunyuan_original.READER,  # H1, H4
    diffusers_names.READER,  # W4, W4b, H5
    wan_original.READER,  # W1, W2, W4b, W5
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
