"""``vidlora.attach`` and the ``Adapters`` handle it returns.

    h = vidlora.attach(pipe)                      # patch in place
    h.add("motion.safetensors", weight=0.8)       # validate the whole file, then install
    h.add("style.safetensors", weight=[1.0, 0.5], blocks=range(0, 20), expert="low")
    h.set_weight("motion", 0.5); h.disable("style"); h.remove("style")
    h.detach()                                    # the original modules back

What each call costs (DESIGN.md):

* ``add`` reads the file, makes an install plan that validates it against every target
  model first (plan.py: family, shapes, unmatched keys, experts, ``blocks=``), then writes
  the adapter's ranks into each unit's rank stack: time and memory proportional to the
  adapter. Base weights are never copied or touched (their ``data_ptr`` stays the same).
  A failed ``add`` leaves the model exactly as it was.
* ``set_weight`` / ``enable`` / ``disable`` write the per-rank scale vectors in place: no
  allocation, no recompilation of compiled blocks.
* ``remove`` drops the adapter's ranks and frees its memory.
* Small full-tensor deltas (norms, modulation tables, biases, patch embedding, head) are
  applied as ``param = original + sum_i w_i * delta_i`` (deltas.py); the originals are
  put back bit for bit by ``remove``/``detach``.

``blocks=`` limits an adapter to some transformer blocks, numbered as the family's spec
counts them: Wan's (and SkyReels V2's, Wan Animate's) ``blocks``; Wan VACE's ``blocks``
first, then its ``vace_blocks`` (VACE 14B: 0-39 the blocks, 40-47 vace_blocks 0-7; 1.3B:
0-29, then 30-44); HunyuanVideo's (and FramePack's) double-stream blocks first, then the
single-stream ones (0-19 double, 20-59 single on the real model); HunyuanVideo 1.5's 54
double-stream blocks. Parts of a LoRA outside the blocks (embedders, head, patch
embedding, Wan Animate's face adapter) are kept.

Strength schedules (a list spread over the steps, or a callable(step, n_steps)) are
evaluated by a forward pre-hook on each transformer that reads the step from the
pipeline's scheduler; with a bare transformer, drive them with :meth:`Adapters.set_step`.
The hook sits on the top-level transformer, outside regionally compiled blocks; it writes
tensor values only, so schedules cause no recompilation. FramePack samples section by
section, each a full run of its scheduler: a schedule restarts in every section (step i of
the section's steps). SkyReels V2 Diffusion Forcing pipelines denoise frames at different
noise levels in one call: schedules are refused there by name (constant strengths work).

Not thread-safe: change adapters from one thread, between forwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from vidlora.errors import VidloraError
from vidlora.lora import LoRAFile, read_lora
from vidlora.lora.factored import FactoredDelta

from . import kernel_paths
from .deltas import DeltaTable
from .fp8 import normalize_fp8_mode
from .offload import group_offloaded, pinned_copies
from .patching import PatchedModel, find_transformers
from .plan import InstallPlan, check_blocks, make_plan
from .rank_stack import require_finite
from .report import Report, model_summary
from .schedules import WeightSpec, check_weight, current_step, describe_weight, is_schedule, weight_at
from .unit import LoRALinear

__all__ = ["attach", "Adapters"]


@dataclass
class _Adapter:
    name: str
    source: str
    lora: LoRAFile
    strength: WeightSpec
    enabled: bool = True
    blocks: tuple[int, ...] | None = None
    models: tuple[str, ...] = ()  # keys of the transformers it is installed on
    expert_reason: str = ""
    units: list[tuple[str, LoRALinear]] = field(default_factory=list)  # (model key, unit)
    delta_keys: list[tuple] = field(default_factory=list)  # DeltaTable keys it contributes to
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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
    fuse: fuse sibling projections (Wan q/k/v, k/v, image k/v) into one GEMM each.
    device: move the transformers there, quantizing each layer on the way (a bf16 model
        in CPU memory -> an FP8 model on the GPU).
    """
    mode = normalize_fp8_mode(fp8)
    device = _check_device(device)
    pipe, models = find_transformers(pipe_or_transformer)
    patched: dict[str, PatchedModel] = {}
    try:
        for key, model in models.items():
            patched[key] = PatchedModel.patch(pipe, key, model, fuse=fuse, fp8=mode, device=device,
                                              keep_original=keep_original)  # fmt: skip
    except BaseException:
        for pm in patched.values():
            pm.unpatch()
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


