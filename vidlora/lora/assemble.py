"""From grouped file tensors to canonical LowRank modules and full-tensor deltas.

Every reader ends here: it has split each key into (module name, role) and knows how to
translate a module name to diffusers (a :class:`Target`). This module checks shapes,
derives scales, keeps LoHa / LoKr factored (factored.py: ``deltas[param]`` is then a
tensor-like FactoredDelta, never the dense matrix), materializes a convolution LoRA (small)
as its exact dense delta, refuses what cannot be applied exactly (DoRA, GLoRA, OFT, Tucker cores, set_weight) by
name, and splits fused originals into diffusers pieces:

* LoRA on a fused module: A (down) is copied to every piece, B (up) is cut by rows; the
  pieces keep the fused alpha and rank, so each piece's delta is exactly its rows of
  the fused delta (scale * B[rows] @ A).
* full-tensor deltas (diff, diff_b, a LoRA's lora_B.bias) are cut by the same rows.
* ``swap``: the two row halves of B (and of any diff) trade places; A stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from vidlora.errors import LoRAFormatError
from vidlora.model import FamilySpec, Target

from .alpha_rules import PeftConfig, scale_for
from .factored import FactoredDelta
from .lora_file import LowRank
from .lycoris import LOHA_ROLES, LOKR_ROLES, loha_delta, lokr_delta
from .safetensors_file import RawFile
from .tensor_checks import alpha_value, check_dense

__all__ = ["Assembled", "group_keys", "refuse_unsupported", "assemble"]


@dataclass
class Assembled:
    modules: dict[str, LowRank] = field(default_factory=dict)
    deltas: dict[str, torch.Tensor] = field(default_factory=dict)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    width: int = 0
    width_evidence: str = ""


_GLORA = "GLoRA is not supported (its delta depends on the base weight: W A1 A2 + B1 B2)"
_OFT = "OFT/BOFT (orthogonal fine-tuning) is not supported: it rotates the base weight instead of adding to it"
_TUCKER = "LoHa with Tucker cores (hada_t1/hada_t2, convolutions) is not supported"
_REFUSALS = {
    "dora": "DoRA (weight-decomposed LoRA) is not supported: DoRA rescales every output channel of "
    "W + dW by a learned magnitude, so applying only its low-rank part would be wrong; the file is "
    "refused rather than half-applied",
    "mid": "LoCon with a Tucker core (lora_mid) is not supported",
    "glora_a1": _GLORA, "glora_a2": _GLORA, "glora_b1": _GLORA, "glora_b2": _GLORA,
    "oft_blocks": _OFT, "oft_diag": _OFT, "oft_rescale": _OFT,
    "set_weight": "set_weight (replace a weight outright) is not supported: it is not an additive delta",
    "reshape_weight": "reshape_weight (zero-pad the base weight) is not supported",
    "hada_t1": _TUCKER,
    "hada_t2": _TUCKER,
    "lokr_t2": "LoKr with a Tucker core (lokr_t2) is not supported",
}
_WEIGHT_ROLES = frozenset(("down", "up", *LOHA_ROLES, *LOKR_ROLES))


def group_keys(path: str, parsed: list[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """{module: {role: key}} from (key, module, role) triples; two keys for one role of one
    module (e.g. both lora_A and lora_down) is an error."""
    groups: dict[str, dict[str, str]] = {}
    for key, module, role in parsed:
        roles = groups.setdefault(module, {})
        if role in roles:
            raise LoRAFormatError(f"{path}: keys {roles[role]!r} and {key!r} are the same tensor of module {module!r}")
        roles[role] = key
    return groups


def refuse_unsupported(path: str, parsed: list[tuple[str, str, str]]) -> None:
    """Raise, naming the algorithm, if any key belongs to one vidlora does not apply exactly."""
    found: dict[str, list[str]] = {}
    for key, _, role in parsed:
        if role in _REFUSALS:
            found.setdefault(_REFUSALS[role], []).append(key)
    if found:
        reason, keys = next(iter(found.items()))
        more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
        raise LoRAFormatError(f"{path}: {reason} (key {keys[0]!r}{more})")


@dataclass
class _Payload:
    """One source module's tensors, before any row split."""

    module: str
    target: Target
    keys: tuple[str, ...]
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None
    scale: float = 1.0
    # LoHa / LoKr (a FactoredDelta, scale inside) or a convolution LoRA (a small dense tensor, scale applied)
    dense: torch.Tensor | FactoredDelta | None = None
    up_bias: torch.Tensor | None = None  # scale applied
    diff: torch.Tensor | None = None
    diff_b: torch.Tensor | None = None

    def in_out(self) -> tuple[int, int] | None:
        if self.down is not None and self.down.ndim == 2:
            return int(self.down.shape[1]), int(self.up.shape[0])
        for w in (self.dense, self.diff):
            if w is not None and w.ndim == 2:
                return int(w.shape[1]), int(w.shape[0])
        return None


