"""Canonical (diffusers) paths back to a family's original names, from the spec's name table.

The readers run producer name -> diffusers path through :class:`~vidlora.model.NameTable`;
the writers need the reverse. It is derived here from the same table data (block groups,
top-level names, parameters), so one table drives both directions:

* a diffusers Linear that is one original module: its original name (``blocks.0.attn1.to_q``
  -> ``blocks.0.self_attn.q``);
* a piece of a fused original (Hunyuan ``transformer_blocks.0.attn.to_k`` is rows 1/3 of
  ``double_blocks.0.img_attn_qkv``): the fused name, the piece's index, the piece count and
  the split rule;
* a parameter that is itself a table entry (Wan ``blocks.0.scale_shift_table`` is
  ``blocks.0.modulation``; its ``diff_m`` owner is ``blocks.0``).

Several original spellings may map to one diffusers name (Tencent ``img_attn_qkv`` and
ComfyUI ``img_attn.qkv``): ``comfy=True`` picks ComfyUI's (the spec's ``comfy_hint``),
else the first non-ComfyUI one.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidlora.model import FamilySpec, spec_for_arch

__all__ = ["Place", "ParamPlace", "module_place", "param_place"]


@dataclass(frozen=True)
class Place:
    """Where a diffusers module lands in the original naming.

    name: the original module name (the fused module's for a piece).
    index / count: the piece's position among ``count`` pieces (None / 1 when not fused).
    split: the name table's rule (None, "equal", "linear1", "swap").
    siblings: the diffusers paths of all pieces, in row order (just this path when not fused).
    """

    name: str
    index: int | None
    count: int
    split: str | None
    siblings: tuple[str, ...]


@dataclass(frozen=True)
class ParamPlace:
    """Where a diffusers parameter that is a table entry lands: ``name`` (the original
    parameter, e.g. ``blocks.0.modulation``) and ``owner`` (the bare module a ``diff_m``
    names, ``blocks.0``; None when the table has none)."""

    name: str
    owner: str | None


def _pick(spec: FamilySpec, base: str, spellings: list[str], comfy: bool) -> str:
    """The spelling to write (``base``: the block prefix the hint sees in front of it). A
    family without ComfyUI spellings of its own uses its lineage's (FramePack: HunyuanVideo's)."""
    if spec.comfy_hint is None and spec.lineage != spec.name:
        spec = spec_for_arch(spec.lineage)
    if spec.comfy_hint is None:
        return spellings[0]
    preferred = [s for s in spellings if spec.looks_comfy(base + s) == comfy]
    return (preferred or spellings)[0]


_CACHE: dict[str, tuple[dict, dict, dict, dict]] = {}  # spec name -> indexes (specs hold dicts: unhashable)


def _reverse(spec: FamilySpec) -> tuple[dict, dict, dict, dict]:
    if spec.name not in _CACHE:
        _CACHE[spec.name] = _build_reverse(spec)
    return _CACHE[spec.name]


def _build_reverse(spec: FamilySpec) -> tuple[dict, dict, dict, dict]:
    """(block inner index, top index, block param index, top param index).

    block inner: (group path, diffusers inner) -> [(original inner, index, names, split)];
    top: diffusers path -> [(original, index, names, split)]; the param indexes map a
    diffusers parameter to its original name(s) and owner."""
    names = spec.names
    inner: dict = {}
    for group in names.groups:
        for original, (targets, split) in group.names.items():
            for i, target in enumerate(targets):
                inner.setdefault((group.path, target), []).append((original, i, targets, split))
    top: dict = {}
    for original, (targets, split) in names.top.items():
        for i, target in enumerate(targets):
            top.setdefault(target, []).append((original, i, targets, split))
    params: dict = {}
    for group in names.groups:
        for original, target in group.params.items():
            owner = "" if group.owner_param == target else None
            params[(group.path, target)] = (group.original, original, owner)
    top_params: dict = {}
    for original, target in names.top_params.items():
        owner = next((o for o, t in names.top_owner_params.items() if t == target), None)
        top_params[target] = (original, owner)
    return inner, top, params, top_params


def _block(spec: FamilySpec, path: str):
    """(group, index, inner) of a diffusers path inside a named block group, else None."""
    for group in spec.names.groups:
        prefix = group.path + "."
        if path.startswith(prefix):
            index, dot, rest = path[len(prefix):].partition(".")
            if dot and index.isdigit():
                return group, index, rest
    return None


def module_place(spec: FamilySpec, path: str, comfy: bool = False) -> Place | None:
    """The original-naming place of a diffusers module path, None when the table has none."""
    inner, top, _, _ = _reverse(spec)
    block = _block(spec, path)
    if block is not None:
        group, index, rest = block
        entries = inner.get((group.path, rest))
        base = f"{group.original}.{index}."
        sib_base = f"{group.path}.{index}."
    else:
        entries = top.get(path)
        base = sib_base = ""
    if not entries:
        return None
    spelling = _pick(spec, base, [e[0] for e in entries], comfy)
    _, i, targets, split = next(e for e in entries if e[0] == spelling)
    fused = split in ("equal", "linear1")
    return Place(
        name=base + spelling,
        index=i if fused else None,
        count=len(targets) if fused else 1,
        split=split,
        siblings=tuple(sib_base + t for t in targets) if fused else (path,),
    )


def param_place(spec: FamilySpec, path: str) -> ParamPlace | None:
    """The original place of a diffusers parameter that is a table entry (Wan's modulation
    tables, the image position embedding), None for ordinary ``.weight`` / ``.bias``."""
    _, _, params, top_params = _reverse(spec)
    block = _block(spec, path)
    if block is not None:
        group, index, rest = block
        hit = params.get((group.path, rest))
        if hit is None:
            return None
        original_group, original, owner = hit
        base = f"{original_group}.{index}"
        return ParamPlace(f"{base}.{original}", base if owner is not None else None)
    hit = top_params.get(path)
    return None if hit is None else ParamPlace(hit[0], hit[1])
