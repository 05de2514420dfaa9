"""``Inventory``: every Linear and parameter shape of a transformer, without its weights.

A LoRA is checked against an Inventory, which :func:`inventory` builds from a model (one
on the meta device too), so a compatibility check never needs weights. Family names
follow the hidden width, the one number every LoRA file carries in its shapes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

from .registry import family_label, spec_for_arch, spec_for_model
from .spec import MODULE_KINDS, FamilySpec

__all__ = [
    "LinearInfo",
    "Inventory",
    "inventory",
    "block_index",
    "block_linear_paths",
    "describe",
    "module_kind",
    "module_counts",
]


@dataclass(frozen=True)
class LinearInfo:
    in_features: int
    out_features: int
    has_bias: bool


@dataclass
class Inventory:
    """Everything a LoRA is validated against, without the weights themselves."""

    arch: str  # the FamilySpec name: "wan" | "hunyuan-video"
    family: str  # "wan-1.3b" | "wan-5b" | "wan-14b" | "hunyuan-video" | "wan (width 24)" ...
    width: int
    task: str | None  # "t2v" | "i2v" when the config says so
    version: str | None  # "2.1" | "2.2" when the config says so
    linears: dict[str, LinearInfo] = field(default_factory=dict)
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)
    group_sizes: dict[str, int] = field(default_factory=dict)  # block group path -> number of blocks

    @property
    def spec(self) -> FamilySpec:
        return spec_for_arch(self.arch)

    @property
    def n_double(self) -> int:
        """Blocks of the first counted group (Wan: all blocks; Hunyuan: the double blocks)."""
        return self.group_sizes.get(self.spec.counted_groups[0].path, 0)

    @property
    def n_blocks(self) -> int:
        """Blocks ``blocks=`` can name: every counted group, one after the other."""
        return sum(self.group_sizes.get(g.path, 0) for g in self.spec.counted_groups)


def describe(inv: Inventory) -> str:
    """One line naming the model: "Wan 1.3B (width 1536)"."""
    return f"{family_label(inv.family)} (width {inv.width})"


def _config_value(config, name: str):
    if config is None:
        return None
    return config.get(name) if isinstance(config, dict) else getattr(config, name, None)


def _width(model: torch.nn.Module, config) -> int:
    heads, head_dim = _config_value(config, "num_attention_heads"), _config_value(config, "attention_head_dim")
    if heads and head_dim:
        return int(heads) * int(head_dim)
    # no config: the widest Linear output of the first block's attention is the width
    first = next(m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".attn" in n)
    return int(first.in_features)


def inventory(model: torch.nn.Module) -> Inventory:
    """The Inventory of a diffusers transformer of a registered family (any device, meta too)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the module
    spec = spec_for_model(model)
    config = getattr(model, "config", None)
    width = _width(model, config)
    linears = {
        name: LinearInfo(int(mod.in_features), int(mod.out_features), mod.bias is not None)
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear)
    }
    params = {name: tuple(int(s) for s in p.shape) for name, p in model.named_parameters()}
    sizes = {}
    for group in spec.groups:
        try:
            sizes[group.path] = len(model.get_submodule(group.path))
        except AttributeError:
            sizes[group.path] = 0
    task, version = spec.task_version(config, width)
    return Inventory(
        arch=spec.name, family=spec.family_for_width(width), width=width, task=task, version=version,
        linears=linears, params=params, group_sizes=sizes,
    )  # fmt: skip


def block_index(inv: Inventory, path: str) -> int | None:
    """Global block number of a module/parameter path (counted groups one after the other:
    Hunyuan single block M is ``n_double + M``); None outside the counted blocks."""
    spec = inv.spec
    split = spec.split_block(path)
    if split is None or not split[0].counted:
        return None
    offset = 0
    for group in spec.counted_groups:
        if group is split[0]:
            return offset + split[1]
        offset += inv.group_sizes.get(group.path, 0)
    return None


def block_linear_paths(inv: Inventory) -> list[str]:
    """The block Linears attach patches by default, in model order."""
    spec = inv.spec
    return [name for name in inv.linears if spec.is_patched(name)]


def module_kind(arch: str, path: str) -> str:
    """One of MODULE_KINDS for a module or parameter path of the given architecture."""
    return spec_for_arch(arch).module_kind(path)


def module_counts(arch: str, paths) -> dict[str, int]:
    """How many of ``paths`` are of each kind (self-attn, cross-attn, image cross-attn, ffn, other)."""
    spec = spec_for_arch(arch)
    counts = Counter(spec.module_kind(p) for p in paths)
    return {kind: counts.get(kind, 0) for kind in MODULE_KINDS}
