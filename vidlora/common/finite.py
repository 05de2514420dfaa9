"""The fast NaN/Inf test over many tensors, the one home for it (reading a LoRA file, and
the rank stacks before an adapter is written into them)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["FP32_RANGE", "sums_finite"]

# bf16 and fp32 share fp32's exponent range: a sum in their own dtype overflows only where
# an fp32 one would (about 3x faster than summing bf16 in fp32).
FP32_RANGE = (torch.bfloat16, torch.float32, torch.float64)


def sums_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True when one summed pass over ``tensors`` is finite, which proves every element is
    (NaN or Inf anywhere makes a sum NaN or Inf). False also when a finite set merely sums
    past the range: the caller's element-wise check then decides. Meta tensors count as
    finite (nothing to read)."""
    total = torch.zeros((), dtype=torch.float64)
    for t in tensors:
        if not t.numel() or t.device.type == "meta":
            continue
        if t.dtype in FP32_RANGE:
            s = t.sum()
        elif t.dtype == torch.float16:
            s = t.sum(dtype=torch.float32)  # fp16's own sum overflows at 65504
        else:
            s = t.float().sum()  # fp8, integer alphas
        total += s.to(total.device)
    return bool(torch.isfinite(total))
