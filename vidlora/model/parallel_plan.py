"""How a family's transformer is cut along the token axis for context parallelism.

Plain data, no diffusers import (the runtime turns a :class:`CPPlan` into diffusers'
``ContextParallelInput`` / ``ContextParallelOutput`` objects). The shape is diffusers'
``_cp_plan``: module path -> how to split that module's inputs or outputs, or how to gather
its output. ``""`` is the transformer itself; ``"blocks.0"`` the first block.

    {"rope": {0: Split(1, 4, output=True), 1: Split(1, 4, output=True)},
     "blocks.0": {"hidden_states": Split(1, 3)},
     "proj_out": Gather(1, 3)}

A family whose diffusers class already carries a ``_cp_plan`` (Wan) says
``model_plan=True`` instead of copying it. A family that attends over text and video
tokens jointly inside one attention call (HunyuanVideo) says ``joint_text=True``: only the
video tokens are split, the text stream stays whole on every rank, and the runtime's joint
attention processor head-slices it (diffusers' templated Ulysses cannot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

__all__ = ["Split", "Gather", "CPPlan", "ModulePlan", "patched_tokens", "config_value"]


@dataclass(frozen=True)
class Split:
    """Cut a tensor into equal pieces along ``dim`` (one per rank). ``ndim``: the rank the
    tensor must have (others pass unsplit, as diffusers does). ``output``: cut the module's
    output number ``key`` instead of its input named ``key``."""

    dim: int
    ndim: int | None = None
    output: bool = False


@dataclass(frozen=True)
class Gather:
    """All-gather a module's output along ``dim`` (every rank gets the whole sequence)."""

    dim: int
    ndim: int | None = None


# module path -> {input name | output index: Split (or a tuple of them, for list inputs)} | Gather
ModulePlan = Mapping[str, Union[Mapping[Union[str, int], Union[Split, tuple]], Gather, tuple]]


@dataclass(frozen=True)
class CPPlan:
    """Context parallelism facts of one transformer class.

    plan: the split/gather points, or config -> them (a gather after the last block needs
        the block count); ignored when ``model_plan``.
    model_plan: use the diffusers class's own ``_cp_plan``.
    joint_text: text and video tokens meet in one attention call (HunyuanVideo): the
        runtime installs its joint processor on every attention module under ``joint_under``.
    joint_under: the block containers whose attention modules attend jointly.
    local_attention: attention modules (paths, one ``*`` over a block list) that must keep
        no parallel config: their processors would otherwise send keys that every rank
        holds whole (text in cross-attention) or per-frame through Ulysses.
    tokens: (config, forward inputs by name) -> the number of tokens that are split, which
        must divide by the number of ranks.
    check: (config, forward inputs, ranks) -> why this call cannot be split, or None (a
        rule beyond the token count, e.g. whole latent frames per rank).
    refuse: (config, ring degree) -> why this configuration cannot be split, or None.
    """

    plan: ModulePlan | Callable[[Any], ModulePlan] = field(default_factory=dict)
    model_plan: bool = False
    joint_text: bool = False
    joint_under: tuple[str, ...] = ()
    local_attention: tuple[str, ...] = ()
    tokens: Callable[[Any, Mapping[str, Any]], int] = lambda config, inputs: 0
    check: Callable[[Any, Mapping[str, Any], int], str | None] = lambda config, inputs, ranks: None
    refuse: Callable[[Any, int], str | None] = lambda config, ring: None

    def module_plan(self, config: Any) -> ModulePlan:
        return self.plan(config) if callable(self.plan) else self.plan


def config_value(config: Any, key: str, default: Any = None) -> Any:
    """``config[key]`` of a diffusers config object or a plain dict."""
    return config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)


def patched_tokens(shape: tuple[int, ...], patch: tuple[int, int, int]) -> int:
    """Video tokens of a latent [B, C, F, H, W] cut into (t, h, w) patches."""
    frames, height, width = shape[-3:]
    return (frames // patch[0]) * (height // patch[1]) * (width // patch[2])
