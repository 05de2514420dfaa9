"""Benchmark subjects: real-shaped transformers with random weights, their inputs, LoRA files.

Scenarios are named after the videos they stand for (diffusers' benchmarks use the same
Wan 2.1 14B case: 832x480, 81 frames, latent 1x16x21x60x104 = 32,760 tokens). Weights are
random (no checkpoint can be downloaded here, and speed and memory do not depend on the
values); the dtype layout follows ``from_pretrained(torch_dtype=...)``: diffusers'
``_keep_in_fp32_modules`` (Wan's norms, modulation tables, time embedder) stay fp32.

LoRA files are written in the diffusers/PEFT key scheme (``transformer.<module>.lora_A.weight``,
no alpha, so the scale is 1 for both readers), which diffusers' ``load_lora_weights`` and
``vidlora.read_lora`` both read, so the two libraries load the very same file.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "Scenario",
    "SCENARIOS",
    "CPU_QUICK",
    "random_transformer",
    "scenario_inputs",
    "pipeline_shell",
    "block_linears",
    "write_lora_file",
]


@dataclass(frozen=True)
class Scenario:
    """One forward pass: which model, at which video size.

    ``layers``: blocks kept (None: all); ``latent``: (C, T, H, W) of the latent video;
    ``text_tokens``: length of the text embedding the transformer reads.
    """

    name: str
    config: str  # a vidlora.families.REAL_CONFIGS name
    label: str
    latent: tuple[int, int, int, int]
    text_tokens: int
    layers: int | None = None

    @property
    def tokens(self) -> int:
        """Video tokens after the 1x2x2 patchify (Wan and HunyuanVideo alike)."""
        _, t, h, w = self.latent
        return t * (h // 2) * (w // 2)


def _wan21_latent(channels: int, width: int, height: int, frames: int) -> tuple[int, int, int, int]:
    # Wan 2.1 VAE: 8x spatial, 4x temporal compression (first frame kept), 16 channels
    return (channels, (frames - 1) // 4 + 1, height // 8, width // 8)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("wan2.1-14b-480p-81f", "wan2.1-t2v-14b", "Wan 2.1 T2V 14B, 832x480, 81 frames",
                 _wan21_latent(16, 832, 480, 81), 512),
        Scenario("wan2.1-i2v-14b-480p-81f", "wan2.1-i2v-14b-480p", "Wan 2.1 I2V 14B, 832x480, 81 frames",
                 _wan21_latent(36, 832, 480, 81), 512),
        Scenario("wan2.1-1.3b-480p-81f", "wan2.1-t2v-1.3b", "Wan 2.1 T2V 1.3B, 832x480, 81 frames",
                 _wan21_latent(16, 832, 480, 81), 512),
        # Wan 2.2 VAE: 16x spatial, 4x temporal, 48 channels; the 5B model's own 720p size
        Scenario("wan2.2-5b-704p-121f", "wan2.2-ti2v-5b", "Wan 2.2 TI2V 5B, 1280x704, 121 frames",
                 (48, 31, 44, 80), 512),
        # HunyuanVideo at 960x544 x 33 frames: a 720p x 129-frame forward (~20 s on an
        # H100) does not fit a lent GPU's 10-minute command next to everything else
        Scenario("hunyuan-544p-33f", "hunyuan-video-t2v", "HunyuanVideo T2V, 960x544, 33 frames",
                 _wan21_latent(16, 960, 544, 33), 256),
    )
}  # fmt: skip

# The CPU stand-in: Wan 1.3B layer shapes (width 1536, FFN 8960), 2 of its 30 blocks,
# 256 video tokens and 64 text tokens: one forward takes ~1 s on one core.
CPU_QUICK = Scenario(
    "wan2.1-1.3b-cpu-quick", "wan2.1-t2v-1.3b",
    "Wan 1.3B-shaped, 2 of 30 blocks, 256 tokens (CPU stand-in, not a real video size)",
    (16, 2, 16, 32), 64, layers=2,
)  # fmt: skip


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def random_transformer(
    config: str,
    *,
    layers: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
) -> torch.nn.Module:
    """A diffusers transformer of a REAL_CONFIGS shape with random weights, built on ``device``.

    Parameters are created directly in ``dtype`` on the device (a Wan 14B never exists in
    fp32: 56 GB), then diffusers' fp32 modules are upcast as ``from_pretrained`` keeps them.
    ``layers`` keeps that many blocks (HunyuanVideo: double blocks; single blocks 2x).
    """
    import diffusers

    from vidlora.model import REAL_CONFIGS

    cfg = dict(REAL_CONFIGS[config])
    cls = getattr(diffusers, cfg.pop("_class_name"))
    if layers is not None:
        cfg["num_layers"] = layers
        if "num_single_layers" in cfg:
            cfg["num_single_layers"] = 2 * layers
    with torch.random.fork_rng(devices=[]), torch.device(device), _default_dtype(dtype):
        torch.manual_seed(seed)
        if torch.device(device).type == "cuda":
            torch.cuda.manual_seed(seed)
        model = cls(**cfg)
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    for name, p in model.named_parameters():
        if keep.intersection(name.split(".")):
            p.data = p.data.float()
    return model.eval().requires_grad_(False)


def scenario_inputs(
    scenario: Scenario, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16, seed: int = 1
) -> dict[str, Any]:
    """Forward kwargs of one denoising step (batch 1) at the scenario's size."""
    from vidlora.model import REAL_CONFIGS

    cfg = REAL_CONFIGS[scenario.config]
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)

    c, t, h, w = scenario.latent
    if c != cfg["in_channels"]:
        raise ValueError(f"{scenario.name}: latent has {c} channels, {scenario.config} reads {cfg['in_channels']}")
    out: dict[str, Any] = dict(
        hidden_states=rnd(1, c, t, h, w),
        timestep=torch.tensor([500], device=device),
        encoder_hidden_states=rnd(1, scenario.text_tokens, cfg.get("text_dim") or cfg["text_embed_dim"]),
        return_dict=False,
    )
    if cfg.get("image_dim"):
        out["encoder_hidden_states_image"] = rnd(1, 257, cfg["image_dim"])  # CLIP ViT-H: 256 patches + CLS
    if "num_single_layers" in cfg:  # HunyuanVideo
        out["encoder_attention_mask"] = torch.ones(1, scenario.text_tokens, dtype=torch.bool, device=device)
        out["pooled_projections"] = rnd(1, cfg["pooled_projection_dim"])
        out["guidance"] = torch.tensor([6000.0], device=device, dtype=dtype)  # guidance 6.0, x1000 as diffusers passes it
    return out


