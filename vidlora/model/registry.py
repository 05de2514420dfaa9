"""The registered model families, and lookups over them.

A new family is one spec module added to ``FAMILIES``. Order matters where several
families read a LoRA file's names equally well: the first wins unless only a later one
knows the file's hidden width (a plain Wan LoRA reads as Wan, not as Wan VACE, and fits
both; a HunyuanVideo 1.5 LoRA without its distinctive q/k/v keys still reads as 1.5).

``REFUSED``: transformer classes vidlora knows and does not support, with the reason, so
that attach names them instead of failing somewhere inside.
"""

from __future__ import annotations

from vidlora.errors import LoRAMismatchError

from .framepack import FRAMEPACK
from .hunyuan_video import HUNYUAN_VIDEO
from .hunyuan_video15 import HUNYUAN_VIDEO_15
from .skyreels_v2 import SKYREELS_V2
from .spec import FamilySpec
from .wan import WAN
from .wan_animate import WAN_ANIMATE
from .wan_vace import WAN_VACE

__all__ = ["FAMILIES", "REFUSED", "spec_for_arch", "spec_for_model", "spec_for_class", "family_label", "refusal_for"]

FAMILIES: tuple[FamilySpec, ...] = (WAN, WAN_VACE, SKYREELS_V2, WAN_ANIMATE, HUNYUAN_VIDEO, FRAMEPACK, HUNYUAN_VIDEO_15)

REFUSED: dict[str, str] = {
    "WanAnimate2Transformer3DModel": (
        "Wan2.2-Animate-2 (WanAnimate2Transformer3DModel) is not supported: it uses a third naming of its own "
        "(blocks.N.block.*) and has no LoRA ecosystem yet; Wan 2.2 Animate 14B (WanAnimateTransformer3DModel) is"
    ),
}
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


def refusal_for(obj) -> str | None:
    """Why vidlora refuses this model by name (its class or a base class), None otherwise."""
    obj = getattr(obj, "_orig_mod", obj)
    return next((REFUSED[c.__name__] for c in type(obj).__mro__ if c.__name__ in REFUSED), None)


def spec_for_model(model) -> FamilySpec:
    """The spec of a diffusers transformer (its class or a base class is listed)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the module
    refused = refusal_for(model)
    if refused is not None:
        raise LoRAMismatchError(refused)
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
