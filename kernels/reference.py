"""Pure-torch references for every vidlora kernel.

The same functions are the CPU path (what ``vidlora::lora_linear`` runs on CPU tensors),
the test oracle for the Triton kernels and the baseline of the benchmarks.

Math (DESIGN.md): for x [..., K], W [N, K], bias [N] or None, A [R, K], B [N, R] and a
per-rank fp32 scale c [R] (stacked adapters are concatenated ranks; c = s_i * alpha_i / r_i
over adapter i's rows, zero on padding rows):

    y = x W^T + b + ((x A^T) * c) B^T

No extra full-size temporaries: the base result is written once by ``addmm`` and the
low-rank delta is accumulated into it in place with ``addmm_``; the only other buffer is
T = x A^T, which is [M, R] (R << N).
"""

from __future__ import annotations

import torch

__all__ = ["lora_linear_reference", "lora_delta_reference"]


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """View x [..., K] as [M, K] without copying when the leading dims allow it."""
    return x.reshape(-1, x.shape[-1])


def lora_linear_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    lora_scale: torch.Tensor,
) -> torch.Tensor:
    """y = x W^T + b + ((x A^T) * c) B^T, computed in x's dtype.

    R = 0 (empty A/B) costs exactly the base ``addmm``. Accumulation precision is what
    torch's CPU/GPU matmul gives for the dtype (fp32 accumulate for bf16/fp16 on CPU).
    """
    x2 = _as_rows(x)
    if bias is not None:
        y = torch.addmm(bias, x2, weight.t())
    else:
        y = torch.mm(x2, weight.t())
    if lora_a.shape[0] > 0:
        t = torch.mm(x2, lora_a.t())
        # T * c in fp32 then back to the compute dtype: c can hold values (alpha / r
        # with alpha = 1, r = 128) that fp16 represents poorly, and T is small.
        t = (t.float() * lora_scale).to(y.dtype)
        y.addmm_(t, lora_b.t())
    return y.reshape(*x.shape[:-1], weight.shape[0])


def lora_delta_reference(
    x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, lora_scale: torch.Tensor
) -> torch.Tensor:
    """Only the low-rank term ((x A^T) * c) B^T, in fp32 (tests and error analysis)."""
    x2 = _as_rows(x).float()
    t = (x2 @ lora_a.float().t()) * lora_scale.float()
    return (t @ lora_b.float().t()).reshape(*x.shape[:-1], lora_b.shape[0])
