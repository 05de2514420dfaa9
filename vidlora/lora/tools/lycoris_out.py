"""LyCORIS LoHa / LoKr deltas (factored.py) back to their file tensors, with the scale kept.

A LoHa is written as its four ``hada_*`` factors, a LoKr as ``lokr_w1`` (or ``_a``/``_b``)
and ``lokr_w2`` (or ``_a``/``_b``), exactly as read. The scale rules of lycoris.py run
backwards: LoHa alpha = scale x rank(w1b); LoKr alpha = scale x rank(w2) when w2 is
factored, else x rank(w1); two full factors take no alpha (scale 1: any other scale is
multiplied into w2). Namings that keep no alpha key ("bake") multiply the scale into the
first factor instead.

The diffusers pieces of a fused original (Hunyuan qkv) were cut from one delta by rows:
:func:`join_pieces` puts them back together when they still are one delta's rows.
"""

from __future__ import annotations

import torch

from ..factored import FactoredDelta, KronDelta, LoHaDelta

__all__ = ["lycoris_tensors", "join_pieces"]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or (a.shape == b.shape and torch.equal(a, b))


def _nice(x: float) -> float:
    """alpha = scale x r computed back from scale = alpha / r: drop the last-ulp noise."""
    return float(f"{x:.12g}")


def lycoris_tensors(delta: FactoredDelta, bake: bool) -> tuple[dict[str, torch.Tensor], float | None, int | None] | None:
    """({suffix: tensor}, alpha to write or None, the rank an "always" naming writes as alpha
    for scale 1 (None: no alpha at all)); None when the delta is no longer a whole LoKr
    (a row selection of the Kronecker product has no LoKr form)."""
    s = delta.scale
    if isinstance(delta, LoHaDelta):
        w1a, rank = delta.w1a, int(delta.w1b.shape[0])
        if bake and s != 1.0:
            w1a, s = (w1a.float() * s).to(w1a.dtype), 1.0
        tensors = {".hada_w1_a": w1a, ".hada_w1_b": delta.w1b, ".hada_w2_a": delta.w2a, ".hada_w2_b": delta.w2b}
        return tensors, (None if s == 1.0 else _nice(s * rank)), rank
    if not isinstance(delta, KronDelta):
        return None
    (a, _), (c, _) = delta.inner_shapes
    if delta.segments != ((0, a * c),):
        return None
    w1, w2 = delta.w1, delta.w2
    rank = int(w2[1].shape[0]) if isinstance(w2, tuple) else int(w1[1].shape[0]) if isinstance(w1, tuple) else None
    if (rank is None or bake) and s != 1.0:
        # no alpha can say it (two full factors), or the naming keeps none: into a factor
        if isinstance(w1, tuple):
            w1 = ((w1[0].float() * s).to(w1[0].dtype), w1[1])
        else:
            w1 = (w1.float() * s).to(w1.dtype)
        s = 1.0
    tensors = {}
    for n, f in (("1", w1), ("2", w2)):
        if isinstance(f, tuple):
            tensors[f".lokr_w{n}_a"], tensors[f".lokr_w{n}_b"] = f
        else:
            tensors[f".lokr_w{n}"] = f
    return tensors, (None if s == 1.0 else _nice(s * rank)), rank


def join_pieces(pieces: list[FactoredDelta]) -> FactoredDelta | None:
    """The one delta whose consecutive rows the pieces are (LoHa: shared A factors, B rows
    stacked; LoKr: the same factors, contiguous Kronecker rows), None when they are not."""
    first = pieces[0]
    if all(isinstance(p, LoHaDelta) for p in pieces):
        if not all(_same(p.w1b, first.w1b) and _same(p.w2b, first.w2b) and p.scale == first.scale for p in pieces):
            return None
        return LoHaDelta(torch.cat([p.w1a for p in pieces]), first.w1b, torch.cat([p.w2a for p in pieces]), first.w2b,
                         first.scale)  # fmt: skip
    if all(isinstance(p, KronDelta) for p in pieces):
        if not all(p.w1 is first.w1 and p.w2 is first.w2 and p.scale == first.scale for p in pieces):
            return None
        segments: list[tuple[int, int]] = []
        for p in pieces:
            for s, e in p.segments:
                if segments and segments[-1][1] == s:
                    segments[-1] = (segments[-1][0], e)
                else:
                    segments.append((s, e))
        return KronDelta(first.w1, first.w2, first.scale, tuple(segments))
    return None
