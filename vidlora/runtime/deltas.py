"""Full-tensor deltas: small parameters set to ``original + sum_i w_i * delta_i``.

Norms, modulation tables, biases, the patch embedding and the head are small, so an
adapter's ``diff`` / ``diff_b`` / ``diff_m`` on them is applied by writing the parameter
whenever the adapter set or a strength changes. The original is kept from the first
write and put back bit for bit when no adapter touches the tensor any more. A dense delta
on a patched unit's *weight* is never written into the base weight: it becomes the unit's
dense side term (``x dW^T``), the sum of every adapter's part.
"""

from __future__ import annotations

from typing import Callable

import torch

from vidlora.lora.factored import FactoredDelta

from .offload import storage_of
from .patching import PatchedModel
from .plan import DeltaTarget
from .unit import LoRALinear

__all__ = ["DeltaTable"]


class DeltaTable:
    """Every full-tensor delta of every adapter, by target tensor, and the originals."""

    def __init__(self, patched: dict[str, PatchedModel]):
        self._patched = patched
        self._targets: dict[tuple, DeltaTarget] = {}
        self._contrib: dict[tuple, dict[str, torch.Tensor]] = {}  # target key -> adapter name -> delta
        self._originals: dict[tuple, torch.Tensor] = {}  # target key -> original values

    def add(self, name: str, target: DeltaTarget, delta: torch.Tensor) -> None:
        """Register one delta (applied by the next :meth:`refresh` of its key)."""
        self._targets[target.key] = target
        self._contrib.setdefault(target.key, {})[name] = delta

    def discard(self, name: str, key: tuple) -> None:
        """Forget an adapter's delta on ``key`` (refresh afterwards to write the tensor)."""
        entries = self._contrib.get(key)
        if entries is not None:
            entries.pop(name, None)

    def nbytes(self, name: str) -> int:
        return sum(_nbytes(d[name]) for d in self._contrib.values() if name in d)

    @torch.no_grad()
    def refresh(self, key: tuple, weight_of: Callable[[str], float]) -> None:
        """Write the tensor at ``key``: original + sum of weight_of(adapter) * delta, or the
        original itself once no adapter touches it."""
        target = self._targets.get(key)
        if target is None:
            return
        entries = self._contrib.get(key) or {}
        if target.dense_unit is not None:
            if not entries:
                self._forget(key)
            self._refresh_dense(target.dense_unit, weight_of)
            return
        live = self._live_tensor(target)
        if not entries:
            orig = self._originals.pop(key, None)
            if orig is not None:
                live.copy_(orig.to(live.device))
            self._forget(key)
            return
        if key not in self._originals:
            self._originals[key] = live.detach().clone()
        total = self._originals[key].to(device=live.device, dtype=torch.float32)
        for name, d in entries.items():
            w = weight_of(name)
            if w != 0.0:
                total = total + w * _dense(d, live.device)
        live.copy_(total.to(live.dtype))

    def _forget(self, key: tuple) -> None:
        self._targets.pop(key, None)
        self._contrib.pop(key, None)

    @torch.no_grad()
    def _refresh_dense(self, unit: LoRALinear, weight_of: Callable[[str], float]) -> None:
        """The unit's dense side term: sum of w_i * dW_i over every adapter and part."""
        total = None
        for key, target in self._targets.items():
            if target.dense_unit is not unit:
                continue
            for name, delta in self._contrib.get(key, {}).items():
                if total is None:
                    total = torch.zeros(unit.out_features, unit.in_features, dtype=torch.float32, device=unit.lora_a.device)
                lo, hi = target.rows or (0, unit.out_features)
                w = weight_of(name)
                if w != 0.0:
                    total[lo:hi] += w * _dense(delta, total.device)
        unit.set_dense_delta(total)

    def _live_tensor(self, target: DeltaTarget) -> torch.Tensor:
        model = self._patched[target.model_key].model
        mpath, _, pname = target.param_path.rpartition(".")
        t = storage_of(model.get_submodule(mpath) if mpath else model, pname)
        if target.rows is not None:
            t = t[target.rows[0] : target.rows[1]]
        return t


def _dense(delta, device) -> torch.Tensor:
    """A delta as an fp32 tensor on ``device``; a LoHa product is formed there, on demand."""
    if isinstance(delta, FactoredDelta):
        return delta.to_dense(device=device)
    return delta.to(device=device, dtype=torch.float32)


def _nbytes(delta) -> int:
    return delta.nbytes if isinstance(delta, FactoredDelta) else delta.numel() * delta.element_size()
