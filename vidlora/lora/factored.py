"""LyCORIS LoHa and LoKr weight deltas, kept factored.

A LoHa or LoKr file stores a few small factors per module; the weight delta they stand for
is as large as the weight (a Wan 14B FFN: 13824 x 5120 = 70.8 M entries, 283 MB in fp32).
Expanding every module at read time made a 9 MiB Wan 14B LoKr need ~56 GB. These classes
hold the factors only (memory in proportion to the file) and behave like the delta tensor
where vidlora needs one: ``shape``, ``ndim``, ``numel()``, ``delta @ x`` (and
:meth:`apply` for ``x @ delta^T``) without forming the matrix; :meth:`to_dense` forms it
when asked (tests, a dense side term on the device when that is cheaper).

Exact low-rank forms, so most of them join the fused rank stack as ordinary LoRA ranks:

* LoHa, dW = s (B1 A1) * (B2 A2) (elementwise, ranks r1, r2), is exactly a rank r1*r2 LoRA
  with Khatri-Rao factors: up[n, (i,j)] = B1[n,i] B2[n,j], down[(i,j), k] = A1[i,k] A2[j,k].
* LoKr, dW = s kron(W1, W2) with W1 = P Q and W2 = U V (a full factor is I W or W I,
  whichever is narrower), is kron(P, U) kron(Q, V): a LoRA of rank rank(P) * rank(U). A
  factored W2 of rank r gives rank(W1) * r (min(a, b) * r for a full [a, b] W1).
* A full W1 with a full W2 is (nearly) full rank; its product with x is two small matmuls
  on a reshaped x instead: x [M, b*d] -> X [M, b, d]; Y = W1 X W2^T [M, a, c] -> [M, a*c].

Row selections (a fused original cut into diffusers pieces, the half swap of Hunyuan's
final adaLN) stay exact: LoHa cuts its B factors' rows; LoKr keeps a list of row segments
of the full Kronecker rows.
"""

from __future__ import annotations

import math

import torch

__all__ = ["FactoredDelta", "LoHaDelta", "KronDelta", "kron_apply"]

Factor = "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"  # full matrix, or (a, b) with a @ b