def _lora(path: str, p: _Payload, roles: dict[str, str], tensors, peft: PeftConfig | None) -> None:
    if "down" not in roles or "up" not in roles:
        have, miss = ("down", "up") if "down" in roles else ("up", "down")
        raise LoRAFormatError(
            f"{path}: {roles[have]!r} has no matching {miss} tensor (LoRA module {p.module!r} needs both A/down and B/up)"
        )
    down, up = tensors[roles["down"]], tensors[roles["up"]]
    if down.ndim < 2 or up.ndim < 2 or down.ndim != up.ndim:
        raise LoRAFormatError(
            f"{path}: LoRA {p.module!r}: down {tuple(down.shape)} and up {tuple(up.shape)} are not a matrix pair "
            "(expected down [rank, in], up [out, rank])"
        )
    if up.shape[1] != down.shape[0]:
        raise LoRAFormatError(
            f"{path}: A/B rank mismatch in {p.module!r}: {roles['down']!r} has rank {down.shape[0]}, "
            f"{roles['up']!r} has rank {up.shape[1]}"
        )
    rank = int(down.shape[0])
    if rank == 0:
        raise LoRAFormatError(f"{path}: LoRA {p.module!r} has rank 0")
    if "alpha" in roles:
        alpha = alpha_value(path, roles["alpha"], tensors[roles["alpha"]])
        rslora = bool(peft and peft.use_rslora)
    elif peft is not None:
        alpha = peft.alpha_for(p.module, *p.target.paths)
        rslora = peft.use_rslora
    else:
        alpha, rslora = None, False
    p.alpha, p.scale = alpha, scale_for(alpha, rank, rslora)
    if down.ndim == 2:
        p.down, p.up = down, up
    else:
        # Convolution LoRA (patch embedding): down [r, in, *k], up [out, r, 1...]. Its
        # delta is small (Wan 14B: 5120 x 16 x 1 x 2 x 2), so it is materialized exactly.
        if any(s != 1 for s in up.shape[2:]):
            raise LoRAFormatError(f"{path}: convolution LoRA {p.module!r} with a spatial up kernel is not supported")
        check_dense(path, p.module, "convolution LoRA", (up.shape[0], *down.shape[1:]))
        dense = up.flatten(1).float() @ down.flatten(1).float()
        p.dense = p.scale * dense.reshape(up.shape[0], *down.shape[1:])
    if "up_bias" in roles:
        # PEFT lora_bias: the bias of lora_B is scaled with the module (peft merges b += B.bias * scaling).
        p.up_bias = p.scale * tensors[roles["up_bias"]].float()


def _payload(path: str, module: str, target: Target, roles: dict[str, str], tensors, peft) -> _Payload:
    p = _Payload(module, target, tuple(roles.values()))
    if any(r in roles for r in LOHA_ROLES):
        p.dense, p.alpha = loha_delta(path, module, roles, tensors)
        p.scale = p.dense.scale
    elif any(r in roles for r in LOKR_ROLES):
        p.dense, p.alpha = lokr_delta(path, module, roles, tensors)
        p.scale = p.dense.scale
    elif "down" in roles or "up" in roles:
        _lora(path, p, roles, tensors, peft)
    elif "up_bias" in roles:
        raise LoRAFormatError(f"{path}: {roles['up_bias']!r} has no lora_A/lora_B beside it")
    for role in ("diff", "w_norm"):
        if role in roles:
            if p.diff is not None:
                raise LoRAFormatError(f"{path}: module {module!r} has both diff and w_norm")
            p.diff = tensors[roles[role]]
    for role in ("diff_b", "b_norm"):
        if role in roles:
            if p.diff_b is not None:
                raise LoRAFormatError(f"{path}: module {module!r} has both diff_b and b_norm")
            p.diff_b = tensors[roles[role]]
    if "diff_m" in roles:
        if not target.is_param:
            raise LoRAFormatError(f"{path}: {roles['diff_m']!r}: diff_m belongs to a block or the head, not {module!r}")
        p.diff = tensors[roles["diff_m"]]
    return p


def _width(spec: FamilySpec, payloads: list[_Payload]) -> tuple[int, str]:
    """The hidden width the file targets, and the evidence for it.

    The width is read off the Linears that read or write it (the spec's width rules):
    block Linears first, top-level ones only when the file has no block Linear; two
    different widths among them are an error. A file without such a Linear (full-tensor
    patches only) falls back to a parameter whose last dimension is the width.
    """
    for tier in (0, 1):
        seen: dict[int, tuple[str, str]] = {}  # width -> (side, first key showing it)
        for p in payloads:
            io = p.in_out()
            side = spec.width_side(p.target.paths[0]) if io is not None else None
            if side is None or side[0] != tier:
                continue
            seen.setdefault(io[0] if side[1] == "in" else io[1], (side[1], p.keys[0]))
        if len(seen) > 1:
            detail = "; ".join(f"{w} from {key!r}" for w, (_, key) in list(seen.items())[:3])
            raise LoRAFormatError(f"inconsistent hidden sizes in one file: {detail}")
        if seen:
            ((w, (side, key)),) = seen.items()
            return w, f"{side}_features {w} of {key}"
    for p in payloads:
        for t, suffix in ((p.diff, ".weight"), (p.diff_b, ".bias")):
            if t is None or t.ndim == 0:
                continue
            name = p.target.paths[0] if p.target.is_param else p.target.paths[0] + suffix
            if spec.is_width_param(name):
                return int(t.shape[-1]), f"last dim {int(t.shape[-1])} of {p.keys[0]}"
    return 0, "no tensor fixes the hidden width"


