"""``RankStack``: every adapter's low-rank factors on one unit, side by side.

A unit computes ``((x A^T) * c) B^T`` for all its adapters at once (DESIGN.md,
"Stacking"): A [Rb, K], B [N, Rb] and c [Rb] hold the adapters' ranks one after the
other. Rb is padded up to a multiple of 16 (the tensor-core minimum) with rows of zero
scale, so:

* a strength change or enable/disable writes c in place: no reallocation, no recompile;
* adding an adapter whose ranks fit into the free (padding) rows writes them in place:
  the shapes do not change, so compiled blocks do not recompile;
* removing an adapter compacts the rows in place; the stack is reallocated smaller
  (freeing memory) once less than half of it is in use, as a growable array does. So a
  swap (remove one adapter, add another of the same size) reallocates nothing.

The tensors are the owner module's buffers ``lora_a``, ``lora_b``, ``lora_scale``, whose
*objects* never change (only their ``.data``), so offload hooks that recorded them at
setup (model / group offloading) keep moving them.

Invariant: past the used rows the scale is zero; A rows and B columns there are zero or
*stale*, the finite values a removed adapter left. A stale row adds exactly nothing (a
finite x A^T times a zero scale times finite B entries: +0 in every sum), so a remove
only zeroes the scale, and a swap writes the new adapter's bytes once instead of zeroing
the old ones first. That needs x A^T to stay finite, which fp32 and bf16 stacks (fp32's
range) give; an fp16 stack (65504 at most) zeroes freed rows as before. NaN/Inf is
refused before anything is written (:func:`require_finite`), and values a narrower stack
dtype would turn into Inf (1e5 into fp16) after the write, so none can be left behind.
``scrub`` zeroes for real (a failed add leaves zeros where its rows were).

For a fused unit (q/k/v), B is block-diagonal: an adapter's q ranks have non-zero B
entries only in the q rows. That costs (parts - 1) x more B memory than separate units
(about 80 MB for a rank-32 LoRA over Wan 14B's 40 q/k/v groups in bf16) and buys one read
of x for all three projections. Each column is tagged with the part whose B rows may be
non-zero in it (``None``: all zero), so an add over stale columns zeroes the rows outside
its part only where another part's values were left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from vidlora.common.finite import FP32_RANGE, sums_finite
from vidlora.errors import LoRAFormatError

__all__ = ["RankStack", "Slot", "Part", "rank_bucket", "require_finite", "RANK_MULTIPLE"]

# Ranks are padded to a multiple of 16: the smallest K of a bf16/fp16 tensor-core MMA.
RANK_MULTIPLE = 16


def rank_bucket(rank: int) -> int:
    """Stored rows for ``rank`` used rows: 0 stays 0, else the next multiple of 16."""
    return -(-rank // RANK_MULTIPLE) * RANK_MULTIPLE


@dataclass(frozen=True)
class Part:
    """One original projection inside a unit: its canonical module path and output rows."""

    path: str
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass
class Slot:
    """One adapter's ranks inside a stack: rows [start, start + rank)."""

    name: str
    start: int
    rank: int
    row_scale: torch.Tensor  # [rank] fp32 (CPU): the file's alpha / r for each row
    parts: tuple[str, ...] = field(default_factory=tuple)


# One adapter's factors for one projection of a unit: (part path, down [r, K], up [part rows, r], scale).
Piece = tuple[str, torch.Tensor, torch.Tensor, float]


