"""Tiny transformers of the Wan / HunyuanVideo derived families, built from configs as
diffusers' own model tests do (tests/models/transformers/test_models_transformer_*.py),
every parameter redrawn from a seed, and forward inputs for each.

Widths no real model has (Wan-derived 24, HunyuanVideo-derived 20, HunyuanVideo 1.5 16),
so files for them are told apart from real ones.
"""

from __future__ import annotations

import functools
import copy
from typing import Any

import torch

__all__ = ["FAMILY_CONFIGS", "family_model", "family_inputs", "pristine"]

_WAN: dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16, text_dim=32,
    freq_dim=256, ffn_dim=40, num_layers=3, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
    rope_max_seq_len=1024,
)  # fmt: skip
_HY: dict[str, Any] = dict(
    in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=2, num_single_layers=2,
    num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True, text_embed_dim=16,
    pooled_projection_dim=8, rope_axes_dim=(2, 4, 4),
)  # fmt: skip

# kind -> (diffusers class name, config)
FAMILY_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "wan-vace": ("WanVACETransformer3DModel", dict(_WAN, vace_layers=[0, 2], vace_in_channels=12)),
    "skyreels-v2": ("SkyReelsV2Transformer3DModel", dict(_WAN, inject_sample_info=True)),
    "skyreels-v2-i2v": ("SkyReelsV2Transformer3DModel",
                        dict(_WAN, in_channels=36, image_dim=32, added_kv_proj_dim=24)),  # fmt: skip
    "wan-animate": ("WanAnimateTransformer3DModel", dict(
        _WAN, num_layers=4, in_channels=12, latent_channels=4, out_channels=4, image_dim=16, added_kv_proj_dim=24,
        rope_max_seq_len=32, motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16}, motion_encoder_size=16,
        motion_style_dim=8, motion_dim=4, motion_encoder_dim=16, face_encoder_hidden_dim=16, face_encoder_num_heads=2,
        inject_face_latents_blocks=2,
    )),  # fmt: skip
    "framepack": ("HunyuanVideoFramepackTransformer3DModel",
                  dict(_HY, patch_size=2, has_image_proj=True, image_proj_dim=16, has_clean_x_embedder=True)),
    "hunyuan1.5": ("HunyuanVideo15Transformer3DModel", dict(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2, num_refiner_layers=1,
        mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16, text_embed_2_dim=8, image_embed_dim=12,
        rope_axes_dim=(2, 2, 4), target_size=16, task_type="t2v",
    )),  # fmt: skip
}


@functools.lru_cache(maxsize=None)
def _cached(kind: str, seed: int) -> torch.nn.Module:
    import diffusers

    name, config = FAMILY_CONFIGS[kind]
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(diffusers, name)(**config)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p.shape[-1] if p.ndim >= 2 else 16
            p.copy_(torch.randn(p.shape, generator=gen) * fan_in**-0.5)
    return model.eval()


def family_model(kind: str, seed: int = 0) -> torch.nn.Module:
    """A fresh copy of the tiny model (tests patch theirs)."""
    return copy.deepcopy(_cached(kind, seed))


def pristine(kind: str, seed: int = 0) -> torch.nn.Module:
    """The cached original itself, for read-only uses (merged_stack copies it): never patch it."""
    return _cached(kind, seed)


def family_inputs(kind: str, seed: int = 1) -> dict[str, Any]:
    """Forward kwargs for ``family_model(kind)``."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(shape, generator=gen)

    _, cfg = FAMILY_CONFIGS[kind]
    t = torch.tensor([500])
    if kind == "wan-vace":
        return dict(hidden_states=rnd(1, 16, 2, 8, 8), timestep=t, encoder_hidden_states=rnd(1, 7, 32),
                    control_hidden_states=rnd(1, cfg["vace_in_channels"], 2, 8, 8))  # fmt: skip
    if kind == "skyreels-v2":
        return dict(hidden_states=rnd(1, 16, 2, 8, 8), timestep=t, encoder_hidden_states=rnd(1, 7, 32), fps=[1])
    if kind == "skyreels-v2-i2v":
        return dict(hidden_states=rnd(1, 36, 2, 8, 8), timestep=t, encoder_hidden_states=rnd(1, 7, 32),
                    encoder_hidden_states_image=rnd(1, 5, 32))  # fmt: skip
    if kind == "wan-animate":
        # 5 face frames -> 2 motion frames + 1 pad = 3, which must divide the 3 x 8 x 8 tokens
        return dict(hidden_states=rnd(1, 12, 3, 8, 8), timestep=t, encoder_hidden_states=rnd(1, 7, 32),
                    encoder_hidden_states_image=rnd(1, 5, 16), pose_hidden_states=rnd(1, 4, 2, 8, 8),
                    face_pixel_values=rnd(1, 3, 5, 16, 16))  # fmt: skip
    if kind == "framepack":
        f = 3
        return dict(
            hidden_states=rnd(1, 4, f, 4, 4), timestep=t, encoder_hidden_states=rnd(1, 6, 16),
            pooled_projections=rnd(1, 8), encoder_attention_mask=torch.ones(1, 6), guidance=torch.tensor([3500.0]),
            image_embeds=rnd(1, 6, 16), indices_latents=torch.arange(f), latents_clean=rnd(1, 4, f - 1, 4, 4),
            indices_latents_clean=torch.arange(f - 1), latents_history_2x=rnd(1, 4, f - 1, 4, 4),
            indices_latents_history_2x=torch.arange(f - 1), latents_history_4x=rnd(1, 4, (f - 1) * 4, 4, 4),
            indices_latents_history_4x=torch.arange((f - 1) * 4),
        )  # fmt: skip
    if kind == "hunyuan1.5":
        return dict(
            hidden_states=rnd(1, 4, 1, 8, 8), timestep=torch.tensor([500.0]), encoder_hidden_states=rnd(1, 6, 16),
            encoder_hidden_states_2=rnd(1, 4, 8), encoder_attention_mask=torch.ones(1, 6),
            encoder_attention_mask_2=torch.ones(1, 4), image_embeds=rnd(1, 3, 12),
        )  # fmt: skip
    raise KeyError(kind)
