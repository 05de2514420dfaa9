"""SkyReels V2 (``SkyReelsV2Transformer3DModel``): T2V, I2V, FLF2V and Diffusion Forcing
models, 1.3B and 14B, 540P / 720P (Skywork's own diffusers ports).

Wan's blocks, names and shapes (the original checkpoints use Wan's original names), so
every Wan LoRA scheme applies as is; ``fps_embedding`` / ``fps_projection`` (original
``fps_projection.0`` / ``.2``) exist when ``inject_sample_info`` (DF-1.3B). Its attention
(``SkyReelsV2AttnProcessor``) reads ``to_qkv`` / ``to_kv`` / ``to_added_kv`` when
``fused_projections`` is set, so q/k/v are fused units as on Wan.

Strength schedules on the Diffusion Forcing pipelines are refused by name: they denoise
frames at different noise levels in one transformer call (per-frame timesteps) with one
scheduler copy per frame, so no single "step i of n" exists for a strength to follow.
Constant strengths work there; schedules work on the T2V / I2V pipelines.
"""

from __future__ import annotations

from typing import Any

from .cp_plans import SKYREELS_V2_CP
from .names import NameTable
from .spec import FamilySpec
from .wan import (
    DIFFUSERS_HINT,
    ORIGINAL_HINT,
    WAN_BASE_CONFIG,
    WAN_TOP,
    WAN_TOP_FACTS,
    WAN_TOP_PARAMS,
    wan_block_group,
    wan_block_layout,
    wan_lora_signals,
    wan_scheme_label,
)

__all__ = ["SKYREELS_V2"]

_FPS = {"fps_projection.0": "fps_projection.net.0.proj", "fps_projection.2": "fps_projection.net.2",
        "fps_embedding": "fps_embedding"}  # fmt: skip

SKYREELS_NAMES = NameTable(
    groups=(wan_block_group("blocks"),),
    top={**WAN_TOP, **_FPS},
    top_params=WAN_TOP_PARAMS,
    top_owner_params={"head": "scale_shift_table"},
)

_DF = "Diffusion Forcing denoises every frame at its own noise level (per-frame timesteps, one scheduler per frame)"
_SCHEDULE_REFUSED = {
    name: f"{name}: {_DF}, so a step schedule has no single step to follow; use a constant strength"
    for name in (
        "SkyReelsV2DiffusionForcingPipeline",
        "SkyReelsV2DiffusionForcingImageToVideoPipeline",
        "SkyReelsV2DiffusionForcingVideoToVideoPipeline",
    )
}


def _task_version(config: Any, width: int) -> tuple[str | None, str | None]:
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    if get("image_dim", None) is not None:
        return "i2v", None
    return ("t2v" if get("in_channels", None) == 16 else None), None


_BASE = dict(WAN_BASE_CONFIG, _class_name="SkyReelsV2Transformer3DModel", inject_sample_info=False)
_1_3B = dict(_BASE, num_attention_heads=12, num_layers=30, ffn_dim=8960)
_14B = dict(_BASE, num_attention_heads=40, num_layers=40, ffn_dim=13824)


def _i2v(base: dict, flf: bool = False) -> dict:
    width = base["num_attention_heads"] * 128
    out = dict(base, in_channels=36, image_dim=1280, added_kv_proj_dim=width)
    return dict(out, pos_embed_seq_len=514) if flf else out


# Skywork/SkyReels-V2-<name>-Diffusers (configs of diffusers' convert_skyreelsv2_to_diffusers.py)
_RELEASED = {
    "DF-1.3B-540P": dict(_1_3B, inject_sample_info=True),
    "DF-14B-540P": _14B, "DF-14B-720P": _14B, "T2V-14B-540P": _14B, "T2V-14B-720P": _14B,
    "I2V-1.3B-540P": _i2v(_1_3B), "I2V-14B-540P": _i2v(_14B), "I2V-14B-720P": _i2v(_14B),
    "FLF2V-1.3B-540P": _i2v(_1_3B, True), "FLF2V-14B-540P": _i2v(_14B, True), "FLF2V-14B-720P": _i2v(_14B, True),
}  # fmt: skip

SKYREELS_V2 = FamilySpec(
    name="skyreels-v2",
    label="SkyReels V2",
    classes=("SkyReelsV2Transformer3DModel",),
    names=SKYREELS_NAMES,
    groups=(wan_block_layout("blocks"),),
    sizes={1536: ("skyreels-v2-1.3b", "SkyReels V2 1.3B"), 5120: ("skyreels-v2-14b", "SkyReels V2 14B")},
    top_kinds=(("fps_projection.", "other"),),
    top_width_in=(*WAN_TOP_FACTS["top_width_in"], "fps_projection.net.0.proj", "fps_projection.net.2"),
    top_width_out=WAN_TOP_FACTS["top_width_out"],
    top_width_params=WAN_TOP_FACTS["top_width_params"],
    top_image=WAN_TOP_FACTS["top_image"],
    fused_processors=("SkyReelsV2AttnProcessor", "SkyReelsV2AttnProcessor2_0"),
    real_configs={f"skyreels-v2-{k.lower()}": dict(v) for k, v in _RELEASED.items()},
    hub_ids={f"Skywork/SkyReels-V2-{k}-Diffusers": f"skyreels-v2-{k.lower()}" for k in _RELEASED},
    task_version=_task_version,
    lora_signals=wan_lora_signals,
    original_hint=rf"{ORIGINAL_HINT}|^fps_projection\.[02]($|\.)",
    diffusers_hint=rf"{DIFFUSERS_HINT}|^fps_projection\.net\.",
    scheme_label=wan_scheme_label,
    lineage="wan",
    fingerprint="Wan blocks plus fps_projection",
    schedule_refused=_SCHEDULE_REFUSED,
    cp_plans={"SkyReelsV2Transformer3DModel": SKYREELS_V2_CP},
)