def require_finite(adapter: str, pieces: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Raise LoRAFormatError naming the first ``(path, tensor)`` with NaN/Inf (one summed
    pass decides the usual case: ``sums_finite``)."""
    pieces = [(p, t) for p, t in pieces if t.numel() and t.device.type != "meta"]
    if sums_finite(t for _, t in pieces):
        return
    for path, t in pieces:
        if not bool(torch.isfinite(t.float()).all()):
            raise LoRAFormatError(f"adapter {adapter!r}: the LoRA factors of {path} contain NaN or Inf")


def _narrows(src: torch.dtype, dst: torch.dtype) -> bool:
    """Whether a finite ``src`` value can become Inf in ``dst`` (fp32 -> fp16, fp32 -> bf16
    near 3.4e38, ...)."""
    return src != dst and src.is_floating_point and torch.finfo(src).max > torch.finfo(dst).max


class RankStack:
    """The slot allocator over ``owner``'s ``lora_a`` / ``lora_b`` / ``lora_scale`` buffers."""

    def __init__(self, owner: nn.Module, parts: tuple[Part, ...]):
        self._owner = owner
        self._parts = {p.path: p for p in parts}
        self.slots: list[Slot] = []
        # per stored row: the part whose B rows may be non-zero in that column (None: zeros)
        self._tags: list[str | None] = []

    # ------------------------------------------------------------------ views
    @property
    def used_rank(self) -> int:
        return sum(s.rank for s in self.slots)

    @property
    def stored_rank(self) -> int:
        return int(self._owner.lora_a.shape[0])

    def slot(self, name: str) -> Slot | None:
        return next((s for s in self.slots if s.name == name), None)

    def needs_growth(self, rank: int) -> bool:
        """Whether adding ``rank`` rows would reallocate the stack."""
        return self.used_rank + rank > self.stored_rank

    def nbytes_of(self, name: str) -> int:
        """Bytes an adapter's rows take (A and B rows; its share of the stack)."""
        slot = self.slot(name)
        if slot is None:
            return 0
        o = self._owner
        return slot.rank * (o.lora_a.shape[1] + o.lora_b.shape[0]) * o.lora_a.element_size()

    # ------------------------------------------------------------------ changes
    @torch.no_grad()
    def add(self, name: str, pieces: list[Piece]) -> Slot:
        """Append an adapter, one piece per projection of the unit it targets. Its scale
        entries start at 0 (inactive); the caller writes them with :meth:`set_scale`. The
        tensors are written straight into the stack; they must be finite (the invariant
        above: the caller checks them with :func:`require_finite` before any write)."""
        if self.slot(name) is not None:
            raise ValueError(f"adapter {name!r} is already on {getattr(self._owner, 'unit_name', self._owner)}")
        o = self._owner
        rank = sum(int(d.shape[0]) for _, d, _, _ in pieces)
        start = self.used_rank
        if start + rank > self.stored_rank:
            self._resize(rank_bucket(start + rank))
        row_scale = torch.empty(rank, dtype=torch.float32)
        col = start
        try:
            for path, down, up, scale in pieces:
                part = self._parts[path]
                r = int(down.shape[0])
                o.lora_a[col : col + r] = down
                b = o.lora_b[:, col : col + r]
                b[part.start : part.stop] = up
                if any(t is not None and t != path for t in self._tags[col : col + r]):
                    b[: part.start] = 0  # another part's stale rows: block-diagonal again
                    b[part.stop :] = 0
                self._tags[col : col + r] = [path] * r
                row_scale[col - start : col - start + r] = scale
                col += r
            dt = o.lora_a.dtype
            if any(_narrows(d.dtype, dt) or _narrows(u.dtype, dt) for _, d, u, _ in pieces):
                written = [(getattr(o, "unit_name", "the unit"), o.lora_a[start : start + rank]),
                           (getattr(o, "unit_name", "the unit"), o.lora_b[:, start : start + rank])]  # fmt: skip
                try:
                    require_finite(name, written)
                except LoRAFormatError:
                    raise LoRAFormatError(f"adapter {name!r}: its LoRA factors on {written[0][0]} overflow {dt} (the "
                                          f"model's compute dtype; at most {torch.finfo(dt).max:g})") from None  # fmt: skip
        except BaseException:
            self._scrub(start, start + rank)
            raise
        o.lora_scale[start : start + rank] = 0.0
        slot = Slot(name, start, rank, row_scale, tuple(p for p, *_ in pieces))
        self.slots.append(slot)
        return slot

    @torch.no_grad()
    def remove(self, name: str, shrink: bool = True, scrub: bool = False) -> None:
        """Drop an adapter's rows, compacting the ones after it in place; reallocate smaller
        (freeing memory) when less than half of the stack stays in use and ``shrink``.
        The freed rows keep their (finite) values behind a zero scale unless ``scrub``."""
        slot = self.slot(name)
        if slot is None:
            return
        o = self._owner
        used = self.used_rank
        lo, hi = slot.start, slot.start + slot.rank
        tail = used - hi
        if tail:
            # clone: source and destination row ranges may overlap
            o.lora_a[lo : lo + tail] = o.lora_a[hi:used].clone()
            o.lora_b[:, lo : lo + tail] = o.lora_b[:, hi:used].clone()
            o.lora_scale[lo : lo + tail] = o.lora_scale[hi:used].clone()
            tags = self._tags  # columns move with their tags; the vacated ones keep theirs
            self._tags = tags[:lo] + tags[hi:used] + tags[used - slot.rank : used] + tags[used:]
        new_used = used - slot.rank
        o.lora_scale[new_used:used] = 0
        self.slots.remove(slot)
        for s in self.slots:
            if s.start > lo:
                s.start -= slot.rank
        if scrub or o.lora_a.dtype not in FP32_RANGE:  # fp16: x A^T of a stale row could overflow
            self._scrub(new_used, self.stored_rank)
        if shrink and rank_bucket(new_used) * 2 < self.stored_rank:
            self._resize(rank_bucket(new_used))

    def restore_rows(self, rows: int) -> None:
        """Back to ``rows`` stored rows (a failed add undoing its growth), if they hold the
        used ones."""
        if rows != self.stored_rank and rows >= self.used_rank:
            self._resize(rows)

    def _scrub(self, lo: int, hi: int) -> None:
        """Zero rows [lo, hi) past the used ones (no longer stale)."""
        o = self._owner
        o.lora_a[lo:hi] = 0
        o.lora_b[:, lo:hi] = 0
        o.lora_scale[lo:hi] = 0
        self._tags[lo:hi] = [None] * (min(hi, len(self._tags)) - lo)

    @torch.no_grad()
    def set_scale(self, name: str, weight: float) -> None:
        """Write c = weight * (alpha / r) into the adapter's rows, in place."""
        slot = self.slot(name)
        if slot is not None:
            self._owner.lora_scale[slot.start : slot.start + slot.rank].copy_(slot.row_scale * float(weight))

    def _resize(self, rows: int) -> None:
        """Reallocate to ``rows`` rows keeping the used ones; the buffer objects stay."""
        o = self._owner
        used = min(self.used_rank, rows)
        dev, dt = o.lora_a.device, o.lora_a.dtype
        a = torch.zeros(rows, o.lora_a.shape[1], device=dev, dtype=dt)
        b = torch.zeros(o.lora_b.shape[0], rows, device=dev, dtype=dt)
        c = torch.zeros(rows, device=dev, dtype=torch.float32)
        a[:used] = o.lora_a[:used]
        b[:, :used] = o.lora_b[:, :used]
        c[:used] = o.lora_scale[:used]
        o.lora_a.data, o.lora_b.data, o.lora_scale.data = a, b, c
        self._tags = self._tags[:used] + [None] * (rows - used)  # fresh zeros past the used rows
