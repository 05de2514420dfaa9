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

# HunyuanVideo I2V ("latent_concat", as the released I2V model): the transformer reads
# noise latents + image latents + 1 mask channel = 2 * 4 + 1.
HUNYUAN_I2V_TRANSFORMER: dict[str, Any] = dict(
    TINY_TRANSFORMER_CONFIGS["hunyuan-t2v"], in_channels=9, image_condition_type="latent_concat"
)

TINY_PIPELINE_KINDS = ("wan-t2v", "wan-i2v", "wan2.2-t2v-a14b", "hunyuan-t2v", "hunyuan-i2v")
TINY_PIPELINE_TASKS = {kind: ("i2v" if kind.endswith("i2v") else "t2v") for kind in TINY_PIPELINE_KINDS}
# Written into every tiny pipeline folder: pipelines.model_info reads it, so a tiny folder
# given as a path behaves exactly like --model tiny.
TINY_MARKER_FILE = "vidlora_tiny.json"
# Bump whenever a tiny config or component changes: cached folders of older builds are rebuilt.
TINY_BUILD = 2
# Seeds per component, fixed so that every machine builds byte-identical weights.
TINY_SEEDS = {"transformer": 0, "transformer_2": 1, "vae": 2, "text_encoder": 3, "text_encoder_2": 4, "image_encoder": 5}
