"""vidlora.kernels: the fused LoRA linear op, its Triton kernels and pure-torch references.

    y = lora_linear(x, weight, bias, lora_a, lora_b, lora_scale)
      = x W^T + b + ((x A^T) * c) B^T

x [..., K] (any leading shape, rows may be strided), weight [N, K], bias [N] or None,
lora_a [R, K], lora_b [N, R], lora_scale [R] float32 (R may be 0); one dtype of float16,
bfloat16, float32 for x, weight, lora_a, lora_b, bias; the result has x's dtype and shape
[..., N]. It runs ``torch.ops.vidlora.lora_linear`` (ops.py), which dispatches to the
Triton kernels (lora_gemm.py) or the torch reference (reference.py) as ``backend.py``
selects. Importing this package imports neither Triton nor CUDA.
"""

from __future__ import annotations

import torch

from . import ops as _ops  # noqa: F401  (registers torch.ops.vidlora.lora_linear)
from .reference import lora_delta_reference, lora_linear_reference

__all__ = ["lora_linear", "lora_linear_reference", "lora_delta_reference"]


def lora_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    lora_scale: torch.Tensor,
) -> torch.Tensor:
    """y = x W^T + b + ((x A^T) * c) B^T through ``torch.ops.vidlora.lora_linear``."""
    return torch.ops.vidlora.lora_linear(x, weight, bias, lora_a, lora_b, lora_scale)
