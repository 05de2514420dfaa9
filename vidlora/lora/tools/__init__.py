"""LoRA tools over the canonical form: convert between producers' namings, merge a stack
into one file, extract a LoRA from two checkpoints, index the LoRA folders users keep.

    convert_lora("musubi.safetensors", "comfy.safetensors", to="comfyui")
    merge_loras([("distill.safetensors", 1.0), ("style.safetensors", 0.6)], "baked.safetensors", rank=64)
    extract_lora("Wan2.1-T2V-14B", "distilled.safetensors", "distill_lora.safetensors", rank=32)
    list_loras(["~/ComfyUI/models/loras"])

Every tool reads through read_lora (any scheme W1-W7, H1-H6) and writes through one
renderer per target naming (render.py), atomically, never over an existing file unless
asked.
"""

from .convert import ConvertReport, convert_lora
from .extract import ExtractReport, extract_lora
from .index import LoRAEntry, list_loras
from .merge import MergeReport, merge_loras
from .render import UnsupportedError
from .targets import TARGETS

__all__ = [
    "convert_lora", "ConvertReport", "merge_loras", "MergeReport", "extract_lora", "ExtractReport",
    "list_loras", "LoRAEntry", "UnsupportedError", "TARGETS",
]  # fmt: skip
