"""Configs of the tiny embedded models: pure data, no torch (the CLI reads them before
torch is imported).

Widths no real model has (Wan 24, Hunyuan 20), so LoRA files for them are told apart from
real ones, and sizes that are not multiples of 16, so kernels meet ragged shapes.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TINY_TRANSFORMER_CONFIGS",
    "TINY_PIPELINE_KINDS",
    "TINY_PIPELINE_TASKS",
    "TINY_MARKER_FILE",
    "TINY_BUILD",
    "TINY_SEEDS",
    "HUNYUAN_I2V_TRANSFORMER",
    "TINY_TRANSFORMER_CLASSES",
]

# Wan: 2 heads x 12 = width 24, FFN 40. text_dim 32 matches the tiny UMT5 (d_model 32);
# image_dim 32 the tiny CLIP vision tower; added_kv_proj_dim is the width, as in
# Wan 2.1 I2V 14B (5120 -> 5120).
_WAN_BASE: dict[str, Any] = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=256,
    ffn_dim=40,
    num_layers=3,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    # as the real models: rotary tables for 1024 positions per axis, so any frame count or
    # size the CLI accepts (832x480 -> 52 latent columns) runs on the tiny model too
    rope_max_seq_len=1024,
)

TINY_TRANSFORMER_CONFIGS: dict[str, dict[str, Any]] = {
    "wan-t2v": dict(_WAN_BASE),
    # Wan 2.1 I2V: image cross-attention needs both image_dim and added_kv_proj_dim;
    # latent input = 16 noise + 16 image-latent + 4 mask channels = 36 (as the real model).
    "wan-i2v": dict(_WAN_BASE, in_channels=36, image_dim=32, added_kv_proj_dim=24),
    # HunyuanVideo: 2 heads x 10 = width 20, 2 double + 2 single blocks.
    "hunyuan-t2v": dict(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=2,
        num_single_layers=2,
        num_refiner_layers=1,
        mlp_ratio=4.0,
        patch_size=1,
        patch_size_t=1,
        qk_norm="rms_norm",
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_theta=256.0,
        rope_axes_dim=(2, 4, 4),
    ),
}

_HY = TINY_TRANSFORMER_CONFIGS["hunyuan-t2v"]
TINY_TRANSFORMER_CONFIGS.update({
    # Wan VACE: control branch on layers 0 and 2; its input is 16 latent + 16 reactive latent +
    # 64 mask channels (the VAE's 8 x 8 pixels folded into channels) = 96, as the real model.
    "wan-vace": dict(_WAN_BASE, vace_layers=[0, 2], vace_in_channels=96),
    "skyreels-v2": dict(_WAN_BASE),
    # Diffusion Forcing 1.3B injects the fps (inject_sample_info), so the tiny DF model does too
    "skyreels-v2-df": dict(_WAN_BASE, inject_sample_info=True),
    # Wan 2.2 Animate: Wan 2.1 I2V blocks (image k/v), 4 blocks with a face adapter after every
    # second; a motion encoder for 32 px faces.
    "wan-animate": dict(
        _WAN_BASE, num_layers=4, in_channels=36, latent_channels=16, image_dim=32, added_kv_proj_dim=24,
        motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16, "32": 16}, motion_encoder_size=32,
        motion_style_dim=8, motion_dim=4, motion_encoder_dim=16, face_encoder_hidden_dim=16, face_encoder_num_heads=2,
        inject_face_latents_blocks=2,
    ),
    # FramePack: HunyuanVideo's tiny blocks at patch 2 (its history embedders assume it), a
    # SigLIP image projection of the tiny SigLIP tower (hidden 16)
    "framepack": dict(_HY, patch_size=2, has_image_proj=True, image_proj_dim=16, has_clean_x_embedder=True),
    # HunyuanVideo 1.5: 2 heads x 8 = width 16; input 4 noise + 4 image + 1 mask channels;
    # text widths of the tiny Qwen2.5-VL (16) and ByT5 (32) encoders, SigLIP 12
    "hunyuan1.5-t2v": dict(
        in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2, num_refiner_layers=1,
        mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16, text_embed_2_dim=32, image_embed_dim=12,
        # target_size: the I2V pipeline sizes its video from the image, in buckets around it
        rope_axes_dim=(2, 2, 4), target_size=32, task_type="t2v",
    ),
})
TINY_TRANSFORMER_CONFIGS["hunyuan1.5-i2v"] = dict(TINY_TRANSFORMER_CONFIGS["hunyuan1.5-t2v"], task_type="i2v")

# tiny transformer kind -> diffusers class (the Wan and Hunyuan kinds by prefix)
TINY_TRANSFORMER_CLASSES = {
    "wan-vace": "WanVACETransformer3DModel", "skyreels-v2": "SkyReelsV2Transformer3DModel",
    "skyreels-v2-df": "SkyReelsV2Transformer3DModel", "wan-animate": "WanAnimateTransformer3DModel",
    "framepack": "HunyuanVideoFramepackTransformer3DModel", "hunyuan1.5-t2v": "HunyuanVideo15Transformer3DModel",
    "hunyuan1.5-i2v": "HunyuanVideo15Transformer3DModel", "wan-t2v": "WanTransformer3DModel",
    "wan-i2v": "WanTransformer3DModel", "hunyuan-t2v": "HunyuanVideoTransformer3DModel",
}  # fmt: skip

# HunyuanVideo I2V ("latent_concat", as the released I2V model): the transformer reads
# noise latents + image latents + 1 mask channel = 2 * 4 + 1.
HUNYUAN_I2V_TRANSFORMER: dict[str, Any] = dict(
    TINY_TRANSFORMER_CONFIGS["hunyuan-t2v"], in_channels=9, image_condition_type="latent_concat"
)

# kind -> the task it is loaded for (VACE also takes i2v / v2v; Wan Animate runs from Python)
TINY_PIPELINE_TASKS = {
    "wan-t2v": "t2v", "wan-i2v": "i2v", "wan2.2-t2v-a14b": "t2v", "hunyuan-t2v": "t2v", "hunyuan-i2v": "i2v",
    "wan-vace": "t2v", "wan-vace-a14b": "t2v", "skyreels-v2-t2v": "t2v", "skyreels-v2-df": "t2v",
    "wan-animate": "animate", "framepack": "i2v", "hunyuan1.5-t2v": "t2v", "hunyuan1.5-i2v": "i2v",
}  # fmt: skip
TINY_PIPELINE_KINDS = tuple(TINY_PIPELINE_TASKS)
# Written into every tiny pipeline folder: pipelines.model_info reads it, so a tiny folder
# given as a path behaves exactly like --model tiny.
TINY_MARKER_FILE = "vidlora_tiny.json"
# Bump whenever a tiny config or component changes: cached folders of older builds are rebuilt.
TINY_BUILD = 2
# Seeds per component, fixed so that every machine builds byte-identical weights.
TINY_SEEDS = {"transformer": 0, "transformer_2": 1, "vae": 2, "text_encoder": 3, "text_encoder_2": 4, "image_encoder": 5}