def _cut(path: str, t: torch.Tensor, p: _Payload, width: int, what: str) -> list[torch.Tensor]:
    split, n = p.target.split, len(p.target.paths)
    rows = int(t.shape[0]) if t.ndim else 0
    if split is None:
        return [t]
    if split == "swap":
        if rows % 2:
            raise LoRAFormatError(f"{path}: {what} of {p.module!r} has {rows} rows; expected an even number (shift, scale)")
        half = rows // 2
        if isinstance(t, FactoredDelta):
            return [t.swap_halves()]
        return [torch.cat([t[half:], t[:half]])]
    if split == "equal":
        if rows % n:
            raise LoRAFormatError(f"{path}: {what} of fused {p.module!r} has {rows} rows; expected {n} equal parts")
        sizes = [rows // n] * n
    else:  # linear1: q, k, v of the hidden width, then the MLP rows
        if width <= 0 or rows <= 3 * width:
            raise LoRAFormatError(
                f"{path}: {what} of fused {p.module!r} has {rows} rows; expected 3 x width ({width}) + MLP rows"
            )
        sizes = [width, width, width, rows - 3 * width]
    if isinstance(t, FactoredDelta):
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [t.rows(s, s + n) for s, n in zip(starts, sizes)]
    return [piece.contiguous() for piece in torch.split(t, sizes, dim=0)]


def _put(path: str, deltas: dict[str, torch.Tensor], name: str, t: torch.Tensor, key: str) -> None:
    if name in deltas:
        raise LoRAFormatError(f"{path}: two tensors patch {name!r} (the second from {key!r})")
    deltas[name] = t


def assemble(
    raw: RawFile,
    groups: dict[str, dict[str, str]],
    translate: Callable[[str], Target | None],
    spec: FamilySpec,
    peft: PeftConfig | None = None,
) -> Assembled:
    """Build canonical modules / deltas from grouped keys. A module name ``translate``
    does not know keeps its own name, so that matching it against a model reports it."""
    path, tensors = raw.path, raw.tensors
    out = Assembled()
    payloads = []
    for module, roles in groups.items():
        if "alpha" in roles and not _WEIGHT_ROLES.intersection(roles):
            out.ignored.append((roles["alpha"], "alpha without LoRA weights beside it"))
            roles = {r: k for r, k in roles.items() if r != "alpha"}
            if not roles:
                continue
        target = translate(module) or Target((module,))
        payloads.append(_payload(path, module, target, roles, tensors, peft))
    try:
        out.width, out.width_evidence = _width(spec, payloads)
    except LoRAFormatError as exc:
        raise LoRAFormatError(f"{path}: {exc}") from None

    for p in payloads:
        keys = p.keys[0]
        if p.down is not None:
            for name, up in zip(p.target.paths, _cut(path, p.up, p, out.width, "lora_up/lora_B")):
                if name in out.modules:
                    raise LoRAFormatError(f"{path}: two LoRAs target {name!r} (the second from {keys!r})")
                out.modules[name] = LowRank(down=p.down, up=up, alpha=p.alpha, scale=p.scale, source_keys=p.keys)
        if p.dense is not None:
            for name, d in zip(p.target.paths, _cut(path, p.dense, p, out.width, "weight delta")):
                _put(path, out.deltas, f"{name}.weight", d, keys)
        if p.up_bias is not None:
            for name, d in zip(p.target.paths, _cut(path, p.up_bias, p, out.width, "lora_B.bias")):
                _put(path, out.deltas, f"{name}.bias", d, keys)
        if p.diff is not None:
            if p.target.is_param:
                _put(path, out.deltas, p.target.paths[0], p.diff, keys)
            else:
                for name, d in zip(p.target.paths, _cut(path, p.diff, p, out.width, "diff")):
                    _put(path, out.deltas, f"{name}.weight", d, keys)
        if p.diff_b is not None:
            if p.target.is_param:
                raise LoRAFormatError(f"{path}: {keys!r}: a bias delta on parameter {p.target.paths[0]!r}")
            for name, d in zip(p.target.paths, _cut(path, p.diff_b, p, out.width, "diff_b")):
                _put(path, out.deltas, f"{name}.bias", d, keys)
    return out
