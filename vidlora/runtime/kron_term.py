"""``KronTerm``: a LyCORIS LoKr with two full factors, applied as a side term of a unit.

Such a LoKr (ai-toolkit's ``lokr_full_rank``, W1 [a, b] and W2 [c, d] both full) is
(nearly) full rank, so it fits no rank stack, and its dense product is as large as the
weight (Wan 14B FFN: 70.8 M entries). Its Kronecker structure makes it cheap anyway:

    x kron(W1, W2)^T = (W1 X W2^T) flattened,   X = x viewed as [..., b, d]

two small matmuls (a Wan 14B q with W1 64x64, W2 80x80: 2 x 64 x 80 x 144 = 1.5 M MACs per
token against 26 M for the base GEMM), with W1 and W2 the only tensors kept: 10.5 k
entries. ``coef`` (strength x scale) is a tensor written in place, so a strength change
allocates nothing and recompiles nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from vidlora.lora.factored import KronDelta, kron_apply

__all__ = ["KronTerm"]


class KronTerm(nn.Module):
    """One adapter's full-factor LoKr on output rows [start, stop) of a unit."""

    def __init__(self, adapter: str, part: str, delta: KronDelta, start: int, stop: int, device, dtype):
        super().__init__()
        if stop - start != delta.shape[0]:
            raise ValueError(f"{part}: LoKr delta has {delta.shape[0]} rows, the unit part {stop - start}")
        w1, w2 = delta.small_factors()
        self.adapter, self.part = adapter, part
        self.start, self.stop = int(start), int(stop)
        self.segments = delta.segments
        self.full_rows = delta.inner_shapes[0][0] * delta.inner_shapes[1][0]
        self.scale = delta.scale
        self.register_buffer("w1", w1.to(device=device, dtype=dtype), persistent=False)
        self.register_buffer("w2", w2.to(device=device, dtype=dtype), persistent=False)
        self.register_buffer("coef", torch.zeros((), device=device, dtype=torch.float32), persistent=False)

    @torch.no_grad()
    def set_weight(self, weight: float) -> None:
        self.coef.fill_(float(weight) * self.scale)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = kron_apply(x, self.w1, self.w2, self.segments, self.full_rows) * self.coef.to(x.dtype)
        if self.start == 0 and self.stop == y.shape[-1]:
            return y + t
        y[..., self.start : self.stop] += t
        return y

    def extra_repr(self) -> str:
        return f"{self.adapter}: {self.part}, kron({tuple(self.w1.shape)}, {tuple(self.w2.shape)})"