def pipeline_shell(model: torch.nn.Module):
    """A real diffusers pipeline holding only ``model``: its ``load_lora_weights``,
    ``set_adapters``, ``delete_adapters``, ``fuse_lora`` are the calls users make."""
    if type(model).__name__.startswith("HunyuanVideo"):
        from diffusers import HunyuanVideoPipeline

        return HunyuanVideoPipeline(
            text_encoder=None, tokenizer=None, transformer=model, vae=None, scheduler=None,
            text_encoder_2=None, tokenizer_2=None,
        )  # fmt: skip
    from diffusers import WanPipeline

    return WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None, transformer=model)


def block_linears(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """{module path: (in_features, out_features)} of the block Linears vidlora patches."""
    from vidlora.model import block_linear_paths, inventory

    inv = inventory(model)
    return {p: (inv.linears[p].in_features, inv.linears[p].out_features) for p in block_linear_paths(inv)}


def write_lora_file(
    path: str | os.PathLike,
    model: torch.nn.Module,
    *,
    rank: int = 32,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
) -> str:
    """A random rank-``rank`` LoRA over every block Linear of ``model``, diffusers/PEFT keys.

    A ~ N(0, 1/K), B ~ N(0, 1/r) x 0.1: non-zero on both sides (a zero B would make
    every LoRA path a no-op); the delta is ~17% of a default-initialised W, large enough that
    bf16 rounding does not hide it when the swap benchmark compares outputs.
    """
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for module, (k, n) in block_linears(model).items():
        tensors[f"transformer.{module}.lora_A.weight"] = (torch.randn(rank, k, generator=gen) * k**-0.5).to(dtype)
        tensors[f"transformer.{module}.lora_B.weight"] = (torch.randn(n, rank, generator=gen) * 0.1 * rank**-0.5).to(dtype)
    path = os.fspath(path)
    save_file(tensors, path)
    return path
