"""``merge_loras``: a stack of LoRAs with strengths -> one file.

Exact mode (``rank=None``): per module, A = [A_1; ...; A_n] and B = [w_1 s_1 B_1 | ... |
w_n s_n B_n] (s_i = alpha_i / r_i, w_i the strength), alpha = the total rank (scale 1):
the file applied at strength 1 is the stack, to rounding. Ranks, alphas and schemes mix
freely; full-tensor deltas sum (w_1 d_1 + ... + w_n d_n). A LyCORIS LoHa / LoKr joins
the stack as its exact LoRA form (rank r1 x r2 / rank(P) x rank(U), factored.py) where that
is smaller than the dense delta, else it sums as a dense delta.

Re-ranked mode (``rank=R``): each module's stacked factors are brought to rank R without
the dense N x K delta (283 MB in fp32 for one Wan 14B FFN Linear): QR of A^T and of B
(A^T = Q_a R_a, B = Q_b R_b), an SVD of the small core R_b R_a^T = P S V^T, then
B' = Q_b P_R S_R^1/2 and A' = S_R^1/2 V_R^T Q_a^T. The loss is measured exactly in the
same small basis, ||B R_a^T - B' S^1/2 V^T|| / ||B R_a^T|| (Q_a has orthonormal columns),
for every module: the report gives the worst ten and the mean. Where the target naming
fuses diffusers pieces (Hunyuan qkv / linear1 for comfyui, musubi, original), the pieces
are re-ranked together as the one fused Linear they are there, so the file keeps rank R
instead of growing to a block-diagonal 3-4 R.

Wan 2.2 experts: a two-expert input adds each part to its expert, a single-expert input
(file name, metadata) to its own, any other input to both; with expert-specific inputs
the result is a two-expert file or one file per expert.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass, field
from numbers import Real

import torch

from vidlora.errors import VidloraError
from vidlora.model import spec_for_arch

from ..factored import FactoredDelta
from ..lora_file import LoRAFile, LowRank
from .convert import load_lora, model_inventory, write_parts
from .naming import module_place
from .output import carried_metadata
from .targets import naming_for, target_of_scheme

__all__ = ["merge_loras", "MergeReport", "rerank"]

_FAMILY_KEYS = ("modelspec.sai_model_spec", "modelspec.architecture", "modelspec.implementation",
                "ss_base_model_version", "modelspec.resolution")  # fmt: skip


@dataclass
class MergeReport:
    """What a merge wrote and, per module, the relative error re-ranking cost
    (``||dW - dW_R||_F / ||dW||_F``; 0 everywhere in exact mode)."""

    outputs: list[str]
    rank: int | None
    errors: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def worst(self, n: int = 10) -> list[tuple[str, float]]:
        return sorted(self.errors.items(), key=lambda kv: -kv[1])[:n]

    @property
    def mean_error(self) -> float:
        return statistics.fmean(self.errors.values()) if self.errors else 0.0

    def __str__(self) -> str:
        mode = "exact (ranks concatenated)" if self.rank is None else f"re-ranked to {self.rank}"
        lines = [f"wrote {', '.join(self.outputs)}: {len(self.errors)} modules, {mode}"]
        if self.rank is not None and self.errors:
            lines.append(f"  relative error per module: mean {self.mean_error:.3%}; worst:")
            lines += [f"    {name}: {err:.3%}" for name, err in self.worst(10)]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  dropped {name}: {why}" for name, why in self.dropped]
        return "\n".join(lines)


def _stack(entries: list[tuple[LowRank, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [R, K], B [N, R]) in fp32 with each entry's strength * scale folded into B."""
    downs = [low.down.float() for low, _ in entries]
    ups = [(w * low.scale) * low.up.float() for low, w in entries]
    return torch.cat(downs), torch.cat(ups, dim=1)


