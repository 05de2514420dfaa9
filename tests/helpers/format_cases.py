"""Shared set-up for the formats tests: tiny models, which modules each scheme's ground
truth covers, and diffusers + PEFT loading of a file into a tiny model."""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from vidlora.app.tiny import tiny_transformer

__all__ = ["tiny", "linear_paths", "wan_truth_spec", "hunyuan_truth_spec", "load_with_diffusers"]


@functools.lru_cache(maxsize=None)
def _tiny(kind: str) -> nn.Module:
    return tiny_transformer(kind)


def tiny(kind: str) -> nn.Module:
    """A fresh copy of the cached tiny model (tests may patch theirs)."""
    return copy.deepcopy(_tiny(kind))


def linear_paths(model: nn.Module, pattern: str = "") -> list[str]:
    return [n for n, m in model.named_modules() if type(m) is nn.Linear and pattern in n]


def wan_truth_spec(model: nn.Module, scheme: str) -> tuple[list[str], list[str]]:
    """(LoRA module paths, full-delta parameter paths) a Wan file of ``scheme`` can carry.

    Every block Linear (image cross-attention included on I2V), plus non-block Linears
    and the patch-embedding convolution where the scheme's producers write them, plus
    norms, biases and modulation tables (diff / diff_b / diff_m) where the scheme has them."""
    params = dict(model.named_parameters())
    paths = linear_paths(model, "blocks.")
    extra_linears = ["proj_out", "condition_embedder.time_proj", "condition_embedder.text_embedder.linear_1"]
    if "condition_embedder.image_embedder.ff.net.0.proj.weight" in params:
        extra_linears.append("condition_embedder.image_embedder.ff.net.0.proj")
    deltas: list[str] = []
    if scheme in ("W1", "W2", "W3", "W3b", "W5"):
        paths += extra_linears
        deltas = [
            "blocks.0.norm2.weight", "blocks.0.norm2.bias", "blocks.1.attn1.norm_q.weight",
            "blocks.2.attn2.norm_k.weight", "blocks.0.attn1.to_q.bias", "blocks.1.ffn.net.2.bias",
            "blocks.0.scale_shift_table", "blocks.2.scale_shift_table", "scale_shift_table",
            "proj_out.bias", "patch_embedding.bias",
        ]
        if "blocks.0.attn2.norm_added_k.weight" in params:
            deltas.append("blocks.0.attn2.norm_added_k.weight")
    if scheme in ("W1", "W2"):
        paths.append("patch_embedding")  # a convolution LoRA
    if scheme == "W4":
        paths += extra_linears
        deltas = ["blocks.0.attn1.to_q.bias", "blocks.2.ffn.net.0.proj.bias", "proj_out.bias"]
    return paths, deltas


def hunyuan_truth_spec(model: nn.Module, scheme: str) -> tuple[list[str], list[str]]:
    """(LoRA module paths, delta paths) for a Hunyuan file of ``scheme``: every block
    Linear (modulation included), the token refiner's attention, the final layer's
    adaLN (the half-swapped one), the head, embedders and the patch convolution."""
    paths = linear_paths(model, "transformer_blocks.")  # double and single blocks
    paths += linear_paths(model, "token_refiner.")
    paths += [
        "norm_out.linear", "proj_out", "time_text_embed.timestep_embedder.linear_1",
        "time_text_embed.guidance_embedder.linear_2", "context_embedder.proj_in",
    ]
    deltas: list[str] = []
    if scheme in ("H1", "H2", "H3", "H4"):
        paths.append("x_embedder.proj")
        deltas = [
            "transformer_blocks.0.attn.to_q.bias", "transformer_blocks.0.attn.to_k.bias",
            "transformer_blocks.0.attn.to_v.bias", "single_transformer_blocks.1.attn.to_q.bias",
            "single_transformer_blocks.1.attn.to_k.bias", "single_transformer_blocks.1.attn.to_v.bias",
            "single_transformer_blocks.1.proj_mlp.bias", "norm_out.linear.bias", "norm_out.linear.weight",
            "transformer_blocks.1.attn.norm_added_q.weight", "single_transformer_blocks.0.attn.norm_k.weight",
            "proj_out.bias",
        ]
    if scheme == "H5":
        deltas = ["transformer_blocks.0.attn.to_q.bias", "single_transformer_blocks.0.proj_mlp.bias"]
    return paths, deltas


def load_with_diffusers(model: nn.Module, path, weights: dict[str, float] | None = None) -> nn.Module:
    """A copy of ``model`` with LoRA files loaded by diffusers' own loader + PEFT: one
    ``path``, or {adapter name: path} stacked with ``set_adapters(names, weights)``."""
    from diffusers.loaders import HunyuanVideoLoraLoaderMixin, SkyReelsV2LoraLoaderMixin, WanLoraLoaderMixin

    name = type(model).__name__
    mixin = (SkyReelsV2LoraLoaderMixin if name.startswith("SkyReels") else
             WanLoraLoaderMixin if name.startswith("Wan") else HunyuanVideoLoraLoaderMixin)  # fmt: skip

    class _Pipe(mixin):  # the smallest object load_lora_weights accepts
        transformer_name = "transformer"
        _lora_loadable_modules = ["transformer"]
        hf_device_map = None
        components: dict = {}

        def __init__(self, transformer):
            self.transformer = transformer

    pipe = _Pipe(copy.deepcopy(model))
    if not isinstance(path, dict):
        pipe.load_lora_weights(path)
        return pipe.transformer
    for name, file in path.items():
        pipe.load_lora_weights(file, adapter_name=name)
    pipe.set_adapters(list(weights), list(weights.values()))
    return pipe.transformer


def round_truth_to(truth, dtype: torch.dtype):
    """Round every ground-truth tensor to ``dtype`` (in place) so that a file stored in
    that dtype holds exactly the truth."""
    for adapter in truth.modules.values():
        for name, value in vars(adapter).items():
            if isinstance(value, torch.Tensor):
                setattr(adapter, name, value.to(dtype).float())
    for key, value in truth.deltas.items():
        truth.deltas[key] = value.to(dtype).float()
    return truth
