"""Which job a free worker gets next: swaps are rare, no worker idles while jobs wait.

A worker keeps to the LoRA set it holds while that set has jobs left (a strength change
writes a scale vector: free). When its set runs out it takes the set with the most jobs
left that no other worker holds, else the one with the most jobs left (two workers then
share a big set). So N sets on W workers cost about max(N, W) swaps, however many jobs.
Pure bookkeeping, no Ray: tested on its own.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable

__all__ = ["Dispatcher"]


class Dispatcher:
    """``jobs``: (job id, LoRA set key) in plan order."""

    def __init__(self, jobs: list[tuple[Hashable, Hashable]]):
        self._left: OrderedDict[Hashable, list[Hashable]] = OrderedDict()
        for job, lora_set in jobs:
            self._left.setdefault(lora_set, []).append(job)
        self._held: dict[Hashable, Hashable] = {}  # worker -> LoRA set it holds

    @property
    def remaining(self) -> int:
        return sum(len(v) for v in self._left.values())

    def next_for(self, worker: Hashable) -> Hashable | None:
        """The next job for a free ``worker`` (None when every job is handed out)."""
        current = self._held.get(worker, _NOTHING)
        if self._left.get(current):
            return self._take(worker, current)
        others = {s for w, s in self._held.items() if w != worker}
        candidates = [s for s, jobs in self._left.items() if jobs]
        if not candidates:
            return None
        free = [s for s in candidates if s not in others]
        pick = max(free or candidates, key=lambda s: len(self._left[s]))  # first of equals: plan order
        return self._take(worker, pick)

    def _take(self, worker: Hashable, lora_set: Hashable) -> Hashable:
        self._held[worker] = lora_set
        return self._left[lora_set].pop(0)


_NOTHING = object()
