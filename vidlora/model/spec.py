"""``FamilySpec``: every fact vidlora knows about one model family, in one record.

Patching, reading, matching, ``inspect`` and ``blocks=`` all ask the spec; no other module
holds a pattern over module paths. A spec says

* which diffusers transformer classes it is, and how LoRA files of it are named
  (``arch``, the :class:`~vidlora.model.names.NameTable`);
* its block groups (``blocks``; ``transformer_blocks`` + ``single_transformer_blocks``):
  which of them ``blocks=`` counts, the Linears attach patches in each, the sibling
  projections fused into one GEMM, the kind of each module (self-attn, ffn, ...), which
  Linears read or write the hidden width (how a LoRA file's size is told);
* the image branch (harmless extras on a model without one), hidden width -> size name;
* real configs of the released models (for the meta device) and their Hub ids;
* how a config tells task and version, and what a LoRA's own structure says about them.

Adding a family is one spec module (plus its tiny fixture) registered in ``registry.py``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .names import NameTable
from .parallel_plan import CPPlan

__all__ = ["FamilySpec", "GroupLayout", "Fusion", "MODULE_KINDS", "Signal", "lycoris_label"]

MODULE_KINDS = ("self-attn", "cross-attn", "image cross-attn", "ffn", "other")

# A variant signal: (field, value, evidence in words), e.g. ("task", "i2v", "36 input channels").
Signal = tuple[str, str, str]


def lycoris_label(keys: list[str]) -> str:
    """"LyCORIS LoKr" / "LyCORIS LoHa" (both: "LyCORIS LoHa + LoKr") for a file's keys, "" for none:
    part of every family's scheme labels."""
    kinds = [name for name, marker in (("LoHa", ".hada_"), ("LoKr", ".lokr_")) if any(marker in k for k in keys)]
    return "LyCORIS " + " + ".join(kinds) if kinds else ""


@dataclass(frozen=True)
class Fusion:
    """Sibling projections that read the same input, fused into one GEMM: inside the
    attention module ``attn``, ``parts`` become the model's own fused attribute ``fused``
    (diffusers' attention reads it when ``fused_projections`` is set). ``cross``: the
    fusion applies to cross-attention modules only (True), self-attention only (False)."""

    attn: str
    fused: str
    parts: tuple[str, ...]
    cross: bool


@dataclass(frozen=True)
class GroupLayout:
    """What a block group looks like inside the diffusers model.

    path: the container (``blocks``); matches a :class:`~vidlora.model.names.BlockGroup`.
    counted: part of ``blocks=`` numbering (groups number one after the other).
    patched: inner Linears attach patches by default.
    fusions: sibling projections fused per block.
    kinds: (inner prefix, kind) pairs, the first match wins; else "other".
    width_in / width_out: inner Linears whose in_features / out_features are the width.
    width_params: inner parameters whose last dimension is the width.
    image: inner prefixes of the image branch (Wan 2.1 I2V's k_img / v_img).
    context: inner Linears whose rows are context tokens (text, image embeddings, face
    features), not video tokens; per_sample: inner Linears run once per sample (adaLN
    modulation). The kernels' first-use choice is made per row count (``input_rows``).
    """

    path: str
    counted: bool = True
    patched: tuple[str, ...] = ()
    fusions: tuple[Fusion, ...] = ()
    kinds: tuple[tuple[str, str], ...] = ()
    width_in: tuple[str, ...] = ()
    width_out: tuple[str, ...] = ()
    width_params: tuple[str, ...] = ()
    image: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    per_sample: tuple[str, ...] = ()


