"""The registered model families, and lookups over them.

A new family is one spec module added to ``FAMILIES`` (order matters only where two
families could claim one LoRA file: the first wins).
"""

from __future__ import annotations

from vidlora.errors import LoRAMismatchError

from .hunyuan_video import HUNYUAN_VIDEO
from .spec import FamilySpec
from .wan import WAN

__all__ = ["FAMILIES", "spec_for_arch", "spec_for_model", "spec_for_class", "family_label"]

FAMILIES: tuple[FamilySpec, ...] = (WAN, HUNYUAN_VIDEO)
_BY_ARCH = {spec.name: spec for spec in FAMILIES}


def spec_for_arch(arch: str) -> FamilySpec:
    """The spec of an arch name ("wan", "hunyuan-video")."""
    try:
        return _BY_ARCH[arch]
    except KeyError:
        raise LoRAMismatchError(f"unknown model family {arch!r}; known: {', '.join(_BY_ARCH)}") from None


def spec_for_class(class_name: str) -> FamilySpec | None:
    """The spec covering a diffusers transformer class name, None when none does."""
    return next((spec for spec in FAMILIES if class_name in spec.classes), None)


def spec_for_model(model) -> FamilySpec:
    """The spec of a diffusers transformer (its class or a base class is listed)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the module
    for cls in type(model).__mro__:
        spec = spec_for_class(cls.__name__)
        if spec is not None:
            return spec
    classes = " or ".join(c for spec in FAMILIES for c in spec.classes)
    raise LoRAMismatchError(
        f"model class {type(model).__name__} is not supported: expected a diffusers {classes} (pass pipe.transformer)"
    )


def family_label(family: str) -> str:
    """Human name of a family id: "Wan 14B", "HunyuanVideo", "Wan" for unnamed widths."""
    arch = family.split(" (", 1)[0]
    for spec in FAMILIES:
        if family in (fid for fid, _ in spec.sizes.values()) or arch == spec.name:
            return spec.family_label(family)
    return arch