class FactoredDelta:
    """Common interface of the factored deltas (see the module docstring)."""

    kind = "factored"
    scale: float

    # ------------------------------------------------------------------ tensor-like
    @property
    def shape(self) -> torch.Size:
        raise NotImplementedError

    @property
    def ndim(self) -> int:
        return 2

    def numel(self) -> int:
        """Entries of the delta it stands for (as a tensor's numel), not of its factors."""
        return math.prod(self.shape)

    def dim(self) -> int:
        return 2

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32  # what to_dense() / apply() compute in by default

    @property
    def device(self) -> torch.device:
        return self.factors()[0].device

    def factors(self) -> list[torch.Tensor]:
        raise NotImplementedError

    @property
    def stored_numel(self) -> int:
        """Entries actually held (the file's factors)."""
        return sum(t.numel() for t in self.factors())

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.factors())

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        """dW @ x for x of shape [in] or [in, m], without forming dW."""
        if x.ndim == 1:
            return self.apply(x.unsqueeze(0)).squeeze(0)
        return self.apply(x.transpose(0, 1)).transpose(0, 1)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """x @ dW^T for x [..., in] (a Linear's side term), in x's dtype."""
        raise NotImplementedError

    def to_dense(self, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        raise NotImplementedError

    def double(self) -> torch.Tensor:
        return self.to_dense(dtype=torch.float64)

    def float(self) -> torch.Tensor:
        return self.to_dense(dtype=torch.float32)

    # ------------------------------------------------------------------ forms
    @property
    def lora_rank(self) -> int:
        """Rank of the exact LoRA form (:meth:`low_rank`)."""
        raise NotImplementedError

    def low_rank(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(down [R, in], up [out, R]) with dW = scale * up @ down exactly (R = lora_rank)."""
        raise NotImplementedError

    def rows(self, start: int, stop: int) -> "FactoredDelta":
        """The delta of output rows [start, stop)."""
        raise NotImplementedError

    def swap_halves(self) -> "FactoredDelta":
        """The delta with its two row halves traded (shift, scale -> scale, shift)."""
        n = self.shape[0]
        if n % 2:
            raise ValueError(f"{n} rows cannot be cut into two halves")
        return self._concat_rows([(n // 2, n), (0, n // 2)])

    def _concat_rows(self, ranges: list[tuple[int, int]]) -> "FactoredDelta":
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.shape)}, lora_rank={self.lora_rank}, scale={self.scale:g})"


def _full(f) -> torch.Tensor:
    return f[0].float() @ f[1].float() if isinstance(f, tuple) else f.float()


def _left_right(f) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, Q) with P @ Q = the factor: its own factors, or the full matrix beside an
    identity on its narrower side (an exact factorization of rank min(rows, cols))."""
    if isinstance(f, tuple):
        return f[0].float(), f[1].float()
    w = f.float()
    a, b = w.shape
    if a <= b:
        return torch.eye(a, dtype=w.dtype, device=w.device), w
    return w, torch.eye(b, dtype=w.dtype, device=w.device)


def _shape_of(f) -> tuple[int, int]:
    return (int(f[0].shape[0]), int(f[1].shape[1])) if isinstance(f, tuple) else (int(f.shape[0]), int(f.shape[1]))


def _rank_of(f) -> int:
    return int(f[0].shape[1]) if isinstance(f, tuple) else min(_shape_of(f))


class LoHaDelta(FactoredDelta):
    """dW = scale * (w1a @ w1b) * (w2a @ w2b); w1a [out, r1], w1b [r1, in], w2a [out, r2], w2b [r2, in]."""

    kind = "LoHa"

    def __init__(self, w1a: torch.Tensor, w1b: torch.Tensor, w2a: torch.Tensor, w2b: torch.Tensor, scale: float):
        self.w1a, self.w1b, self.w2a, self.w2b = w1a, w1b, w2a, w2b
        self.scale = float(scale)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((int(self.w1a.shape[0]), int(self.w1b.shape[1])))

    def factors(self) -> list[torch.Tensor]:
        return [self.w1a, self.w1b, self.w2a, self.w2b]

    @property
    def lora_rank(self) -> int:
        return int(self.w1b.shape[0]) * int(self.w2b.shape[0])

    def low_rank(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        a1, a2 = self.w1b.to(dtype), self.w2b.to(dtype)
        b1, b2 = self.w1a.to(dtype), self.w2a.to(dtype)
        down = (a1[:, None, :] * a2[None, :, :]).reshape(-1, a1.shape[1])  # [(i,j), in]
        up = (b1[:, :, None] * b2[:, None, :]).reshape(b1.shape[0], -1)  # [out, (i,j)]
        return down, up

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        down, up = self.low_rank(dtype=x.dtype)
        return self.scale * ((x @ down.T) @ up.T)

    def to_dense(self, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        t = [f.to(device=device, dtype=torch.float32) for f in self.factors()]
        return (self.scale * ((t[0] @ t[1]) * (t[2] @ t[3]))).to(dtype)

    def rows(self, start: int, stop: int) -> "LoHaDelta":
        return LoHaDelta(self.w1a[start:stop], self.w1b, self.w2a[start:stop], self.w2b, self.scale)

    def _concat_rows(self, ranges: list[tuple[int, int]]) -> "LoHaDelta":
        w1a = torch.cat([self.w1a[a:b] for a, b in ranges])
        w2a = torch.cat([self.w2a[a:b] for a, b in ranges])
        return LoHaDelta(w1a, self.w1b, w2a, self.w2b, self.scale)


class KronDelta(FactoredDelta):
    """dW = scale * kron(W1, W2)[segments]; W1 [a, b], W2 [c, d], each a full matrix or a
    pair (x, y) with W = x @ y. ``segments``: row ranges of the full Kronecker product
    (a*c rows) taken one after the other; None for all of them."""

    kind = "LoKr"

    def __init__(self, w1, w2, scale: float, segments: tuple[tuple[int, int], ...] | None = None):
        self.w1, self.w2 = w1, w2
        self.scale = float(scale)
        (a, b), (c, d) = _shape_of(w1), _shape_of(w2)
        self._full_shape = (a * c, b * d)
        self.segments = tuple(segments) if segments is not None else ((0, a * c),)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((sum(e - s for s, e in self.segments), self._full_shape[1]))

    @property
    def inner_shapes(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return _shape_of(self.w1), _shape_of(self.w2)

    @property
    def both_full(self) -> bool:
        return not isinstance(self.w1, tuple) and not isinstance(self.w2, tuple)

    def factors(self) -> list[torch.Tensor]:
        out = []
        for f in (self.w1, self.w2):
            out += list(f) if isinstance(f, tuple) else [f]
        return out

    @property
    def lora_rank(self) -> int:
        return _rank_of(self.w1) * _rank_of(self.w2)

    def _gather(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        if self.segments == ((0, self._full_shape[0]),):
            return t
        return torch.cat([t.narrow(dim, s, e - s) for s, e in self.segments], dim=dim)

    def low_rank(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        p, q = _left_right(self.w1)
        u, v = _left_right(self.w2)
        up = self._gather(torch.kron(p, u), 0)
        return torch.kron(q, v).to(dtype), up.to(dtype)

    def small_factors(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(W1, W2) as full matrices (both are small: that is the point of LoKr)."""
        return _full(self.w1).to(dtype), _full(self.w2).to(dtype)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        w1, w2 = self.small_factors(x.dtype)
        return self.scale * kron_apply(x, w1, w2, self.segments, self._full_shape[0])

    def to_dense(self, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        w1, w2 = (w.to(device) for w in self.small_factors())
        return (self.scale * self._gather(torch.kron(w1, w2), 0)).to(dtype)

    def _map(self, ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
        """Row ranges of this delta -> segments of the full Kronecker rows."""
        out = []
        for lo, hi in ranges:
            pos = 0
            for s, e in self.segments:
                n = e - s
                a, b = max(lo, pos), min(hi, pos + n)
                if a < b:
                    out.append((s + a - pos, s + b - pos))
                pos += n
        merged: list[tuple[int, int]] = []
        for s, e in out:
            if merged and merged[-1][1] == s:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        return tuple(merged)

    def rows(self, start: int, stop: int) -> "KronDelta":
        return KronDelta(self.w1, self.w2, self.scale, self._map([(start, stop)]))

    def _concat_rows(self, ranges: list[tuple[int, int]]) -> "KronDelta":
        return KronDelta(self.w1, self.w2, self.scale, self._map(ranges))


def kron_apply(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, segments, full_rows: int) -> torch.Tensor:
    """x @ kron(w1, w2)[segments]^T for x [..., b*d], w1 [a, b], w2 [c, d]: two small
    matmuls on x viewed as [..., b, d], restricted to the w1 rows the segments touch."""
    a, b = w1.shape
    c, d = w2.shape
    lo = min(s for s, _ in segments) // c
    hi = -(-max(e for _, e in segments) // c)
    xs = x.reshape(*x.shape[:-1], b, d)
    t = torch.matmul(xs, w2.T)  # [..., b, c]
    y = torch.matmul(w1[lo:hi], t)  # [..., hi - lo, c]
    y = y.reshape(*x.shape[:-1], (hi - lo) * c)
    base = lo * c
    if len(segments) == 1 and segments[0] == (base, base + y.shape[-1]):
        return y
    return torch.cat([y[..., s - base : e - base] for s, e in segments], dim=-1)
