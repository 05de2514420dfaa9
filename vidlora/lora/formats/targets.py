"""Where a producer's module name lands in the diffusers model."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Target"]


@dataclass(frozen=True)
class Target:
    """The diffusers destination of one module name of a LoRA file.

    paths: diffusers module paths (parameter paths when ``is_param``). More than one for
        a fused original module that diffusers splits (Hunyuan qkv, linear1).
    split: how rows of the fused output are cut among ``paths``: None (one path),
        "equal" (qkv: three equal parts), "linear1" (width, width, width, the rest);
        "swap" (one path whose two row halves are swapped: Hunyuan's final
        adaLN_modulation is shift,scale where diffusers' norm_out is scale,shift).
    is_param: the source name is itself a parameter (Wan ``modulation``), so a ``diff``
        on it patches that parameter rather than ``<path>.weight``.
    """

    paths: tuple[str, ...]
    split: str | None = None
    is_param: bool = False
