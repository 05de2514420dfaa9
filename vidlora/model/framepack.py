"""FramePack (``HunyuanVideoFramepackTransformer3DModel``, ``HunyuanVideoFramepackPipeline``):
lllyasviel's FramePack I2V and FramePack-F1 on HunyuanVideo.

HunyuanVideo's layers, names and shapes (20 double + 40 single blocks at width 3072), so
HunyuanVideo T2V LoRAs in every HunyuanVideo scheme apply as is. Extras: ``image_projection``
(``up`` / ``down``, SigLIP image features) and ``clean_x_embedder`` (the history latents'
patch embeddings at 1x / 2x / 4x). FramePack's own checkpoints use diffusers names, and
musubi-tuner's ``networks.lora_framepack`` trains on those blocks with kohya underscores
(``lora_unet_transformer_blocks_0_attn_to_q``), norms excluded.

Strength schedules: the pipeline samples the video section by section, each section a
full denoising run (its own ``set_timesteps``), so a schedule restarts in every section:
step i of the section's ``num_inference_steps``, the same curve in each section.
"""

from __future__ import annotations

from typing import Any

from .hunyuan_video import (
    DIFFUSERS_HINT,
    DOUBLE_LAYOUT,
    HUNYUAN_BASE_CONFIG,
    HUNYUAN_NAMES,
    ORIGINAL_HINT,
    REFINER_LAYOUT,
    SINGLE_LAYOUT,
    hunyuan_scheme_label,
)
from .cp_plans import FRAMEPACK_CP
from .names import NameTable
from .spec import FamilySpec

__all__ = ["FRAMEPACK"]

_EXTRA = {n: n for n in ("image_projection.up", "image_projection.down", "clean_x_embedder.proj",
                         "clean_x_embedder.proj_2x", "clean_x_embedder.proj_4x")}  # fmt: skip

FRAMEPACK_NAMES = NameTable(groups=HUNYUAN_NAMES.groups, top={**HUNYUAN_NAMES.top, **_EXTRA})

_CONFIG = dict(
    HUNYUAN_BASE_CONFIG, _class_name="HunyuanVideoFramepackTransformer3DModel", has_image_proj=True,
    image_proj_dim=1152, has_clean_x_embedder=True,
)  # fmt: skip


def _task_version(config: Any, width: int) -> tuple[str | None, str | None]:
    return "i2v", None  # every FramePack model animates an image


FRAMEPACK = FamilySpec(
    name="framepack",
    label="FramePack",
    classes=("HunyuanVideoFramepackTransformer3DModel",),
    names=FRAMEPACK_NAMES,
    groups=(DOUBLE_LAYOUT, SINGLE_LAYOUT, REFINER_LAYOUT),
    sizes={3072: ("framepack", "FramePack (HunyuanVideo)")},
    top_kinds=(("image_projection.", "image cross-attn"),),
    top_width_in=("proj_out", "norm_out.linear"),
    top_width_out=("image_projection.down",),
    real_configs={"framepack-i2v-hy": _CONFIG, "framepack-f1-i2v-hy": dict(_CONFIG)},
    hub_ids={
        "lllyasviel/FramePackI2V_HY": "framepack-i2v-hy",
        "lllyasviel/FramePack_F1_I2V_HY_20250503": "framepack-f1-i2v-hy",
    },
    task_version=_task_version,
    original_hint=ORIGINAL_HINT,
    diffusers_hint=rf"{DIFFUSERS_HINT}|^(image_projection\.|clean_x_embedder\.)",
    scheme_label=hunyuan_scheme_label,
    lineage="hunyuan-video",
    fingerprint="HunyuanVideo blocks plus image_projection / clean_x_embedder",
    cp_plans={"HunyuanVideoFramepackTransformer3DModel": FRAMEPACK_CP},
)
