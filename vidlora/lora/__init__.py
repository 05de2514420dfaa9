"""The LoRA layer: a reference (local path, Hub id, URL, civitai:) -> a :class:`LoRAFile`
(pure data, diffusers module paths of the target family), and matching it against a
model's :class:`~vidlora.model.Inventory`.

    lora = read_lora("motion.safetensors")        # any scheme W1-W7, H1-H6
    report = match_lora(lora, inventory(model))   # raises LoRAMismatchError naming both sides

Names load lazily (PEP 562): ``vidlora.lora.sources`` (spec parsing, resolving a file)
imports no torch, so the CLI checks ``--lora`` arguments before torch is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidlora.common.lazy import lazy_exports

__all__ = ["read_lora", "match_lora", "MatchReport", "LoRAFile", "LowRank", "Variant"]

_LAZY = {
    "read_lora": "read",
    "match_lora": "match",
    "MatchReport": "match",
    "LoRAFile": "lora_file",
    "LowRank": "lora_file",
    "Variant": "lora_file",
}

__getattr__ = lazy_exports(__name__, _LAZY, __all__)[0]  # dir(): the module's own


if TYPE_CHECKING:  # pragma: no cover
    from .lora_file import LoRAFile, LowRank, Variant
    from .match import MatchReport, match_lora
    from .read import read_lora