def _piece_rank(piece) -> int:
    src = piece[1]
    return src.lora_rank if isinstance(src, FactoredDelta) else int(src.shape[0])


def _expand(name: str, piece, dtype: torch.dtype):
    """A stack piece; a LoHa / LoKr's exact LoRA form is formed here, one unit at a time."""
    path, src, up, scale = piece
    if isinstance(src, FactoredDelta):
        down, up = src.low_rank(dtype=torch.float32)
        require_finite(name, [(path, down), (path, up)])
        return path, down.to(dtype), up.to(dtype), scale
    return piece


class Adapters:
    """The handle returned by :func:`attach` (see the module docstring)."""

    def __init__(self, pipe, patched: dict[str, PatchedModel]):
        self._pipe = pipe
        self._patched = patched
        self._adapters: dict[str, _Adapter] = {}
        self._deltas = DeltaTable(patched)
        self._step: tuple[int, int] = (0, 1)
        self._detached = False
        self._step_hooks: list = []

    # ------------------------------------------------------------------ views
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._adapters)

    @property
    def weights(self) -> dict[str, WeightSpec]:
        return {n: a.strength for n, a in self._adapters.items()}

    @property
    def models(self) -> dict[str, nn.Module]:
        return {k: pm.model for k, pm in self._patched.items()}

    def __repr__(self) -> str:
        items = ", ".join(
            f"{a.name}={describe_weight(a.strength)}{'' if a.enabled else ' (disabled)'}" for a in self._adapters.values()
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
        lora = source if isinstance(source, LoRAFile) else read_lora(source)
        name = name if name is not None else lora.name
        if not isinstance(name, str) or not name:
            raise VidloraError(f"adapter name must be a non-empty string; got {name!r}")
        if name in self._adapters:
            raise VidloraError(f"an adapter named {name!r} is already added; pass name= to add this one under another name")
        strength = self._check_schedule(check_weight(weight, f"weight of {name!r}"))
        adapter = _Adapter(name=name, source=str(getattr(source, "path", source)), lora=lora, strength=strength)
        adapter.blocks = check_blocks(blocks, self._patched)
        plan = make_plan(lora, name, self._patched, blocks=adapter.blocks, expert=expert, strict=strict)
        adapter.expert_reason, adapter.skipped, adapter.warnings = plan.expert_reason, plan.skipped, plan.warnings
        # read_lora checked a file's tensors just now; a LoRAFile from elsewhere is checked here
        self._install(adapter, plan, checked=not isinstance(source, LoRAFile))
        self._sync_step_hooks()
        return name

    @torch.no_grad()
    def _install(self, adapter: _Adapter, plan: InstallPlan, checked: bool = False) -> None:
        new_units: list[tuple[PatchedModel, str]] = []

        def unit_for(pm: PatchedModel, path: str) -> LoRALinear:
            unit = pm.unit_of(path)
            if unit is None:
                unit = pm.patch_linear(path)
                new_units.append((pm, path))
            return unit

        def touched(pm: PatchedModel, unit: LoRALinear) -> None:
            if not any(u is unit for _, u in adapter.units):
                adapter.units.append((pm.key, unit))

        rows_before: dict[int, tuple[LoRALinear, int, bool]] = {}  # id -> (unit, stored rows, pinned)

        # the stacks hold only finite values (rank_stack.py): checked before any write
        if not checked:
            require_finite(adapter.name, ((p, t) for mp in plan.models for p, lr in mp.linears.items()
                                          for t in (lr.down, lr.up)))  # fmt: skip
        try:
            for mp in plan.models:
                pm = mp.pm
                by_unit: dict[int, tuple[LoRALinear, list]] = {}
                for path, lr in mp.linears.items():
                    unit = unit_for(pm, path)
                    by_unit.setdefault(id(unit), (unit, []))[1].append((path, lr.down, lr.up, lr.scale))
                for path, delta in mp.factored_ranks.items():  # formed per unit below, not all at once
                    unit = unit_for(pm, path)
                    by_unit.setdefault(id(unit), (unit, []))[1].append((path, delta, None, delta.scale))
                pinned = pinned_copies(pm.model)
                if pinned:
                    grow = [u.unit_name for u, pieces in by_unit.values()
                            if u.stack.needs_growth(sum(_piece_rank(p) for p in pieces))]  # fmt: skip
                    if grow:
                        raise VidloraError(
                            f"{adapter.name} needs larger rank stacks on {len(grow)} units (e.g. {grow[0]}), which "
                            "group offloading with use_stream=True would silently undo (it restores tensors from "
                            "copies made at setup); add adapters before enabling offloading"
                        )
                if mp.kron and group_offloaded(pm.model):
                    raise VidloraError(
                        f"{adapter.name} holds full-rank LoKr modules (Kronecker side terms), whose small tensors "
                        "group offloading set up earlier would not move; add adapters before enabling offloading"
                    )
                for unit, pieces in by_unit.values():
                    rows_before.setdefault(id(unit), (unit, unit.stack.stored_rank, pinned))
                    unit.stack.add(adapter.name, [_expand(adapter.name, p, unit.compute_dtype) for p in pieces])
                    touched(pm, unit)
                for path, delta in mp.kron.items():
                    unit = unit_for(pm, path)
                    touched(pm, unit)
                    unit.add_kron(adapter.name, path, delta)
                for target, delta in mp.deltas:
                    self._deltas.add(adapter.name, target, delta)
                    adapter.delta_keys.append(target.key)
            adapter.models = tuple(dict.fromkeys(mp.pm.key for mp in plan.models))
            self._adapters[adapter.name] = adapter
            self._apply(adapter)
        except BaseException:
            self._adapters.pop(adapter.name, None)
            for _, unit in adapter.units:
                unit.stack.remove(adapter.name, shrink=False, scrub=True)
                unit.remove_kron(adapter.name)
            for unit, rows, pinned in rows_before.values():
                if not pinned:  # under stream group offloading a stack keeps its shape
                    unit.stack.restore_rows(rows)  # undo the growth: the same shapes as before
            adapter.units.clear()
            for key in adapter.delta_keys:
                self._deltas.discard(adapter.name, key)
                self._deltas.refresh(key, self._strength_now)
            adapter.delta_keys.clear()
            for pm, path in reversed(new_units):
                pm.unpatch_linear(path)
            raise

    # ------------------------------------------------------------------ weights
    def set_weight(self, name: str, weight: WeightSpec) -> None:
        """A float (any sign), a list spread over the steps, or a callable(step, n_steps)."""
        a = self._get(name)
        a.strength = self._check_schedule(check_weight(weight, f"weight of {name!r}"))
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
            if is_schedule(a.strength):
                self._apply(a)

    def _check_schedule(self, strength: WeightSpec) -> WeightSpec:
        """Refuse a schedule on pipelines whose family says a step means nothing there
        (SkyReels V2 Diffusion Forcing: per-frame timesteps)."""
        if is_schedule(strength) and self._pipe is not None:
            for pm in self._patched.values():
                reason = pm.inv.spec.schedule_refused.get(type(self._pipe).__name__)
                if reason is not None:
                    raise VidloraError(f"strength schedules are not supported on {reason}")
        return strength

    def current_weight(self, name: str) -> float:
        """The strength in force now (0 when disabled)."""
        return self._strength_now(self._get(name).name)

    def _strength_now(self, name: str) -> float:
        a = self._adapters.get(name)
        return weight_at(a.strength, *self._step) if a is not None and a.enabled else 0.0

    def _apply(self, adapter: _Adapter) -> None:
        w = self._strength_now(adapter.name)
        for _, unit in adapter.units:
            unit.stack.set_scale(adapter.name, w)
            unit.set_kron_weight(adapter.name, w)
        for key in adapter.delta_keys:
            self._deltas.refresh(key, self._strength_now)

    def _sync_step_hooks(self) -> None:
        """Hook the transformers only while some strength is a schedule: without one
        there is nothing for torch.compile to trace (or guard on) at the top level."""
        wanted = self._pipe is not None and any(is_schedule(a.strength) for a in self._adapters.values())
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

    # ------------------------------------------------------------------ remove / detach
    def remove(self, name: str) -> None:
        """Drop an adapter and free its memory; the model is as if it had never been added."""
        a = self._get(name)
        del self._adapters[name]
        # under stream group offloading a smaller stack would come back at its old size
        shrink = {key: not pinned_copies(pm.model) for key, pm in self._patched.items()}
        for key, unit in a.units:
            unit.stack.remove(name, shrink=shrink[key])
            unit.remove_kron(name)
        for key in a.delta_keys:
            self._deltas.discard(name, key)
            self._deltas.refresh(key, self._strength_now)
        a.units.clear()
        a.delta_keys.clear()
        self._sync_step_hooks()

    def detach(self) -> None:
        """Remove every adapter and put the original modules back (bit for bit without
        FP8). A second call does nothing."""
        if self._detached:
            return
        for name in list(self._adapters):
            self.remove(name)
        for pm in self._patched.values():
            pm.unpatch()
        self._detached = True

    # ------------------------------------------------------------------ kernel paths
    def kernel_shapes(self, tokens: int, context_tokens: int | None = None, ranks=None) -> list:
        """The distinct Linear calls one forward makes with ``tokens`` video tokens and
        ``context_tokens`` text-side ones (kernel_paths.py); ``ranks``: as if adapters of
        these ranks were on every Linear (0: none) instead of the stacks held now."""
        return kernel_paths.kernel_shapes(self._patched, tokens, context_tokens, None if ranks is None else tuple(ranks))

    def warm_up(self, tokens: int, device=None, context_tokens: int | None = None) -> list[dict]:
        """Measure the kernel path of every shape class the model uses at ``tokens`` video
        tokens (and ``context_tokens`` text-side ones) now (CUDA only), so the first
        denoising step does not pay for the first-use choice."""
        self._check_alive()
        return kernel_paths.warm_up(self._patched, tokens, device, context_tokens)

    # ------------------------------------------------------------------ report
    def report(self) -> Report:
        """What is patched and loaded: base storage dtype and bytes, adapters, skips.
        A dict; ``print(h.report())`` shows it as text."""
        self._check_alive()
        adapters = []
        for a in self._adapters.values():
            slots = [u.stack.slot(a.name) for _, u in a.units]
            adapters.append(
                {
                    "name": a.name,
                    "source": a.source,
                    "family": a.lora.family,
                    "weight": describe_weight(a.strength),
                    "enabled": a.enabled,
                    "blocks": list(a.blocks) if a.blocks is not None else "all",
                    "models": list(a.models),
                    "expert": a.expert_reason,
                    "linears": sum(len(set(s.parts)) for s in slots if s is not None)
                    + sum(t.adapter == a.name for _, u in a.units for t in u.kron_terms),
                    "deltas": len(a.delta_keys),
                    "bytes": sum(u.stack.nbytes_of(a.name) + u.kron_nbytes(a.name) for _, u in a.units)
                    + self._deltas.nbytes(a.name),
                    "skipped": [f"{n}: {why}" for n, why in a.skipped],
                    "warnings": list(dict.fromkeys(a.warnings)),
                    "sha256": a.lora.sha256,
                }
            )
        return Report(
            models={k: model_summary(pm) for k, pm in self._patched.items()},
            adapters=adapters,
            kernel_paths=kernel_paths.model_choices(self._patched),
        )

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
