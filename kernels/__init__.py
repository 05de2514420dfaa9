"""vidlora.kernels: fused LoRA linear kernels (Triton) and their pure-torch references.

PLACEHOLDER until the kernels issue lands: ``lora_linear`` runs the reference.
"""

from __future__ import annotations

from .reference import lora_delta_reference, lora_linear_reference

__all__ = ["lora_linear", "lora_linear_reference", "lora_delta_reference"]


def lora_linear(x, weight, bias, lora_a, lora_b, lora_scale):
    """y = x W^T + b + ((x A^T) * c) B^T (see reference.py for the contract)."""
    return lora_linear_reference(x, weight, bias, lora_a, lora_b, lora_scale)
