"""The FP8 storage format of vidlora's base weights and activations: one home for its constants.

Weights: W ~= W8 * s[:, None], W8 float8_e4m3fn [N, K], s [N] fp32 = max(amax(|W[n, :]|) /
448, 1e-12): 448 is e4m3's largest finite value; the floor keeps an all-zero row from
dividing by zero (its W8 is then all zero). Per-output-channel scales keep a row of small
weights from being flushed by a large row elsewhere; the scale is applied in the GEMM
epilogue (one multiply per output element), so it costs nothing in the K loop.
Activations (W8A8) use the same rule per token: x_s = max(amax(|x_row|) / 448, 1e-12).

Memory: a weight is quantized ``_CHUNK_ROWS`` rows at a time (one fp32 chunk, ~80 MB for a
5120-wide layer), so converting a model layer by layer never holds two full copies.
"""

from __future__ import annotations

import torch

__all__ = ["FP8_DTYPE", "E4M3_MAX", "MIN_SCALE", "FP8_MODES", "quantize_weight", "dequantize_weight"]

FP8_DTYPE = torch.float8_e4m3fn
E4M3_MAX = 448.0
MIN_SCALE = 1e-12
FP8_MODES = ("w8a16", "w8a8")  # FP8 weights with 16-bit MMA | FP8 weights and activations
_CHUNK_ROWS = 4096


@torch.no_grad()
def quantize_weight(weight: torch.Tensor, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(W8 [N, K] float8_e4m3fn, s [N] fp32) on ``device`` (default: the weight's own).

    Rounds to nearest (torch's cast); rows are processed in chunks so the only fp32
    temporary is one chunk.
    """
    device = torch.device(device) if device is not None else weight.device
    n, k = weight.shape
    w8 = torch.empty(n, k, dtype=FP8_DTYPE, device=device)
    scale = torch.empty(n, dtype=torch.float32, device=device)
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, n)
        chunk = weight[lo:hi].to(device=device, dtype=torch.float32)
        s = (chunk.abs().amax(dim=1) / E4M3_MAX).clamp_min(MIN_SCALE)
        w8[lo:hi] = (chunk / s[:, None]).clamp_(-E4M3_MAX, E4M3_MAX).to(FP8_DTYPE)
        scale[lo:hi] = s
    return w8, scale


def dequantize_weight(w8: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """W8 * s[:, None] in ``dtype`` (one full-size tensor: for detach, tests and merges)."""
    return (w8.to(torch.float32) * scale.to(torch.float32)[:, None]).to(dtype)
