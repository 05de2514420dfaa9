"""The LoRA layer: a reference (local path, Hub id, URL, civitai:) -> a :class:`LoRAFile`
(pure data, diffusers module paths of the target family), and matching it against a
model's :class:`~vidlora.model.Inventory`.

    lora = read_lora("motion.safetensors")        # any scheme W1-W7, H1-H6
    report = match_lora(lora, inventory(model))   # raises LoRAMismatchError naming both sides
"""

from .lora_file import LoRAFile, LowRank, Variant
from .match import MatchReport, match_lora
from .read import read_lora

__all__ = ["read_lora", "match_lora", "MatchReport", "LoRAFile", "LowRank", "Variant"]
