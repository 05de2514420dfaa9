"""FP8 (float8_e4m3fn) base weights: per-output-channel quantization, layer by layer.

Format: W ~= W8 * s[:, None], W8 in float8_e4m3fn, s [N] fp32 = amax(|W[n, :]|) / 448
(448 is e4m3's largest finite value). Per-output-channel scales keep a row with small
weights from being flushed by a large row elsewhere; the scale is applied in the GEMM
epilogue (one multiply per output element), so it costs nothing in the K loop.

Memory: quantization works on row chunks of one layer at a time (``_CHUNK_ROWS`` rows in
fp32 at most, ~80 MB for a 5120-wide layer), and each layer's high-precision weight is
released as soon as its FP8 copy exists, so peak memory never holds two full copies of the
model (Wan 14B: ~28 GB of bf16 block weights become ~14 GB of FP8 plus 0.5 MB of scales).

The LoRA path never touches FP8: adapter tensors stay in the compute dtype (bf16 on GPU)
and the delta is added to the GEMM result, never merged into W8 (re-quantizing a merged
weight rounds most of a small delta away: see benchmarks/fp8_lora_error.py).
"""

from __future__ import annotations

import torch

__all__ = [
    "FP8_DTYPE",
    "E4M3_MAX",
    "FP8_MODES",
    "normalize_fp8_mode",
    "quantize_weight",
    "dequantize_weight",
]

FP8_DTYPE = torch.float8_e4m3fn
E4M3_MAX = 448.0
FP8_MODES = ("w8a16", "w8a8")
_CHUNK_ROWS = 4096
# smallest scale: keeps an all-zero row from dividing by zero (its W8 is then all zero)
_MIN_SCALE = 1e-12


def normalize_fp8_mode(fp8) -> str | None:
    """attach's ``fp8`` argument -> None | "w8a16" | "w8a8"."""
    from .errors import VidloraError

    if fp8 is None or fp8 is False:
        return None
    if fp8 is True:
        return "w8a16"
    if isinstance(fp8, str) and fp8.lower() in FP8_MODES:
        return fp8.lower()
    raise VidloraError(f"fp8= must be False, True, 'w8a16' or 'w8a8'; got {fp8!r}")


@torch.no_grad()
def quantize_weight(weight: torch.Tensor, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(W8 [N, K] float8_e4m3fn, s [N] fp32) on ``device`` (default: the weight's own).

    Rounds to nearest (torch's cast). Rows are processed in chunks so the only fp32
    temporary is one chunk.
    """
    device = torch.device(device) if device is not None else weight.device
    n, k = weight.shape
    w8 = torch.empty(n, k, dtype=FP8_DTYPE, device=device)
    scale = torch.empty(n, dtype=torch.float32, device=device)
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, n)
        chunk = weight[lo:hi].to(device=device, dtype=torch.float32)
        s = (chunk.abs().amax(dim=1) / E4M3_MAX).clamp_min(_MIN_SCALE)
        w8[lo:hi] = (chunk / s[:, None]).clamp_(-E4M3_MAX, E4M3_MAX).to(FP8_DTYPE)
        scale[lo:hi] = s
    return w8, scale


def dequantize_weight(w8: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """W8 * s[:, None] in ``dtype`` (one full-size tensor: for detach, tests and merges)."""
    return (w8.to(torch.float32) * scale.to(torch.float32)[:, None]).to(dtype)
