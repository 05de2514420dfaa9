"""The install plan: a ``LoRAFile`` + the patched models -> what goes where, before any change.

Everything that can fail is decided here, with nothing touched yet: which transformers
get the adapter (Wan 2.2 A14B experts), ``blocks=``, validation of every entry against
each model (family, shapes, unmatched keys), and where each full-tensor delta lands. The
``Adapters`` handle then applies the plan; a plan that cannot be made leaves the model
exactly as it was.

Expert routing. Wan 2.2 A14B pipelines carry ``transformer`` (high noise) and
``transformer_2`` (low noise). ``expert="high" | "low" | "both"`` picks where an adapter
goes; by default it follows the file's own signals (ai-toolkit ``transformer_1/2``,
``modelspec.timestep_range``, file names), else both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

import torch

from vidlora.errors import LoRAMismatchError, VidloraError
from vidlora.lora import LoRAFile, LowRank, match_lora
from vidlora.lora.factored import FactoredDelta, KronDelta
from vidlora.model import block_index, describe

from .patching import PatchedModel
from .unit import LoRALinear

__all__ = ["DeltaTarget", "ModelPlan", "InstallPlan", "make_plan", "check_blocks", "EXPERT_KEYS"]

log = logging.getLogger("vidlora")

EXPERT_KEYS = {"high": ("transformer",), "low": ("transformer_2",), "both": ("transformer", "transformer_2")}


@dataclass
class DeltaTarget:
    """A tensor a full-tensor delta lands in: a whole parameter, or rows of a fused one."""

    model_key: str
    param_path: str  # the parameter as the model names it now (fused name for fused rows)
    rows: tuple[int, int] | None  # row range inside that parameter, for fused units
    dense_unit: LoRALinear | None = None  # set when the delta is a dense weight side term

    @property
    def key(self) -> tuple:
        return (self.model_key, self.param_path, self.rows)


@dataclass
class ModelPlan:
    """The part of a plan for one transformer."""

    pm: PatchedModel
    linears: dict[str, LowRank]  # Linear path -> validated low-rank delta
    deltas: list[tuple[DeltaTarget, torch.Tensor]]
    # LyCORIS deltas on Linear weights (plan_factored): as ranks of the stack (their exact
    # LoRA form, formed per unit at install), or as Kronecker side terms
    factored_ranks: dict[str, FactoredDelta] = field(default_factory=dict)
    kron: dict[str, KronDelta] = field(default_factory=dict)


@dataclass
class InstallPlan:
    models: list[ModelPlan]
    expert_reason: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_blocks(blocks, patched: dict[str, PatchedModel]) -> tuple[int, ...] | None:
    """``blocks=`` as sorted unique indices, checked against every model's block count."""
    if blocks is None:
        return None
    if isinstance(blocks, int):
        blocks = [blocks]
    try:
        out = tuple(sorted({int(b) for b in blocks}))
    except (TypeError, ValueError):
        raise VidloraError(f"blocks= must be a range or a list of block indices; got {blocks!r}") from None
    n = min(pm.inv.n_blocks for pm in patched.values())
    bad = [b for b in out if b < 0 or b >= n]
    if bad:
        raise VidloraError(f"blocks= {bad} out of range: the model has blocks 0-{n - 1}")
    if not out:
        raise VidloraError("blocks= is empty: the adapter would change nothing")
    return out


def _placements(lora: LoRAFile, expert: str | None, patched: dict[str, PatchedModel], name: str):
    """([(model key, LoRA part)], why) the adapter goes to."""
    if expert is not None and expert not in EXPERT_KEYS:
        raise VidloraError(f"expert= must be 'high', 'low' or 'both'; got {expert!r}")
    two = "transformer_2" in patched
    if lora.experts:  # one file carrying both Wan 2.2 experts
        if not two:
            raise LoRAMismatchError(
                f"{lora.path} holds LoRAs for both Wan 2.2 A14B experts (high and low noise); this model "
                "has a single transformer. Load it into a Wan 2.2 A14B pipeline, or split the file"
            )
        wanted = ("high", "low") if expert in (None, "both") else (expert,)
        return [(EXPERT_KEYS[e][0], lora.experts[e]) for e in wanted], f"file carries both experts; using {'+'.join(wanted)}"
    if not two:
        if expert in ("high", "low"):
            raise VidloraError(
                f"expert={expert!r} applies to Wan 2.2 A14B pipelines (transformer + transformer_2); "
                f"this model has one transformer"
            )
        return [(k, lora) for k in patched], ""
    if expert is None:
        expert = lora.variant.expert or "both"
        why = f"from the file ({'; '.join(lora.variant.evidence)})" if lora.variant.expert else "no expert signal in the file"
        reason = f"expert={expert}: {why}"
    else:
        reason = f"expert={expert}: as asked"
    log.info("vidlora: %s -> %s", name, reason)
    return [(k, lora) for k in EXPERT_KEYS[expert]], reason


