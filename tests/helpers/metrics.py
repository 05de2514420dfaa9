"""Error metrics for lossy paths (FP8): signal-to-quantization-noise ratio."""

from __future__ import annotations

import torch

__all__ = ["sqnr_db"]


def sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    """20 log10(|ref| / |ref - out|) in fp64; inf when equal."""
    ref, out = ref.double(), out.double()
    noise = (ref - out).norm()
    if noise == 0:
        return float("inf")
    return float(20 * torch.log10(ref.norm() / noise))
