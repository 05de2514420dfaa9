"""Wan 2.2 Animate 14B (``WanAnimateTransformer3DModel``, ``WanAnimatePipeline``).

``blocks.N`` have the Wan 2.1 I2V 14B layout (image k/v, ``added_kv_proj_dim`` 5120,
``image_dim`` 1280, 36 input channels), so Wan 2.1 I2V LoRAs (lightx2v's 4-6 step distill
LoRAs) and the official relighting LoRA (PEFT, bare original names) apply as is. Extras:

* ``face_adapter.K`` (one per 5 blocks: 8 at 14B), a cross-attention onto the face motion
  signal with ``to_q/to_k/to_v/to_out`` (original ``face_adapter.fuser_blocks.K.linear1_q``,
  fused ``linear1_kv`` = k then v, ``linear2``, ``q_norm`` / ``k_norm``). Patched by
  default (they see every video token); not fused (their processor reads the separate
  projections); outside ``blocks=`` numbering, like the embedders (kept by any ``blocks=``).
* ``face_encoder`` (``out_proj`` is an nn.Linear), ``pose_patch_embedding`` (Conv3d), and a
  motion encoder whose Linears are a custom ``MotionLinear`` (not nn.Linear): a LoRA on
  those is refused by name (vidlora would have to replace a module it does not know).

Wan2.2-Animate-2 (``WanAnimate2Transformer3DModel``) is a different, third naming with no
LoRA ecosystem yet: refused by name (registry.py).
"""

from __future__ import annotations

from typing import Any

from .cp_plans import WAN_ANIMATE_CP
from .names import BlockGroup, NameTable
from .spec import FamilySpec, GroupLayout
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

__all__ = ["WAN_ANIMATE"]

_FACE = {
    "linear1_q": "to_q",
    "linear1_kv": (("to_k", "to_v"), "equal"),
    "linear2": "to_out",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}
_TOP_EXTRA = {
    "pose_patch_embedding": "pose_patch_embedding",
    "face_encoder.out_proj": "face_encoder.out_proj",
    "face_encoder.conv1_local.conv": "face_encoder.conv1_local",
    "face_encoder.conv2.conv": "face_encoder.conv2",
    "face_encoder.conv3.conv": "face_encoder.conv3",
    # MotionLinear modules (not nn.Linear): named so that a LoRA on them is refused by name
    **{f"motion_encoder.enc.fc.{i}": f"motion_encoder.motion_network.{i}" for i in range(8)},
}

ANIMATE_NAMES = NameTable(
    groups=(
        wan_block_group("blocks"),
        BlockGroup(path="face_adapter", original="face_adapter.fuser_blocks", names=_FACE,
                   underscore_aliases={"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out"}),
    ),  # fmt: skip
    top={**WAN_TOP, **_TOP_EXTRA},
    top_params=WAN_TOP_PARAMS,
    top_owner_params={"head": "scale_shift_table"},
)

_ANIMATE_ORIGINAL = r"^(face_adapter\.fuser_blocks\.|face_encoder\.conv\d|motion_encoder\.enc\.)"
_ANIMATE_DIFFUSERS = r"^(face_adapter\.\d+\.|motion_encoder\.motion_network\.)"

_14B = dict(
    WAN_BASE_CONFIG, _class_name="WanAnimateTransformer3DModel", num_attention_heads=40, num_layers=40,
    ffn_dim=13824, in_channels=36, latent_channels=16, image_dim=1280, added_kv_proj_dim=5120,
    motion_encoder_size=512, motion_style_dim=512, motion_dim=20, motion_encoder_dim=512,
    face_encoder_hidden_dim=1024, face_encoder_num_heads=4, inject_face_latents_blocks=5, motion_encoder_batch_size=8,
)  # fmt: skip


def _task_version(config: Any, width: int) -> tuple[str | None, str | None]:
    # Animate is neither T2V nor plain I2V; Wan 2.1 I2V LoRAs are what is applied to it,
    # so neither field is claimed (no spurious "made for 2.1" warnings)
    return None, None


WAN_ANIMATE = FamilySpec(
    name="wan-animate",
    label="Wan 2.2 Animate",
    classes=("WanAnimateTransformer3DModel",),
    names=ANIMATE_NAMES,
    groups=(
        wan_block_layout("blocks"),
        GroupLayout(
            path="face_adapter", counted=False, patched=("to_q", "to_k", "to_v", "to_out"),
            kinds=(("", "cross-attn"),), width_in=("to_q", "to_k", "to_v", "to_out"), context=("to_k", "to_v"),
        ),
    ),  # fmt: skip
    sizes={5120: ("wan-animate-14b", "Wan 2.2 Animate 14B")},
    **WAN_TOP_FACTS,
    fused_processors=("WanAttnProcessor", "WanAttnProcessor2_0"),
    real_configs={"wan2.2-animate-14b": _14B},
    hub_ids={"Wan-AI/Wan2.2-Animate-14B-Diffusers": "wan2.2-animate-14b"},
    task_version=_task_version,
    lora_signals=wan_lora_signals,
    original_hint=f"{ORIGINAL_HINT}|{_ANIMATE_ORIGINAL}",
    diffusers_hint=f"{DIFFUSERS_HINT}|{_ANIMATE_DIFFUSERS}",
    scheme_label=wan_scheme_label,
    lineage="wan",
    fingerprint="Wan I2V blocks plus face_adapter",
    cp_plans={"WanAnimateTransformer3DModel": WAN_ANIMATE_CP},
)