def rerank(down: torch.Tensor, ups: list[torch.Tensor], rank: int) -> tuple[torch.Tensor, list[torch.Tensor], list[float]]:
    """Re-rank ``B_i @ A`` (pieces B_i sharing one A [R, K]) to one A' [rank, K] with
    pieces B'_i, never forming the dense delta. Returns (A', [B'_i], per-piece relative
    errors). fp64 inside: the factors are thin, the core is R x R."""
    a = down.double()
    qa, ra = torch.linalg.qr(a.T)  # A^T = Q_a R_a: Q_a [K, m] orthonormal columns
    b = torch.cat(ups).double()
    qb, rb = torch.linalg.qr(b)
    p, s, vt = torch.linalg.svd(rb @ ra.T, full_matrices=False)
    keep = min(rank, int(s.numel()))
    root = s[:keep].sqrt()
    new_up = qb @ (p[:, :keep] * root)  # [N, keep]
    core_down = root[:, None] * vt[:keep]  # [keep, m]: A' = core_down @ Q_a^T
    new_down = core_down @ qa.T
    errors, row = [], 0
    for piece in ups:
        n = piece.shape[0]
        true = b[row : row + n] @ ra.T  # the piece's delta in the Q_a basis
        diff = true - new_up[row : row + n] @ core_down
        norm = float(torch.linalg.norm(true))
        errors.append(float(torch.linalg.norm(diff)) / norm if norm > 0 else 0.0)
        row += n
    pieces = list(torch.split(new_up, [u.shape[0] for u in ups]))
    return new_down.float(), [x.float() for x in pieces], errors


def _groups(paths: list[str], arch: str, fused_target: bool) -> list[list[str]]:
    """Modules re-ranked together: the diffusers pieces of one fused original when the
    target naming fuses them, every other module alone."""
    if not fused_target:
        return [[p] for p in paths]
    spec = spec_for_arch(arch)
    by_fused: dict[str, list[str]] = {}
    out: list[list[str]] = []
    for p in paths:
        place = module_place(spec, p)
        if place is None or place.index is None:
            out.append([p])
        else:
            by_fused.setdefault(place.name, []).append(p)
    for name, members in by_fused.items():
        order = module_place(spec, members[0]).siblings
        out.append(sorted(members, key=order.index))
    return out


def _merge_part(stack: list[tuple[LoRAFile, float]], rank: int | None, fused_target: bool, errors: dict, tag: str):
    first = stack[0][0]
    per_module: dict[str, list[tuple[LowRank, float]]] = {}
    deltas: dict[str, torch.Tensor] = {}
    for lora, w in stack:
        for path, low in lora.modules.items():
            per_module.setdefault(path, []).append((low, w))
        for path, d in lora.deltas.items():
            if isinstance(d, FactoredDelta) and path.endswith(".weight") and _as_ranks(d):
                # a LoHa / LoKr is exactly a LoRA of rank lora_rank: it joins the stack
                down, up = d.low_rank()
                per_module.setdefault(path[: -len(".weight")], []).append(
                    (LowRank(down=down, up=up, alpha=None, scale=d.scale), w))
                continue
            term = w * (d.to_dense() if isinstance(d, FactoredDelta) else d.float())
            if path in deltas and deltas[path].shape != term.shape:
                raise VidloraError(f"{lora.path}: delta {path} has shape {tuple(d.shape)}, another input "
                                   f"{tuple(deltas[path].shape)}")  # fmt: skip
            deltas[path] = deltas[path] + term if path in deltas else term
    modules: dict[str, LowRank] = {}
    for group in _groups(list(per_module), first.arch, fused_target):
        stacked = {p: _stack(per_module[p]) for p in group}
        total = sum(stacked[p][0].shape[0] for p in group)
        if rank is None or all(stacked[p][0].shape[0] <= rank for p in group) and len(group) == 1:
            for p in group:
                down, up = stacked[p]
                modules[p] = LowRank(down=down, up=up, alpha=float(down.shape[0]), scale=1.0)
                errors[tag + p] = 0.0
            continue
        if len(group) == 1:
            down, ups = stacked[group[0]][0], [stacked[group[0]][1]]
        else:
            # the fused Linear: B block-diagonal over the pieces' own A's, A stacked
            down = torch.cat([stacked[p][0] for p in group])
            ups, col = [], 0
            for p in group:
                d, u = stacked[p]
                full = u.new_zeros(u.shape[0], total)
                full[:, col : col + d.shape[0]] = u
                ups.append(full)
                col += d.shape[0]
        new_down, new_ups, errs = rerank(down, ups, rank)
        for p, up, err in zip(group, new_ups, errs):
            modules[p] = LowRank(down=new_down, up=up, alpha=float(new_down.shape[0]), scale=1.0)
            errors[tag + p] = err
    return LoRAFile(path=first.path, scheme=first.scheme, arch=first.arch, family=first.family, width=first.width,
                    modules=modules, deltas=deltas, dtype=first.dtype)  # fmt: skip