def resolve_target(pm: PatchedModel, ppath: str) -> DeltaTarget:
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
                    f"a dense weight delta on {ppath} (a full 'diff') cannot be "
                    "applied to an FP8 base without merging into it, which would round it away; "
                    "attach without fp8 to use this LoRA"
                )
            return DeltaTarget(pm.key, ppath, rows, dense_unit=unit)
        return DeltaTarget(pm.key, f"{unit.unit_name}.{pname}", rows)
    if ppath not in pm.inv.params:
        raise LoRAMismatchError(f"{ppath} is not a parameter of {describe(pm.inv)}")
    return DeltaTarget(pm.key, ppath, None)


def _route_factored(pm: PatchedModel, ppath: str, delta: FactoredDelta) -> str:
    """How a LoHa / LoKr delta on a Linear weight is applied, exactly and never merged:

    * "ranks": its exact LoRA form (rank r1*r2 for LoHa, rank(W1)*rank(W2) for LoKr) in the
      unit's rank stack, whenever that holds fewer numbers than the weight: R (N + K) < N K;
    * "kron": otherwise for a LoKr (two full factors): the Kronecker side term;
    * "dense": otherwise for a LoHa: the product formed once per layer on the device as a
      dense side term, as cheap as the weight itself; on an FP8 base, whose weight is a
      quarter of that, still its LoRA form ("ranks").
    """
    mpath = ppath[: -len(".weight")]
    if not ppath.endswith(".weight") or (pm.unit_of(mpath) is None and mpath not in pm.inv.linears):
        return "dense"  # not a Linear (an embedding table): written into the parameter, small
    n, k = delta.shape
    if delta.lora_rank * (n + k) < n * k:
        return "ranks"
    if isinstance(delta, KronDelta):
        return "kron"
    unit = pm.unit_of(mpath)
    return "ranks" if unit is not None and unit.fp8_mode is not None else "dense"


def make_plan(
    lora: LoRAFile,
    name: str,
    patched: dict[str, PatchedModel],
    *,
    blocks: Iterable[int] | None,
    expert: str | None,
    strict: bool,
) -> InstallPlan:
    """Validate everything and resolve every target; nothing is changed."""
    placements, reason = _placements(lora, expert, patched, name)
    plan = InstallPlan(models=[], expert_reason=reason)
    keep = set(blocks) if blocks is not None else None
    for key, part in placements:
        pm = patched[key]
        report = match_lora(part, pm.inv, strict=strict)
        plan.skipped += [(f"{key}: {n}" if len(placements) > 1 else n, why) for n, why in report.skipped]
        plan.warnings += list(report.warnings)
        linears, deltas = dict(report.linears), dict(report.deltas)
        if keep is not None:

            def inside(path: str) -> bool:
                idx = block_index(pm.inv, path)
                return idx is None or idx in keep

            linears = {p: lr for p, lr in linears.items() if inside(p)}
            deltas = {p: d for p, d in deltas.items() if inside(p)}
        for p in linears:
            if pm.unit_of(p) is None and p not in pm.inv.linears:
                raise LoRAMismatchError(f"{lora.path}: {p} is not a Linear of {describe(pm.inv)}")
        mp = ModelPlan(pm, linears, [])
        for pp, d in deltas.items():
            route = _route_factored(pm, pp, d) if isinstance(d, FactoredDelta) else "dense"
            if route == "ranks":
                mp.factored_ranks[pp[: -len(".weight")]] = d
            elif route == "kron":
                mp.kron[pp[: -len(".weight")]] = d
            else:
                mp.deltas.append((resolve_target(pm, pp), d))
        plan.models.append(mp)
    if not any(mp.linears or mp.deltas or mp.factored_ranks or mp.kron for mp in plan.models):
        raise LoRAMismatchError(
            f"{lora.path}: nothing of this LoRA applies to the model"
            + (f" within blocks {sorted(keep)}" if keep else "")
        )
    return plan
