"""W8A8 on sm_90 through the persistent TMA kernel: quantize pass, then the fp8 x fp8 GEMM.

    y = (q(x) W8^T) * x_s w_s^T + b + ((x A^T) * c) B^T

Step 1 is fp8_gemm.py's quantize pass (x8, x_s and T from one read of x); step 2 is
persistent_gemm.py with ``BASE`` 3: fp8 descriptors for x8 and W8 (BLOCK_K = 128: a 128-wide
fp8 step moves the bytes of a 64-wide bf16 one), 128 x 128 tiles, both scales and the
16-bit LoRA expand (T B^T, from the unquantized x) in the epilogue. ``fp8_acc``: the
accumulation policy (persistent_gemm.py): 128 promotes the fp8 partial sums to fp32 every
128 K (the default), 0 is sm_90's fast accumulation over the whole K; both are first-use
candidates, each kept only if it passes the W8A8 error check on the device.
Needs K % 16 == 0 (x8 and W8 rows must be 16-byte strided for TMA): other K run fp8_gemm.py.
"""

from __future__ import annotations

import torch

from .checks import check_lora_linear_fp8_args
from .fp8_format import FP8_DTYPE
from .heuristics import QUANT_MAX_RANK
from .launching import INTERPRETED, as_batched_rows, on_device, precision
from .persistent_gemm import _launch_persistent, persistent_config, tma_compatible

__all__ = ["w8a8_persistent_applies", "lora_linear_w8a8_persistent"]


def w8a8_persistent_applies(x: torch.Tensor, weight: torch.Tensor, cap) -> bool:
    """sm_90 (or the interpreter), 16-bit x, W8 rows 16-byte strided (K % 16 == 0)."""
    return (cap is None or cap == (9, 0)) and x.dtype in (torch.float16, torch.bfloat16) and tma_compatible(weight)


def lora_linear_w8a8_persistent(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale, *, fp8_acc: int = 128,
                                config=None, num_sms: int | None = None, dims=None) -> torch.Tensor:  # fmt: skip
    """W8A8 y with the quantize pass and the persistent fp8 GEMM (module doc)."""
    from .fp8_gemm import _device_capability, _launch_quant, _require_w8a8, plan_fp8_launch
    from .lora_gemm import _launch_shrink

    k, n, r = dims or check_lora_linear_fp8_args(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale)
    if not tma_compatible(weight):
        raise ValueError("the persistent W8A8 GEMM reads W8 through a TMA descriptor: K must be a multiple of 16")
    cap = _device_capability(x.device)
    _require_w8a8(cap, x.device)
    x3, s = as_batched_rows(x)
    m = x3.shape[0] * x3.shape[1]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return y.view(*x.shape[:-1], n)
    plan = plan_fp8_launch(m, n, k, r, x.dtype, "w8a8", x.device)
    flags = dict(UPCAST_DOT=INTERPRETED and x.dtype == torch.bfloat16, PRECISION=precision(x.dtype))
    with on_device(x.device):
        t = y
        if plan.shrink is not None:  # R > 128: T from the shrink kernel
            t = torch.empty((m, r), dtype=x.dtype, device=x.device)
            _launch_shrink(plan.shrink, x3, lora_a, lora_scale, t, m, k, r, s, flags)
        x8 = torch.empty((m, k), dtype=FP8_DTYPE, device=x.device)
        x_scale = torch.empty((m,), dtype=torch.float32, device=x.device)
        if 0 < r <= QUANT_MAX_RANK:
            t = torch.empty((m, r), dtype=x.dtype, device=x.device)
        _launch_quant(plan.quant, x3, lora_a, lora_scale, t, x8, x_scale, m, k, r, s, flags)
        strategy = "plain" if r == 0 else "shrink_expand"
        cfg = config or persistent_config(m, n, k, r, strategy, base=3)
        if r == 0:
            lora_a, lora_b, lora_scale = y, y, weight_scale
        _launch_persistent(cfg, 0 if r == 0 else 1, x8.view(1, m, k), m, weight, bias, weight_scale, t, lora_a,
                           lora_b, lora_scale, y, m, n, k, r, flags, base=3, x_scale=x_scale, num_sms=num_sms,
                           fp8_acc=fp8_acc)  # fmt: skip
    return y.view(*x.shape[:-1], n)