def _as_ranks(d: FactoredDelta) -> bool:
    """Whether a LyCORIS delta is smaller as LoRA ranks than dense (LoHa r1 x r2, a factored
    LoKr: yes; two full LoKr factors are nearly full rank: no)."""
    n, k = d.shape
    return d.lora_rank * (n + k) < n * k


def _expert_parts(lora: LoRAFile) -> dict[str | None, LoRAFile]:
    if lora.experts:
        return dict(lora.experts)
    return {lora.variant.expert: lora}


def merge_loras(
    inputs,
    dst: str | os.PathLike,
    rank: int | None = None,
    *,
    to: str | None = None,
    experts: str | None = None,
    drop_unsupported: bool = False,
    overwrite: bool = False,
    dtype: torch.dtype | None = None,
    model=None,
) -> MergeReport:
    """Merge ``inputs`` [(source, strength), ...] into one file at ``dst``.

    rank: None for the exact merge (ranks concatenated), else re-rank each module to
        ``rank`` (a single input with a rank is a resize).
    to: the target naming (default: the first input's). experts: as in convert_lora
        (None, "split", "join"). dtype: of the written tensors (default: the first
        input's). Schedules are refused: a file holds one strength.
    """
    dst = os.fspath(dst)
    if not inputs:
        raise VidloraError("merge needs at least one (LoRA, strength) pair")
    if rank is not None and (not isinstance(rank, int) or rank <= 0):
        raise VidloraError(f"rank must be a positive integer; got {rank!r}")
    stack: list[tuple[LoRAFile, float]] = []
    for item in inputs:
        src, weight = item if isinstance(item, tuple) else (item, 1.0)
        if not isinstance(weight, Real) or isinstance(weight, bool) or not math.isfinite(weight):
            raise VidloraError(f"strength of {src!r} must be one number; got {weight!r} (a merged file holds one strength "
                               "per LoRA, so schedules cannot be merged)")  # fmt: skip
        stack.append((load_lora(src), float(weight)))
    first = stack[0][0]
    for lora, _ in stack[1:]:
        if (lora.arch, lora.width) != (first.arch, first.width):
            raise VidloraError(f"cannot merge {lora.path} ({lora.family}) with {first.path} ({first.family}): "
                               "different model families")  # fmt: skip
    to = to or target_of_scheme(first.scheme)
    fused_target = naming_for(to, first.arch).names != "diffusers"
    tags = sorted({e for lora, _ in stack for e in _expert_parts(lora) if e is not None})
    outputs: dict[str | None, list[tuple[LoRAFile, float]]] = {e: [] for e in (tags or [None])}
    for lora, w in stack:
        for expert, part in _expert_parts(lora).items():
            for target in ([expert] if expert is not None else list(outputs)):
                outputs[target].append((part, w))
    errors: dict[str, float] = {}
    parts = {}
    for expert, part_stack in outputs.items():
        tag = f"{expert}: " if len(outputs) > 1 else ""
        parts[expert] = _merge_part(part_stack, rank, fused_target, errors, tag)
    meta = {k: v for k, v in carried_metadata(first, "merge").items() if k in _FAMILY_KEYS or k == "vidlora.tool"}
    words = list(dict.fromkeys(w for lora, _ in stack for w in lora.trigger_words))
    if words:
        meta["modelspec.trigger_phrase"] = ", ".join(words)
    meta["vidlora.merged_from"] = json.dumps(
        [{"name": os.path.basename(lora.path), "sha256": lora.sha256, "strength": w, "scheme": lora.scheme}
         for lora, w in stack])  # fmt: skip
    if rank is not None:
        meta["vidlora.rank"] = str(rank)
    written, renders, _ = write_parts(
        parts, dst, to, meta, split=None if experts is None else experts == "split",
        drop_unsupported=drop_unsupported, overwrite=overwrite, dtype=dtype or first.dtype,
        inv=model_inventory(model), sources=[lora.path for lora, _ in stack],
    )  # fmt: skip
    return MergeReport(outputs=written, rank=rank, errors=errors, notes=[n for r in renders for n in r.notes],
                       dropped=[d for r in renders for d in r.dropped])  # fmt: skip
