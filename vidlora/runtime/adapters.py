"""``vidlora.attach`` and the ``Adapters`` handle it returns.

    h = vidlora.attach(pipe)                      # patch in place
    h.add("motion.safetensors", weight=0.8)       # validate the whole file, then install
    h.add("style.safetensors", weight=[1.0, 0.5], blocks=range(0, 20), expert="low")
    h.set_weight("motion", 0.5); h.disable("style"); h.remove("style")
    h.detach()                                    # the original modules back

What each call costs (DESIGN.md):

* ``add`` reads the file, validates it against every target model first (family, shapes,
  unmatched keys), then writes the adapter's ranks into each unit's stack: time and memory
  proportional to the adapter. Base weights are never copied or touched (their
  ``data_ptr`` stays the same). A failed ``add`` leaves the model exactly as it was.
* ``set_weight`` / ``enable`` / ``disable`` write the per-rank scale vectors in place: no
  allocation, no recompilation of compiled blocks.
* ``remove`` drops the adapter's ranks and frees its memory.
* Small full-tensor deltas (norms, modulation tables, biases, patch embedding, head) are
  applied as ``param = original + sum_i w_i * delta_i``; the originals are kept and put
  back bit for bit by ``remove``/``detach``.

``blocks=`` limits an adapter to some transformer blocks. Indices run over Wan's
``blocks``; for HunyuanVideo over the double-stream blocks first, then the single-stream
ones (0-19 double, 20-59 single on the real model). Parts of a LoRA outside the blocks
(embedders, head, patch embedding) are kept.

Wan 2.2 A14B pipelines carry two experts: ``transformer`` (high noise) and
``transformer_2`` (low noise). ``expert="high" | "low" | "both"`` picks where an adapter
goes; by default it follows the file's own signals (ai-toolkit ``transformer_1/2``,
``modelspec.timestep_range``, file names), else both, and the choice is logged and shown
in :meth:`Adapters.report`.

Strength schedules (a list spread over the steps, or a callable(step, n_steps)) are
evaluated by a forward pre-hook on each transformer that reads the step from the
pipeline's scheduler; with a bare transformer, drive them with :meth:`Adapters.set_step`.
The hook sits on the top-level transformer, outside regionally compiled blocks; it writes
tensor values only, so schedules cause no recompilation.

Not thread-safe: change adapters from one thread, between forwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from vidlora.common.text import format_bytes, index_ranges
from vidlora.errors import LoRAMismatchError, VidloraError
from vidlora.model import block_index, describe
from .fp8 import normalize_fp8_mode
from .unit import LoRALinear
from vidlora.lora.lora_file import LoRAFile
from .offload import pinned_copies, storage_of
from .patching import PatchedModel, find_transformers, patch_linear, patch_model, unpatch_model
from .schedules import WeightSpec, check_weight, current_step, describe_weight, is_schedule, weight_at

__all__ = ["attach", "Adapters"]

log = logging.getLogger("vidlora")

_EXPERT_KEYS = {"high": ("transformer",), "low": ("transformer_2",), "both": ("transformer", "transformer_2")}


@dataclass
class _Target:
    """A tensor a full-tensor delta lands in: a whole parameter, or rows of a fused one."""

    model_key: str
    param_path: str  # the parameter as the model names it now (fused name for fused rows)
    rows: tuple[int, int] | None  # row range inside that parameter, for fused units
    dense_unit: LoRALinear | None = None  # set when the delta is a dense weight side term

    @property
    def key(self) -> tuple:
        return (self.model_key, self.param_path, self.rows)


@dataclass
class _Adapter:
    name: str
    source: str
    lora: LoRAFile
    weight: WeightSpec
    enabled: bool = True
    blocks: tuple[int, ...] | None = None
    experts: tuple[str, ...] = ()  # model keys it is installed on
    expert_reason: str = ""
    units: list[tuple[str, LoRALinear]] = field(default_factory=list)  # (model key, unit)
    deltas: dict[tuple, tuple[_Target, torch.Tensor]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def nbytes(self) -> int:
        total = 0
        for _, unit in self.units:
            slot = unit.slot(self.name)
            if slot is not None:
                total += slot.rank * (unit.in_features + unit.out_features) * unit.lora_a.element_size()
        return total + sum(d.numel() * d.element_size() for _, d in self.deltas.values())


def attach(
    pipe_or_transformer,
    fp8: bool | str = False,
    *,
    fuse: bool = True,
    device: torch.device | str | None = None,
    keep_original: bool = False,
) -> "Adapters":
    """Patch a Wan / HunyuanVideo pipeline or transformer in place; return the handle.

    fp8: False, or True / "w8a16" / "w8a8": store every patched block weight in
        float8_e4m3fn with per-output-channel scales, layer by layer (never two full
        copies). FP8 is one way: ``detach()`` gives back the dequantized weights, unless
        ``keep_original=True`` kept a CPU copy of the originals. Weights that already are
        FP8 (FP8 checkpoints) are used as stored. The LoRAs stay in the compute dtype.
    fuse: fuse Wan's sibling projections (q/k/v, k/v, image k/v) into one GEMM each.
    device: move the transformers there, quantizing each layer on the way (a bf16 model
        in CPU memory -> an FP8 model on the GPU).
    """
    mode = normalize_fp8_mode(fp8)
    device = _check_device(device)
    pipe, models = find_transformers(pipe_or_transformer)
    patched: dict[str, PatchedModel] = {}
    try:
        for key, model in models.items():
            patched[key] = patch_model(pipe, key, model, fuse=fuse, fp8=mode, device=device, keep_original=keep_original)
    except BaseException:
        for pm in patched.values():
            unpatch_model(pm)
        raise
    return Adapters(pipe, patched)


def _check_device(device):
    if device is None:
        return None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise VidloraError(f"device= must name a torch device ('cuda', 'cuda:1', 'cpu'); got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VidloraError(f"device={str(device)!r}: no CUDA GPU is visible to torch (check the driver, or use 'cpu')")
    return device


class Report(dict):
    """``Adapters.report()``: a plain dict (JSON-serialisable) that prints as text."""

    def __str__(self) -> str:
        lines = []
        for key, m in self["models"].items():
            fp8 = f" ({', '.join(m['fp8'])})" if m.get("fp8") else ""
            lines.append(
                f"{key}: {m['family']}, {m['patched_linears']} Linears in {m['patched_units']} units "
                f"({m['fused_units']} fused), base {m['base_dtype']}{fp8} {format_bytes(m['base_bytes'])}, "
                f"adapter stacks {format_bytes(m['adapter_bytes'])}"
            )
        for a in self["adapters"]:
            state = "" if a["enabled"] else ", disabled"
            lines.append(
                f"  {a['name']}: weight {a['weight']}{state}, {a['linears']} Linears + {a['deltas']} tensors, "
                f"blocks {a['blocks'] if a['blocks'] == 'all' else index_ranges(a['blocks'])}, on {'+'.join(a['models'])}, "
                f"{format_bytes(a['bytes'])}"
            )
            if a["expert"]:
                lines.append(f"    {a['expert']}")
            for w in a["warnings"]:
                lines.append(f"    warning: {w}")
            if a["skipped"]:
                lines.append(f"    skipped {len(a['skipped'])}: " + "; ".join(a["skipped"][:3]) + (" ..." if len(a["skipped"]) > 3 else ""))
        if not self["adapters"]:
            lines.append("  no adapters")
        return "\n".join(lines)


class Adapters:
    """The handle returned by :func:`attach` (see the module docstring)."""

    def __init__(self, pipe, patched: dict[str, PatchedModel]):
        self._pipe = pipe
        self._patched = patched
        self._adapters: dict[str, _Adapter] = {}
        self._targets: dict[tuple, _Target] = {}
        self._originals: dict[tuple, torch.Tensor] = {}  # target key -> original values
        self._step: tuple[int, int] = (0, 1)
        self._detached = False
        self._step_hooks: list = []

    # ------------------------------------------------------------------ views
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._adapters)

    @property
    def weights(self) -> dict[str, WeightSpec]:
        return {n: a.weight for n, a in self._adapters.items()}

    @property
    def models(self) -> dict[str, nn.Module]:
        return {k: pm.model for k, pm in self._patched.items()}

    def __repr__(self) -> str:
        items = ", ".join(
            f"{a.name}={describe_weight(a.weight)}{'' if a.enabled else ' (disabled)'}" for a in self._adapters.values()
        )
        return f"Adapters([{items}] on {', '.join(self._patched)})"

    # ------------------------------------------------------------------ add
    def add(
        self,
        source,
        name: str | None = None,
        weight: WeightSpec = 1.0,
        blocks: Iterable[int] | None = None,
        expert: str | None = None,
        strict: bool = True,
    ) -> str:
        """Validate a LoRA against the model, then install it; returns its name."""
        self._check_alive()
        from vidlora.lora import read_lora

        lora = source if isinstance(source, LoRAFile) else read_lora(source)
        name = name if name is not None else lora.name
        if not isinstance(name, str) or not name:
            raise VidloraError(f"adapter name must be a non-empty string; got {name!r}")
        if name in self._adapters:
            raise VidloraError(f"an adapter named {name!r} is already added; pass name= to add this one under another name")
        weight = check_weight(weight, f"weight of {name!r}")
        adapter = _Adapter(name=name, source=str(getattr(source, "path", source)), lora=lora, weight=weight)
        adapter.blocks = self._check_blocks(blocks)
        placements = self._placements(lora, expert, adapter)
        plan = self._plan(adapter, placements, strict)
        self._install(adapter, plan)
        self._sync_step_hooks()
        return name

    def _check_blocks(self, blocks) -> tuple[int, ...] | None:
        if blocks is None:
            return None
        if isinstance(blocks, int):
            blocks = [blocks]
        try:
            out = tuple(sorted({int(b) for b in blocks}))
        except (TypeError, ValueError):
            raise VidloraError(f"blocks= must be a range or a list of block indices; got {blocks!r}") from None
        n = min(pm.inv.n_blocks for pm in self._patched.values())
        bad = [b for b in out if b < 0 or b >= n]
        if bad:
            raise VidloraError(f"blocks= {bad} out of range: the model has blocks 0-{n - 1}")
        if not out:
            raise VidloraError("blocks= is empty: the adapter would change nothing")
        return out

    def _placements(self, lora: LoRAFile, expert: str | None, adapter: _Adapter) -> list[tuple[str, LoRAFile]]:
        """[(model key, LoRA part)] the adapter goes to."""
        keys = tuple(self._patched)
        if expert is not None and expert not in _EXPERT_KEYS:
            raise VidloraError(f"expert= must be 'high', 'low' or 'both'; got {expert!r}")
        two = "transformer_2" in self._patched
        if lora.experts:  # one file carrying both Wan 2.2 experts
            if not two:
                raise LoRAMismatchError(
                    f"{lora.path} holds LoRAs for both Wan 2.2 A14B experts (high and low noise); this model "
                    "has a single transformer. Load it into a Wan 2.2 A14B pipeline, or split the file"
                )
            wanted = ("high", "low") if expert in (None, "both") else (expert,)
            adapter.expert_reason = f"file carries both experts; using {'+'.join(wanted)}"
            return [(_EXPERT_KEYS[e][0], lora.experts[e]) for e in wanted]
        if not two:
            if expert in ("high", "low"):
                raise VidloraError(
                    f"expert={expert!r} applies to Wan 2.2 A14B pipelines (transformer + transformer_2); "
                    f"this model has one transformer"
                )
            return [(k, lora) for k in keys]
        if expert is None:
            expert = lora.variant.expert or "both"
            why = f"from the file ({'; '.join(lora.variant.evidence)})" if lora.variant.expert else "no expert signal in the file"
            adapter.expert_reason = f"expert={expert}: {why}"
        else:
            adapter.expert_reason = f"expert={expert}: as asked"
        log.info("vidlora: %s -> %s", adapter.name, adapter.expert_reason)
        return [(k, lora) for k in _EXPERT_KEYS[expert]]

    def _plan(self, adapter: _Adapter, placements, strict: bool):
        """Validate everything and resolve every target before touching the model."""
        from vidlora.lora import match_lora

        plan = []
        for key, part in placements:
            pm = self._patched[key]
            report = match_lora(part, pm.inv, strict=strict)
            adapter.skipped += [(f"{key}: {n}" if len(placements) > 1 else n, why) for n, why in report.skipped]
            adapter.warnings += list(report.warnings)
            linears = dict(report.linears)
            deltas = dict(report.deltas)
            if adapter.blocks is not None:
                keep = set(adapter.blocks)

                def inside(path: str) -> bool:
                    idx = block_index(pm.inv, path)
                    return idx is None or idx in keep

                linears = {p: lr for p, lr in linears.items() if inside(p)}
                deltas = {p: d for p, d in deltas.items() if inside(p)}
            units_new = [p for p in linears if pm.unit_of(p) is None]
            for p in units_new:
                if p not in pm.inv.linears:
                    raise LoRAMismatchError(f"{adapter.lora.path}: {p} is not a Linear of {describe(pm.inv)}")
            targets = []
            for ppath, delta in deltas.items():
                targets.append((self._resolve_target(pm, ppath), delta))
            plan.append((pm, linears, targets))
        if not any(linears or targets for _, linears, targets in plan):
            raise LoRAMismatchError(
                f"{adapter.lora.path}: nothing of this LoRA applies to the model"
                + (f" within blocks {list(adapter.blocks)}" if adapter.blocks else "")
            )
        return plan

    def _resolve_target(self, pm: PatchedModel, ppath: str) -> _Target:
        """Where a full-tensor delta lands. On a patched unit: its bias rows, or (for a
        weight) a dense side term, since a base weight is never modified. Elsewhere: the
        parameter itself (small: norms, modulation tables, embedders, head)."""
        mpath, _, pname = ppath.rpartition(".")
        unit = pm.unit_of(mpath)
        if unit is not None:
            part = unit.parts[unit.part_index(mpath)]
            rows = None if len(unit.parts) == 1 else (part.start, part.stop)
            if pname == "weight":
                if unit.fp8_mode is not None:
                    raise LoRAMismatchError(
                        f"a dense weight delta on {ppath} (a LoHa/LoKr product or a full 'diff') cannot be "
                        "applied to an FP8 base without merging into it, which would round it away; "
                        "attach without fp8 to use this LoRA"
                    )
                return _Target(pm.key, ppath, rows, dense_unit=unit)
            return _Target(pm.key, f"{unit.unit_name}.{pname}", rows)
        if ppath not in pm.inv.params:
            raise LoRAMismatchError(f"{ppath} is not a parameter of {describe(pm.inv)}")
        return _Target(pm.key, ppath, None)

    @torch.no_grad()
    def _install(self, adapter: _Adapter, plan) -> None:
        touched_units: list[LoRALinear] = []
        new_units: list[tuple[PatchedModel, str]] = []
        try:
            for pm, linears, targets in plan:
                by_unit: dict[int, tuple[LoRALinear, list]] = {}
                for path, lr in linears.items():
                    unit = pm.unit_of(path)
                    if unit is None:
                        unit = patch_linear(pm, path)
                        new_units.append((pm, path))
                    by_unit.setdefault(id(unit), (unit, []))[1].append((path, lr.down, lr.up, lr.scale))
                if pinned_copies(pm.model):
                    grow = [u.unit_name for u, pieces in by_unit.values() if u.needs_growth(sum(p[1].shape[0] for p in pieces))]
                    if grow:
                        raise VidloraError(
                            f"{adapter.name} needs larger rank stacks on {len(grow)} units (e.g. {grow[0]}), which "
                            "group offloading with use_stream=True would silently undo (it restores tensors from "
                            "copies made at setup); add adapters before enabling offloading"
                        )
                for unit, pieces in by_unit.values():
                    unit.add_slot(adapter.name, pieces)
                    touched_units.append(unit)
                    adapter.units.append((pm.key, unit))
                for target, delta in targets:
                    adapter.deltas[target.key] = (target, delta)
            adapter.experts = tuple(dict.fromkeys(pm.key for pm, _, _ in plan))
            self._adapters[adapter.name] = adapter
            self._apply(adapter)
        except BaseException:
            self._adapters.pop(adapter.name, None)
            for unit in touched_units:
                unit.remove_slot(adapter.name)
            adapter.units.clear()
            for key in list(adapter.deltas):
                adapter.deltas.pop(key)
                self._refresh_target(key)
            for pm, path in reversed(new_units):
                _unpatch_one(pm, path)
            raise

    # ------------------------------------------------------------------ weights
    def set_weight(self, name: str, weight: WeightSpec) -> None:
        """A float (any sign), a list spread over the steps, or a callable(step, n_steps)."""
        a = self._get(name)
        a.weight = check_weight(weight, f"weight of {name!r}")
        self._apply(a)
        self._sync_step_hooks()

    def enable(self, name: str) -> None:
        a = self._get(name)
        a.enabled = True
        self._apply(a)

    def disable(self, name: str) -> None:
        """Zero the adapter's scales: no shape change, its tensors stay for enable()."""
        a = self._get(name)
        a.enabled = False
        self._apply(a)

    def set_step(self, step: int, n_steps: int) -> None:
        """Evaluate schedules at ``step`` of ``n_steps`` (pipelines do this by themselves)."""
        self._check_alive()
        if n_steps < 1 or not 0 <= step < n_steps:
            raise VidloraError(f"set_step: need 0 <= step < n_steps; got step={step}, n_steps={n_steps}")
        self._step = (int(step), int(n_steps))
        for a in self._adapters.values():
            if is_schedule(a.weight):
                self._apply(a)

    def current_weight(self, name: str) -> float:
        """The strength in force now (0 when disabled)."""
        a = self._get(name)
        return weight_at(a.weight, *self._step) if a.enabled else 0.0

    def _apply(self, adapter: _Adapter) -> None:
        w = weight_at(adapter.weight, *self._step) if adapter.enabled else 0.0
        for _, unit in adapter.units:
            unit.set_slot_scale(adapter.name, w)
        for key in adapter.deltas:
            self._refresh_target(key)

    def _sync_step_hooks(self) -> None:
        """Hook the transformers only while some strength is a schedule: without one
        there is nothing for torch.compile to trace (or guard on) at the top level."""
        wanted = self._pipe is not None and any(is_schedule(a.weight) for a in self._adapters.values())
        if wanted and not self._step_hooks:
            for pm in self._patched.values():
                self._step_hooks.append(pm.model.register_forward_pre_hook(self._pre_forward, with_kwargs=True))
        elif not wanted and self._step_hooks:
            for hook in self._step_hooks:
                hook.remove()
            self._step_hooks.clear()

    def _pre_forward(self, module, args, kwargs):
        timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        where = current_step(getattr(self._pipe, "scheduler", None), timestep)
        if where is not None and where != self._step:
            self.set_step(*where)
        return None

    # ------------------------------------------------------------------ full-tensor deltas
    @torch.no_grad()
    def _refresh_target(self, key: tuple) -> None:
        """param = original + sum_i w_i * delta_i over the adapters touching it."""
        contributions = []
        target = None
        for a in self._adapters.values():
            entry = a.deltas.get(key)
            if entry is not None:
                target = entry[0]
                w = weight_at(a.weight, *self._step) if a.enabled else 0.0
                contributions.append((w, entry[1]))
        if target is None:  # nobody touches it any more: put the original back
            target = self._targets.pop(key, None)
            if target is None:
                return
            if target.dense_unit is not None:
                self._refresh_dense(target.dense_unit)
                return
            orig = self._originals.pop(key)
            live = self._live_tensor(target)
            live.copy_(orig.to(live.device))
            return
        self._targets[key] = target
        if target.dense_unit is not None:
            self._refresh_dense(target.dense_unit)
            return
        live = self._live_tensor(target)
        if key not in self._originals:
            self._originals[key] = live.detach().clone()
        total = self._originals[key].to(device=live.device, dtype=torch.float32)
        for w, d in contributions:
            if w != 0.0:
                total = total + w * d.to(device=live.device, dtype=torch.float32)
        live.copy_(total.to(live.dtype))

    @torch.no_grad()
    def _refresh_dense(self, unit: LoRALinear) -> None:
        """The unit's dense side term: sum of w_i * dW_i over every adapter and part."""
        total = None
        for a in self._adapters.values():
            w = weight_at(a.weight, *self._step) if a.enabled else 0.0
            for target, delta in a.deltas.values():
                if target.dense_unit is not unit:
                    continue
                if total is None:
                    total = torch.zeros(unit.out_features, unit.in_features, dtype=torch.float32, device=unit.lora_a.device)
                lo, hi = target.rows or (0, unit.out_features)
                if w != 0.0:
                    total[lo:hi] += w * delta.to(device=total.device, dtype=torch.float32)
        unit.set_dense_delta(total)

    def _live_tensor(self, target: _Target) -> torch.Tensor:
        model = self._patched[target.model_key].model
        mpath, _, pname = target.param_path.rpartition(".")
        t = storage_of(model.get_submodule(mpath) if mpath else model, pname)
        if target.rows is not None:
            t = t[target.rows[0] : target.rows[1]]
        return t

    # ------------------------------------------------------------------ remove / detach
    def remove(self, name: str) -> None:
        """Drop an adapter and free its memory; the model is as if it had never been added."""
        a = self._get(name)
        del self._adapters[name]
        # under stream group offloading a smaller stack would come back at its old size
        shrink = {key: not pinned_copies(pm.model) for key, pm in self._patched.items()}
        for key, unit in a.units:
            unit.remove_slot(name, shrink=shrink[key])
        for key in a.deltas:
            self._refresh_target(key)
        a.units.clear()
        a.deltas.clear()
        self._sync_step_hooks()

    def detach(self) -> None:
        """Remove every adapter and put the original modules back (bit for bit without
        FP8). A second call does nothing."""
        if self._detached:
            return
        for name in list(self._adapters):
            self.remove(name)
        for pm in self._patched.values():
            unpatch_model(pm)
        self._detached = True

    # ------------------------------------------------------------------ report
    def report(self) -> Report:
        """What is patched and loaded: base storage dtype and bytes, adapters, skips.
        A dict; ``print(h.report())`` shows it as text."""
        self._check_alive()
        models = {}
        for key, pm in self._patched.items():
            units = list(pm.units.values())
            dtypes = sorted({str(u.weight.dtype).replace("torch.", "") for u in units})
            models[key] = {
                "family": describe(pm.inv),
                "patched_units": len(units),
                "patched_linears": len(pm.part_unit),
                "fused_units": sum(1 for u in units if len(u.parts) > 1),
                "base_dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
                "base_bytes": sum(u.base_nbytes() for u in units),
                "fp8": sorted({u.fp8_mode for u in units if u.fp8_mode}) or None,
                "adapter_bytes": sum(
                    (u.lora_a.numel() + u.lora_b.numel()) * u.lora_a.element_size() + u.lora_scale.numel() * 4
                    for u in units
                ),
            }
        adapters = []
        for a in self._adapters.values():
            adapters.append(
                {
                    "name": a.name,
                    "source": a.source,
                    "family": a.lora.family,
                    "weight": describe_weight(a.weight),
                    "enabled": a.enabled,
                    "blocks": list(a.blocks) if a.blocks is not None else "all",
                    "models": list(a.experts),
                    "expert": a.expert_reason,
                    "linears": sum(len(u.slot(a.name).parts) for _, u in a.units if u.slot(a.name) is not None),
                    "deltas": len(a.deltas),
                    "bytes": a.nbytes(),
                    "skipped": [f"{n}: {why}" for n, why in a.skipped],
                    "warnings": list(dict.fromkeys(a.warnings)),
                    "sha256": a.lora.sha256,
                }
            )
        return Report(models=models, adapters=adapters)

    # ------------------------------------------------------------------ helpers
    def _check_alive(self) -> None:
        if self._detached:
            raise VidloraError("this Adapters handle was detached; call vidlora.attach() again")

    def _get(self, name: str) -> _Adapter:
        self._check_alive()
        a = self._adapters.get(name)
        if a is None:
            known = ", ".join(self._adapters) or "none"
            raise VidloraError(f"no adapter named {name!r} (loaded: {known})")
        return a


def _unpatch_one(pm: PatchedModel, path: str) -> None:
    """Undo an on-demand patch of a single Linear (rollback of a failed add)."""
    unit = pm.units.pop(path, None)
    if unit is None:
        return
    parent_path, _, attr = path.rpartition(".")
    parent = pm.model.get_submodule(parent_path) if parent_path else pm.model
    setattr(parent, attr, pm.originals.pop(path))
    pm.part_unit.pop(path, None)

