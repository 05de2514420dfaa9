"""``convert_lora``: any scheme vidlora reads -> one target naming, exactly.

    report = convert_lora("musubi_lora.safetensors", "for_comfy.safetensors", to="comfyui")

The file is read into the canonical form (read_lora: every scheme, alpha rules, fused
splits) and written by the target naming's renderer (render.py), so each conversion is
one reader plus one writer, never a table per pair of schemes. Wan 2.2 two-expert files
(W6) stay one file where the target has that form (``original``) and are split into
``<out>_high_noise`` / ``<out>_low_noise`` otherwise; two files are joined with
``src={"high": ..., "low": ...}``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from vidlora.errors import VidloraError
from vidlora.model import Inventory, spec_for_arch

from ..lora_file import LoRAFile
from ..match import match_lora
from ..read import read_lora
from .output import carried_metadata, check_destinations, expert_path, peft_metadata, write_safetensors
from .render import Rendered, render
from .targets import EXPERT_FORMS, naming_for

__all__ = ["convert_lora", "ConvertReport", "model_inventory", "load_lora", "write_parts"]


@dataclass
class ConvertReport:
    """What a conversion wrote: the files, the target scheme, what was dropped and why, and
    notes (fused modules that grew)."""

    outputs: list[str]
    scheme: str
    source_scheme: str
    modules: int
    deltas: int
    dropped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"wrote {', '.join(self.outputs)} ({self.scheme}; from {self.source_scheme}): "
                 f"{self.modules} LoRA modules, {self.deltas} full-tensor deltas"]  # fmt: skip
        lines += [f"  note: {n}" for n in self.notes]
        if self.dropped:
            lines.append(f"  dropped {len(self.dropped)} entries the target has no name for:")
            lines += [f"    {name}: {why}" for name, why in self.dropped]
        return "\n".join(lines)


def load_lora(src) -> LoRAFile:
    """A LoRAFile as is, or any reference read_lora takes."""
    return src if isinstance(src, LoRAFile) else read_lora(src)


def model_inventory(model) -> Inventory | None:
    """An Inventory from a diffusers transformer, an Inventory, or a real-config name / Hub id."""
    if model is None or isinstance(model, Inventory):
        return model
    from vidlora.model import inventory, meta_transformer

    if isinstance(model, (str, dict)):
        model = meta_transformer(model)
    return inventory(model)


def _expert_meta(expert: str | None) -> dict[str, str]:
    return {"vidlora.expert": expert} if expert else {}


def write_parts(
    parts: dict[str | None, LoRAFile],
    dst: str,
    to: str,
    metadata: dict[str, str],
    *,
    split: bool | None,
    drop_unsupported: bool,
    overwrite: bool,
    dtype: torch.dtype | None,
    inv: Inventory | None,
    sources: list[str] = (),
) -> tuple[list[str], list[Rendered], str]:
    """Render and write one file (``parts`` = {None: lora} or {expert: lora}, or a two-expert
    file), or one file per expert. ``split`` None: one file where the target has a
    two-expert form, else one per expert. Returns (paths written, renderings, the scheme
    written)."""
    arch = next(iter(parts.values())).arch
    if inv is not None and spec_for_arch(inv.arch).lineage == spec_for_arch(arch).lineage:
        # the model says which family of the lineage (a HunyuanVideo-named LoRA for FramePack
        # takes FramePack's musubi naming)
        arch = inv.arch
    naming = naming_for(to, arch)
    experts = sorted(e for e in parts if e is not None)
    combo_form = EXPERT_FORMS.get(to)
    if len(experts) > 1:
        if split is None:
            split = combo_form is None
        if not split and combo_form is None:
            raise VidloraError(
                f"the {to} naming has no two-expert form; write one file per expert (experts='split', --split-experts)"
            )
    else:
        split = False
    inv_shapes = dict(inv.params) if inv is not None else None
    if split:
        paths = {e: expert_path(dst, e) for e in experts}
    else:
        paths = {None: dst}
    check_destinations(list(paths.values()), overwrite, list(sources))
    renders: list[Rendered] = []
    written: list[str] = []
    plans = []
    for expert, part in parts.items():
        if inv is not None:
            match_lora(part, inv)  # raises, naming both sides, when the LoRA does not fit
        prefix = combo_form[expert] if (len(experts) > 1 and not split) else None
        renders.append(render(part, naming, prefix=prefix, drop_unsupported=drop_unsupported, shapes=inv_shapes))
        plans.append((expert, renders[-1]))
    if split:
        for expert, out in plans:
            meta = dict(metadata, **_expert_meta(expert))
            if out.peft is not None:
                meta["lora_adapter_metadata"] = peft_metadata(out.peft, out.peft_prefix)
            write_safetensors(paths[expert], out.tensors, dict(meta, format="pt"), dtype)
            written.append(paths[expert])
    else:
        tensors: dict[str, torch.Tensor] = {}
        for _, out in plans:
            tensors.update(out.tensors)
        meta = dict(metadata, **(_expert_meta(experts[0]) if len(experts) == 1 else {}))
        peft = plans[0][1].peft if len(plans) == 1 else None
        if peft is not None:
            meta["lora_adapter_metadata"] = peft_metadata(peft, plans[0][1].peft_prefix)
        write_safetensors(dst, tensors, dict(meta, format="pt"), dtype)
        written.append(dst)
    return written, renders, naming.scheme


def _parts_of(lora: LoRAFile) -> dict[str | None, LoRAFile]:
    if lora.experts:
        return dict(lora.experts)
    return {lora.variant.expert: lora}


def convert_lora(
    src,
    dst: str | os.PathLike,
    to: str = "diffusers",
    *,
    experts: str | None = None,
    drop_unsupported: bool = False,
    overwrite: bool = False,
    dtype: torch.dtype | None = None,
    model=None,
) -> ConvertReport:
    """Convert a LoRA of any scheme vidlora reads into the ``to`` naming
    ("diffusers" | "comfyui" | "musubi" | "original"), exactly.

    src: a path / Hub id / URL / civitai: reference or a LoRAFile; {"high": A, "low": B}
        joins two single-expert Wan 2.2 files into one two-expert file.
    experts: None (two-expert files stay one file where the target has that form, else
        one file per expert), "split" (always one file per expert: ``<dst>_high_noise``
        / ``<dst>_low_noise``) or "join" (one file; an error for targets without the form).
    drop_unsupported: drop (and report) entries the target has no name for instead of
        raising UnsupportedError listing them.
    dtype: cast every tensor (default: keep each one's dtype).
    model: a diffusers transformer, an Inventory or a real-config name: the LoRA is
        checked against it first and its shapes size fused pieces the file lacks.
    Metadata is carried (trigger words, base model, training facts) with the source's
    name, scheme and sha256. The output is written atomically and never replaces an
    existing file unless ``overwrite``.
    """
    dst = os.fspath(dst)
    if experts not in (None, "split", "join"):
        raise VidloraError(f"experts must be None, 'split' or 'join'; got {experts!r}")
    if isinstance(src, dict):
        if sorted(src) != ["high", "low"]:
            raise VidloraError(f"joining experts takes {{'high': file, 'low': file}}; got keys {sorted(src)}")
        loras = {e: load_lora(s) for e, s in src.items()}
        for e, one in loras.items():
            if one.experts:
                raise VidloraError(f"{one.path} already holds both experts; join takes one file per expert")
        parts: dict[str | None, LoRAFile] = dict(loras)
        first = loras["high"]
        meta = carried_metadata(first, "convert")
        meta["vidlora.source_name_low"] = os.path.basename(loras["low"].path)
        if loras["low"].sha256:
            meta["vidlora.source_sha256_low"] = loras["low"].sha256
        sources = [loras["high"].path, loras["low"].path]
        experts = experts or "join"
    else:
        first = load_lora(src)
        parts = _parts_of(first)
        meta = carried_metadata(first, "convert")
        sources = [first.path]
    written, renders, scheme = write_parts(
        parts, dst, to, meta, split=None if experts is None else experts == "split",
        drop_unsupported=drop_unsupported, overwrite=overwrite, dtype=dtype, inv=model_inventory(model),
        sources=sources,
    )  # fmt: skip
    return ConvertReport(
        outputs=written,
        scheme=scheme,
        source_scheme=first.scheme,
        modules=sum(len(p.modules) for p in parts.values()),
        deltas=sum(len(p.deltas) for p in parts.values()),
        dropped=[d for r in renders for d in r.dropped],
        notes=[n for r in renders for n in r.notes],
    )
