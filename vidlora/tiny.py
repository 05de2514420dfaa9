"""Tiny diffusers transformers built from configs with fixed seeds.

They are real ``WanTransformer3DModel`` / ``HunyuanVideoTransformer3DModel`` instances
with every module kind of the full models (self/cross attention, Wan I2V image
cross-attention, FFN, modulation tables, Hunyuan double and single blocks), only narrow:
widths no real model has (Wan 24, Hunyuan 20), so LoRA files for them are told apart from
real ones, and sizes that are not multiples of 16 so kernels meet ragged shapes.

The embedded tiny *pipelines* (``--model tiny``) are built from these same configs.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "TINY_TRANSFORMER_CONFIGS",
    "tiny_transformer",
    "tiny_transformer_inputs",
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
    rope_max_seq_len=32,
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


def tiny_transformer(kind: str = "wan-t2v", seed: int = 0, dtype: torch.dtype = torch.float32):
    """A tiny transformer of the given kind with weights drawn from ``seed``.

    Every parameter (including biases, norms and modulation tables, which diffusers
    initialises to constants) is redrawn, so no LoRA or delta can pass a test by hitting
    a zero or a one.
    """
    if kind not in TINY_TRANSFORMER_CONFIGS:
        raise ValueError(f"unknown tiny transformer {kind!r}; expected one of {sorted(TINY_TRANSFORMER_CONFIGS)}")
    config = TINY_TRANSFORMER_CONFIGS[kind]
    gen = torch.Generator().manual_seed(seed)
    if kind.startswith("wan"):
        from diffusers import WanTransformer3DModel as cls
    else:
        from diffusers import HunyuanVideoTransformer3DModel as cls
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(**config)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p.shape[-1] if p.ndim >= 2 else 16
            p.copy_(torch.randn(p.shape, generator=gen) * fan_in**-0.5)
    if dtype != torch.float32:
        # Keep diffusers' fp32 modules (norms, modulation tables, rope) in fp32, as
        # from_pretrained(torch_dtype=...) does; a plain .to(dtype) would not.
        keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
        for name, p in model.named_parameters():
            if not keep.intersection(name.split(".")):
                p.data = p.data.to(dtype)
    return model.eval()


def tiny_transformer_inputs(
    kind: str = "wan-t2v", seed: int = 1, batch: int = 1, frames: int = 2, size: int = 8,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Forward kwargs for ``tiny_transformer(kind)``: latents, a timestep, text (and image)
    embeddings, drawn from ``seed``."""
    config = TINY_TRANSFORMER_CONFIGS[kind]
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(shape, generator=gen).to(dtype)

    latents = rnd(batch, config["in_channels"], frames, size, size)
    if kind.startswith("wan"):
        out = dict(
            hidden_states=latents,
            timestep=torch.tensor([500] * batch),
            encoder_hidden_states=rnd(batch, 7, config["text_dim"]),
        )
        if "image_dim" in config:
            out["encoder_hidden_states_image"] = rnd(batch, 5, config["image_dim"])
        return out
    return dict(
        hidden_states=latents,
        timestep=torch.tensor([500] * batch),
        encoder_hidden_states=rnd(batch, 6, config["text_embed_dim"]),
        encoder_attention_mask=torch.ones(batch, 6, dtype=torch.bool),
        pooled_projections=rnd(batch, config["pooled_projection_dim"]),
        guidance=torch.tensor([3500.0] * batch).to(dtype),
    )
