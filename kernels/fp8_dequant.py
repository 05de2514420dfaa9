"""W8A16 for large M: dequantize W8 once per call into a reusable scratch, then the 16-bit GEMM.

    y = (x W8^T) * w_s + b + ((x A^T) * c) B^T

The in-register upcast (fp8_gemm.py, BASE 1) converts every weight tile once per row tile
(BLOCK_M rows of reuse each): at M = 32,760 that is 256 conversions of W per call, and on
sm_90 the conversion serialises with the MMA. Here W8 is converted once: ``W8 -> x's dtype``
(every e4m3 value is exact in fp16/bf16/fp32, so this copy is exact; the per-channel scale
is *not* folded in, which would round W8 * w_s) into a scratch buffer, and the 16-bit kernel
runs with ``weight_scale`` applied in its fp32 epilogue, the same arithmetic as W8A16.
Cost: N*K bytes read + 2*N*K written (~78 MB, ~25 us at 5120^2 on an H100): ~17% of the
GEMM at M = 2048, ~1% at M = 32,760. Which side of the crossover a shape is on is measured
on the user's GPU by the first-use choice (candidate ``triton.dequant``), not assumed.

The scratch (one per device and dtype, grown to the largest N*K seen, never shrunk) is
reused by every call on the current stream; calls on two streams at once would race on it,
so a call on a non-default stream gets a fresh buffer.
"""

from __future__ import annotations

import torch

from .checks import check_lora_linear_fp8_args

__all__ = ["lora_linear_w8a16_dequant", "dequantized_scratch"]

_SCRATCH: dict[tuple, torch.Tensor] = {}


def dequantized_scratch(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """W8 [N, K] converted (exactly, no scale) to ``dtype`` in the reusable scratch."""
    n, k = weight.shape
    dev = weight.device
    shared = dev.type != "cuda" or torch.cuda.current_stream(dev) == torch.cuda.default_stream(dev)
    key = (dev, dtype)
    buf = _SCRATCH.get(key) if shared else None
    if buf is None or buf.numel() < n * k:
        buf = torch.empty(n * k, dtype=dtype, device=dev)
        if shared:
            _SCRATCH[key] = buf
    out = buf[: n * k].view(n, k)
    out.copy_(weight)  # e4m3 -> fp16/bf16/fp32: exact
    return out


def lora_linear_w8a16_dequant(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale):
    """W8A16 through the dequantize-once scratch and the 16-bit Triton kernel (module doc)."""
    from .lora_gemm import lora_linear_triton

    check_lora_linear_fp8_args(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale)
    w = dequantized_scratch(weight, x.dtype)
    return lora_linear_triton(x, w, bias, lora_a, lora_b, lora_scale, weight_scale=weight_scale)
