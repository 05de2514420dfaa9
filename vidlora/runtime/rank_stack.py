"""``RankStack``: every adapter's low-rank factors on one unit, side by side.

A unit computes ``((x A^T) * c) B^T`` for all its adapters at once (DESIGN.md,
"Stacking"): A [Rb, K], B [N, Rb] and c [Rb] hold the adapters' ranks one after the
other. Rb is padded up to a multiple of 16 (the tensor-core minimum) with zero rows and
zero scale, so:

* a strength change or enable/disable writes c in place: no reallocation, no recompile;
* adding an adapter whose ranks fit into the free (padding) rows writes them in place:
  the shapes do not change, so compiled blocks do not recompile;
* removing an adapter compacts the rows in place; the stack is reallocated smaller
  (freeing memory) once less than half of it is in use, as a growable array does. So a
  swap (remove one adapter, add another of the same size) reallocates nothing.

The tensors are the owner module's buffers ``lora_a``, ``lora_b``, ``lora_scale``, whose
*objects* never change (only their ``.data``), so offload hooks that recorded them at
setup (model / group offloading) keep moving them. Invariant: rows and columns past the
used ones are zero.

For a fused unit (q/k/v), B is block-diagonal: an adapter's q ranks have non-zero B
entries only in the q rows. That costs (parts - 1) x more B memory than separate units
(about 80 MB for a rank-32 LoRA over Wan 14B's 40 q/k/v groups in bf16) and buys one read
of x for all three projections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["RankStack", "Slot", "Part", "rank_bucket", "RANK_MULTIPLE"]

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


class RankStack:
    """The slot allocator over ``owner``'s ``lora_a`` / ``lora_b`` / ``lora_scale`` buffers."""

    def __init__(self, owner: nn.Module, parts: tuple[Part, ...]):
        self._owner = owner
        self._parts = {p.path: p for p in parts}
        self.slots: list[Slot] = []

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
        tensors are written straight into the stack."""
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
                o.lora_b[part.start : part.stop, col : col + r] = up
                row_scale[col - start : col - start + r] = scale
                col += r
        except BaseException:
            # keep the invariant the next add relies on: unused rows and columns are zero
            o.lora_a[start : start + rank] = 0
            o.lora_b[:, start : start + rank] = 0
            raise
        o.lora_scale[start : start + rank] = 0.0
        slot = Slot(name, start, rank, row_scale, tuple(p for p, *_ in pieces))
        self.slots.append(slot)
        return slot

    @torch.no_grad()
    def remove(self, name: str, shrink: bool = True) -> None:
        """Drop an adapter's rows, compacting the ones after it in place; reallocate smaller
        (freeing memory) when less than half of the stack stays in use and ``shrink``."""
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
        new_used = used - slot.rank
        o.lora_a[new_used:used] = 0
        o.lora_b[:, new_used:used] = 0
        o.lora_scale[new_used:used] = 0
        self.slots.remove(slot)
        for s in self.slots:
            if s.start > lo:
                s.start -= slot.rank
        if shrink and rank_bucket(new_used) * 2 < self.stored_rank:
            self._resize(rank_bucket(new_used))

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
