"""Tiny diffusers transformers built from configs with fixed seeds (test fixtures and the
tiny pipelines' transformers).

They are real ``WanTransformer3DModel`` / ``HunyuanVideoTransformer3DModel`` instances
with every module kind of the full models (self/cross attention, Wan I2V image
cross-attention, FFN, modulation tables, Hunyuan double and single blocks), only narrow.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .configs import TINY_SEEDS, TINY_TRANSFORMER_CLASSES, TINY_TRANSFORMER_CONFIGS

__all__ = ["tiny_transformer", "tiny_transformer_inputs", "randomized", "seeded"]


def tiny_transformer(kind: str = "wan-t2v", seed: int = 0, dtype: torch.dtype = torch.float32):
    """A tiny transformer of the given kind with weights drawn from ``seed``.

    Every parameter (including biases, norms and modulation tables, which diffusers
    initialises to constants) is redrawn, so no LoRA or delta can pass a test by hitting
    a zero or a one.
    """
    if kind not in TINY_TRANSFORMER_CONFIGS:
        raise ValueError(f"unknown tiny transformer {kind!r}; expected one of {sorted(TINY_TRANSFORMER_CONFIGS)}")
    import diffusers

    cls = getattr(diffusers, TINY_TRANSFORMER_CLASSES[kind])
    return randomized(cls, TINY_TRANSFORMER_CONFIGS[kind], seed, dtype)


def randomized(cls, config: dict[str, Any], seed: int, dtype: torch.dtype = torch.float32):
    """``cls(**config)`` with every parameter redrawn from ``seed`` (fan-in scaled)."""
    gen = torch.Generator().manual_seed(seed)
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


@contextlib.contextmanager
def seeded(component: str):
    """Draw torch's global RNG from the component's fixed seed (TINY_SEEDS) inside the
    block and restore it after: modules that initialise themselves (text encoders, the
    VAE) come out identical on every machine."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEEDS[component])
        yield
