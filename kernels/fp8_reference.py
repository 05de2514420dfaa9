"""Pure-torch references of the FP8-base LoRA linear (CPU path, test oracle, baseline).

    W8A16:  y = (x W8^T) * w_s + b + ((x A^T) * c) B^T
    W8A8:   y = (q(x) W8^T) * (x_s w_s^T) + b + ((x A^T) * c) B^T

W8 [N, K] float8_e4m3fn with per-output-channel fp32 scales w_s [N]. For W8A8, q(x) is x
quantized per token (row) to e4m3 with x_s = amax(|x_row|) / 448. The LoRA term always
reads the *unquantized* x, in the compute dtype: the adapter delta is never quantized.

Memory: W8 is dequantized one chunk of output rows at a time (``_CHUNK_N`` rows), so the
only full-size temporaries are the result and, for W8A8, q(x) (one byte per element); no
high-precision copy of W outlives the call.
"""

from __future__ import annotations

import torch

from .fp8_format import E4M3_MAX, FP8_DTYPE, MIN_SCALE

__all__ = ["lora_linear_fp8_reference", "quantize_rows_e4m3"]

_CHUNK_N = 2048


def quantize_rows_e4m3(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (per-token) e4m3 quantization of x [M, K]: (q [M, K] fp8, s [M] fp32).

    s = max(amax(|row|) / 448, 1e-12); q = e4m3(clamp(row * (1 / s), +-448)), rounded to
    nearest even. The row is multiplied by the (IEEE) reciprocal rather than divided by s:
    the W8A8 kernel does the same (one multiply per element instead of a division), so
    both give the same bytes; the two differ from a division by at most 1 fp32 ulp before
    the e4m3 rounding, far below e4m3's 2^-4 relative step.
    """
    s = (x2.abs().amax(dim=1).float() / E4M3_MAX).clamp_min(MIN_SCALE)
    q = (x2.float() * (1.0 / s)[:, None]).clamp_(-E4M3_MAX, E4M3_MAX).to(FP8_DTYPE)
    return q, s


def lora_linear_fp8_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    lora_scale: torch.Tensor,
    act_quant: bool = False,
) -> torch.Tensor:
    """See the module docstring. Output in x's dtype, shape [..., N]."""
    x2 = x.reshape(-1, x.shape[-1])
    n = weight.shape[0]
    dtype = x.dtype
    y = torch.empty(x2.shape[0], n, dtype=dtype, device=x.device)
    if act_quant:
        q, xs = quantize_rows_e4m3(x2)
        lhs, row_scale = q.to(torch.float32), xs[:, None]
    else:
        lhs, row_scale = x2, None
    for lo in range(0, n, _CHUNK_N):
        hi = min(lo + _CHUNK_N, n)
        w = weight[lo:hi].to(lhs.dtype)  # e4m3 values are exact in fp16/bf16/fp32
        acc = torch.mm(lhs, w.t()).float() * weight_scale[lo:hi].float()
        if row_scale is not None:
            acc *= row_scale
        if bias is not None:
            acc += bias[lo:hi].float()
        y[:, lo:hi] = acc.to(dtype)
    if lora_a.shape[0] > 0:
        t = (torch.mm(x2, lora_a.t()).float() * lora_scale).to(dtype)
        y.addmm_(t, lora_b.t())
    return y.reshape(*x.shape[:-1], n)