@dataclass(frozen=True)
class FamilySpec:
    """One model family. See the module docstring; each field documents itself."""

    name: str  # "wan" | "hunyuan-video" | "wan-vace" ...: also the ``arch`` of LoRA files named this way
    label: str  # "Wan" | "HunyuanVideo" | "Wan VACE" ...
    classes: tuple[str, ...]  # diffusers transformer class names this spec covers
    names: NameTable
    groups: tuple[GroupLayout, ...]
    sizes: Mapping[int, tuple[str, str]]  # hidden width -> (family id, label): 1536 -> ("wan-1.3b", "Wan 1.3B")
    # top-level (outside the blocks) facts, like the GroupLayout fields
    top_kinds: tuple[tuple[str, str], ...] = ()
    top_width_in: tuple[str, ...] = ()
    top_width_out: tuple[str, ...] = ()
    top_width_params: tuple[str, ...] = ()
    top_image: tuple[str, ...] = ()
    # attention processors that honour ``fused_projections`` (diffusers class names)
    fused_processors: tuple[str, ...] = ()
    real_configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hub_ids: Mapping[str, str] = field(default_factory=dict)  # Hub id -> real_configs key
    # config (diffusers config or dict) and width -> (task, version), each None when unsaid
    task_version: Callable[[Any, int], tuple[str | None, str | None]] = lambda config, width: (None, None)
    # what a LoRA's own tensors say about its variant: (module paths, deltas, width) -> signals
    lora_signals: Callable[[list[str], Mapping[str, Any], int], list[Signal]] = lambda names, deltas, width: []
    # family ids whose pipelines carry two experts (Wan 2.2 A14B): file-name signals apply there
    expert_families: tuple[str, ...] = ()
    # LoRA key schemes: which module names are distinctive of each naming (prefix
    # patterns, so an unknown name under a known root is still claimed, then reported by
    # name), and the scheme label of a file each reader reads:
    # (reader kind, keys, module names, dotted key prefixes) -> label.
    original_hint: str | None = None
    diffusers_hint: str | None = None
    # ComfyUI's own spellings among the original names (Hunyuan ``img_attn.qkv`` for
    # Tencent's ``img_attn_qkv``): which spelling a ComfyUI-named file is written with.
    comfy_hint: str | None = None
    scheme_label: Callable[[str, list[str], list[str], set[str]], str] = lambda kind, keys, modules, prefixes: kind
    # Families whose LoRAs fit each other's models share a lineage (the spec name of the
    # base family: Wan VACE, SkyReels V2 and Wan Animate are "wan"; FramePack is
    # "hunyuan-video"); their names are then checked one by one. A LoRA of another lineage
    # is refused as a whole, naming both sides with their fingerprints.
    lineage: str = ""
    fingerprint: str = ""  # what tells this family's LoRAs apart, for errors ("separate img_attn_q/k/v")
    # pipeline class name -> why a strength schedule cannot be followed there (refused by name)
    schedule_refused: Mapping[str, str] = field(default_factory=dict)
    # diffusers class name -> how context parallelism cuts it (parallel_plan.py); a class
    # not listed has no plan, and vidlora.context_parallel refuses it by name
    cp_plans: Mapping[str, CPPlan] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.lineage:
            object.__setattr__(self, "lineage", self.name)
        for name in ("original_hint", "diffusers_hint", "comfy_hint"):
            value = getattr(self, name)
            object.__setattr__(self, f"_{name}_re", re.compile(value) if value else None)

    def looks_original(self, module: str) -> bool:
        """The module name uses this family's original naming (not shared with diffusers)."""
        return self._original_hint_re is not None and bool(self._original_hint_re.match(module))

    def looks_comfy(self, module: str) -> bool:
        """The original module name is ComfyUI's spelling (where it has its own)."""
        return self._comfy_hint_re is not None and bool(self._comfy_hint_re.match(module))

    def looks_diffusers(self, module: str) -> bool:
        """The module name uses this family's diffusers naming (not shared with the original)."""
        return self._diffusers_hint_re is not None and bool(self._diffusers_hint_re.match(module))

    @functools.cached_property  # asked once per module name by the kohya reader
    def kohya_roots(self) -> tuple[str, ...]:
        """How underscored original names of this family begin (``blocks_``, ``head``...)."""
        roots = [g.original.replace(".", "_") + "_" for g in self.names.groups]
        tops = (*self.names.top, *self.names.top_params, *self.names.top_owner_params)
        roots += [t.split(".", 1)[0] for t in tops]
        return tuple(dict.fromkeys(roots))

    # ------------------------------------------------------------------ sizes and labels
    def family_for_width(self, width: int) -> str:
        """The family id a hidden width implies: "wan-14b", or "wan (width 24)"."""
        size = self.sizes.get(width)
        return size[0] if size else f"{self.name} (width {width})"

    def family_label(self, family: str) -> str:
        """Human name of a family id: "Wan 14B"; the spec's label for unnamed widths."""
        for fid, label in self.sizes.values():
            if fid == family:
                return label
        return self.label

    # ------------------------------------------------------------------ paths
    def split_block(self, path: str) -> tuple[GroupLayout, int, str] | None:
        """(group, block index within the group, inner path) of a path inside a block."""
        for group in self.groups:
            prefix = group.path + "."
            if path.startswith(prefix):
                index, dot, inner = path[len(prefix):].partition(".")
                if index.isdigit():
                    return group, int(index), inner
        return None

    def is_patched(self, path: str) -> bool:
        """Whether attach patches this Linear by default."""
        split = self.split_block(path)
        return split is not None and split[2] in split[0].patched

    def module_kind(self, path: str) -> str:
        """One of MODULE_KINDS for a module or parameter path."""
        split = self.split_block(path)
        if split is not None:
            group, _, inner = split
            if any(_under(inner, p) for p in group.image):
                return "image cross-attn"
            kinds = group.kinds
            rest = inner
        else:
            if any(_under(path, p) for p in self.top_image):
                return "image cross-attn"
            kinds, rest = self.top_kinds, path
        for prefix, kind in kinds:
            if rest.startswith(prefix):
                return kind
        return "other"

    def input_rows(self, path: str) -> str:
        """What the rows of a Linear's input are: "video" (the video tokens), "context"
        (text / image-embedding / face tokens) or "one" (one per sample). Top-level
        Linears, patched only when a LoRA targets them, count as "video"."""
        split = self.split_block(path)
        if split is None:
            return "video"
        group, _, inner = split
        return "context" if inner in group.context else "one" if inner in group.per_sample else "video"

    def is_image_branch(self, path: str) -> bool:
        """Whether a module/parameter path belongs to the image (I2V) branch."""
        return self.module_kind(path) == "image cross-attn"

    def width_side(self, path: str) -> tuple[int, str] | None:
        """(tier, "in" | "out") when the Linear at ``path`` reads or writes the hidden width:
        tier 0 for block Linears, 1 for top-level ones (consulted only without block ones)."""
        split = self.split_block(path)
        if split is not None:
            group, _, inner = split
            if inner in group.width_in:
                return 0, "in"
            if inner in group.width_out:
                return 0, "out"
            return None
        if path in self.top_width_in:
            return 1, "in"
        if path in self.top_width_out:
            return 1, "out"
        return None

    def is_width_param(self, path: str) -> bool:
        """Whether the parameter at ``path`` has the hidden width as its last dimension."""
        split = self.split_block(path)
        if split is not None:
            return split[2] in split[0].width_params
        return path in self.top_width_params

    def fusions_for(self, path: str) -> tuple[Fusion, ...]:
        """The fusions whose attention module is ``path`` (``blocks.3.attn1``)."""
        split = self.split_block(path)
        if split is None:
            return ()
        group, _, inner = split
        return tuple(f for f in group.fusions if f.attn == inner)

    @property
    def counted_groups(self) -> tuple[GroupLayout, ...]:
        return tuple(g for g in self.groups if g.counted)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")
