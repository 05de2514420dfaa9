"""The public functions of ``vidlora.kernels`` (re-exported by its ``__init__``)."""

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
    """y = x W^T + b + ((x A^T) * c) B^T through ``torch.ops.vidlora.lora_linear``.

    Shapes and dtypes: see the package docstring. Inference only (no autograd formula).
    """
    return torch.ops.vidlora.lora_linear(x, weight, bias, lora_a, lora_b, lora_scale)
