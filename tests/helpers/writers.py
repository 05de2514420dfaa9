"""Writing LoRA files in every key scheme from ground truth given in diffusers names.

A :class:`Truth` says what a LoRA does to a diffusers model: per Linear (by module path)
a low-rank / LoHa / LoKr adapter, per parameter path a full additive delta. The writers
turn it into the keys each producer writes (notes/lora-formats.md §2.3, §3.4). Their name
tables run diffusers -> producer and are written here independently of vidlora's readers
(which run producer -> diffusers), so a wrong entry on either side shows up as a
mismatch instead of cancelling out.

    truth = random_truth(model, seed=0, paths=..., deltas=...)
    write_lora(tmp / "x.safetensors", truth, "W2")
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field

import torch
from safetensors.torch import save_file
from torch import nn

__all__ = [
    "LowRankTruth",
    "LoHaTruth",
    "LoKrTruth",
    "Truth",
    "random_truth",
    "write_lora",
    "write_raw",
    "SCHEMES",
    "WAN_SCHEMES",
    "HUNYUAN_SCHEMES",
    "HV15_SCHEMES",
]

WAN_SCHEMES = ("W1", "W2", "W3", "W3b", "W4", "W4b", "W5", "W7")
HUNYUAN_SCHEMES = ("H1", "H2", "H3", "H4", "H5", "H6", "H6-split")
HV15_SCHEMES = ("HV15-musubi", "HV15-tencent", "HV15-tencent-sidecar", "HV15-diffusers", "HV15-comfy")
SCHEMES = WAN_SCHEMES + ("W6", "W-peft", "W-peft-meta", "FP-musubi") + HUNYUAN_SCHEMES + HV15_SCHEMES


# ---------------------------------------------------------------- ground truth
@dataclass
class LowRankTruth:
    down: torch.Tensor  # [r, in] (conv: [r, in, *k])
    up: torch.Tensor  # [out, r] (conv: [out, r, 1, ...])
    alpha: float | None = None
    # DoRA magnitude ([out] or [out, 1]: per output row; [1, in]: per input column). Its
    # effect depends on the base weight, so such a truth has no dense() (vidlora refuses DoRA).
    magnitude: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return 1.0 if not self.alpha else self.alpha / self.rank

    def dense(self) -> torch.Tensor:
        assert self.magnitude is None, "a DoRA truth has no base-independent delta"
        d = self.up.flatten(1).double() @ self.down.flatten(1).double()
        return self.scale * d.reshape(self.up.shape[0], *self.down.shape[1:])


@dataclass
class LoHaTruth:
    w1a: torch.Tensor
    w1b: torch.Tensor
    w2a: torch.Tensor
    w2b: torch.Tensor
    alpha: float | None = None

    def dense(self) -> torch.Tensor:
        scale = 1.0 if not self.alpha else self.alpha / self.w1b.shape[0]
        return scale * (self.w1a.double() @ self.w1b.double()) * (self.w2a.double() @ self.w2b.double())


@dataclass
class LoKrTruth:
    w1: torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # full, or (a, b) factors
    w2: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
    alpha: float | None = None

    def dense(self) -> torch.Tensor:
        def full(w):
            return w[0].double() @ w[1].double() if isinstance(w, tuple) else w.double()

        rank = self.w2[1].shape[0] if isinstance(self.w2, tuple) else (
            self.w1[1].shape[0] if isinstance(self.w1, tuple) else None
        )
        scale = 1.0 if (rank is None or not self.alpha) else self.alpha / rank
        return scale * torch.kron(full(self.w1), full(self.w2))


@dataclass
class Truth:
    """What a LoRA does, in diffusers names of the target model."""

    modules: dict[str, LowRankTruth | LoHaTruth | LoKrTruth] = field(default_factory=dict)
    deltas: dict[str, torch.Tensor] = field(default_factory=dict)

    def param_deltas(self) -> dict[str, torch.Tensor]:
        """Every parameter path -> its total additive delta (fp64), the merge reference's input."""
        out: dict[str, torch.Tensor] = {}
        for path, adapter in self.modules.items():
            out[f"{path}.weight"] = adapter.dense()
        for path, d in self.deltas.items():
            out[path] = out[path] + d.double() if path in out else d.double()
        return out


_HUNYUAN_FUSED_GROUPS = (
    (r"^(face_adapter\.\d+)\.to_[kv]$", ("to_k", "to_v")),  # Wan Animate's fused linear1_kv
    (r"^(transformer_blocks\.\d+)\.attn\.to_[qkv]$", ("attn.to_q", "attn.to_k", "attn.to_v")),
    (r"^(transformer_blocks\.\d+)\.attn\.add_[qkv]_proj$", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
    (r"^(single_transformer_blocks\.\d+)\.(attn\.to_[qkv]|proj_mlp)$", ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")),
    (
        r"^(context_embedder\.token_refiner\.refiner_blocks\.\d+)\.attn\.to_[qkv]$",
        ("attn.to_q", "attn.to_k", "attn.to_v"),
    ),
)


def _fused_group(path: str) -> str | None:
    """The fused original module a Hunyuan diffusers Linear is a piece of, if any."""
    for pattern, members in _HUNYUAN_FUSED_GROUPS:
        m = re.match(pattern, path)
        if m:
            return f"{m.group(1)}:{'/'.join(members)}"
    return None


def random_truth(
    model: nn.Module,
    seed: int,
    paths: list[str],
    deltas: list[str] = (),
    rank: int = 4,
    alpha: float | None = None,
    share_fused_down: bool = False,
    delta_scale: float = 0.05,
) -> Truth:
    """Non-identity random LoRAs on ``paths`` (Linear or Conv module paths) and full
    deltas on the ``deltas`` parameter paths. Ranks vary per module (rank, rank+1,
    rank+2) unless ``share_fused_down``: then Hunyuan's fused siblings (q/k/v, linear1's
    four pieces) share one A and alpha, the natural form of a fused original LoRA."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    truth = Truth()
    shared: dict[str, torch.Tensor] = {}
    for i, path in enumerate(paths):
        mod = model.get_submodule(path)
        w = mod.weight
        r = rank if share_fused_down else rank + i % 3
        fan_in = math.prod(w.shape[1:])
        group = _fused_group(path) if share_fused_down else None
        if group is not None and group in shared:
            down = shared[group]
        else:
            down = torch.randn(r, *w.shape[1:], generator=gen) * fan_in**-0.5
            if group is not None:
                shared[group] = down
        up = torch.randn(w.shape[0], r, *([1] * (w.ndim - 2)), generator=gen) * 0.3
        truth.modules[path] = LowRankTruth(down, up, alpha)
    for path in deltas:
        truth.deltas[path] = torch.randn(params[path].shape, generator=gen) * delta_scale
    return truth


# ---------------------------------------------------------------- name tables (diffusers -> producer)
_WAN_INNER = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q", "attn2.norm_k": "cross_attn.norm_k",
    "attn2.add_k_proj": "cross_attn.k_img", "attn2.add_v_proj": "cross_attn.v_img",
    "attn2.norm_added_k": "cross_attn.norm_k_img",
    "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
    # the cross-attention LayerNorm is norm3 in the original code, norm2 in diffusers
    "norm2": "norm3", "norm3": "norm2", "norm1": "norm1",
}
_WAN_TOP = {
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
    "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
    "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
    "proj_out": "head.head",
    "patch_embedding": "patch_embedding",
}


_WAN_TOP.update({
    # SkyReels V2 (inject_sample_info)
    "fps_projection.net.0.proj": "fps_projection.0", "fps_projection.net.2": "fps_projection.2",
    # Wan VACE / Wan Animate top-level modules (same name in both namings)
    "vace_patch_embedding": "vace_patch_embedding", "pose_patch_embedding": "pose_patch_embedding",
    "face_encoder.out_proj": "face_encoder.out_proj",
})
_VACE_INNER = {"proj_in": "before_proj", "proj_out": "after_proj"}  # VACE's control-branch projections
# Wan Animate face adapter: diffusers inner -> (original inner, index in a fused module, pieces)
_FACE_INNER = {"to_q": ("linear1_q", None, 1), "to_k": ("linear1_kv", 0, 2), "to_v": ("linear1_kv", 1, 2),
               "to_out": ("linear2", None, 1), "norm_q": ("q_norm", None, 1), "norm_k": ("k_norm", None, 1)}


def _wan_fused(path: str) -> tuple[str, int | None, int]:
    """(original module, index within a fused original or None, pieces) of a Wan-family path."""
    m = re.match(r"^face_adapter\.(\d+)\.(.+)$", path)
    if m:
        inner, idx, n = _FACE_INNER[m.group(2)]
        return f"face_adapter.fuser_blocks.{m.group(1)}.{inner}", idx, n
    return _wan_module(path), None, 1


def _wan_module(path: str) -> str:
    m = re.match(r"^(blocks|vace_blocks)\.(\d+)\.(.+)$", path)
    if m:
        inner = m.group(3)
        if m.group(1) == "vace_blocks" and inner in _VACE_INNER:
            return f"vace_blocks.{m.group(2)}.{_VACE_INNER[inner]}"
        return f"{m.group(1)}.{m.group(2)}.{_WAN_INNER[inner]}"
    if path.startswith("face_adapter."):
        original, idx, _ = _wan_fused(path)
        assert idx is None, f"{path} is a piece of fused {original}: written by the fused writer"
        return original
    return _WAN_TOP[path]


# HunyuanVideo: diffusers inner -> (Tencent name, ComfyUI name, index in the fused module)
_HY_DOUBLE = {
    "attn.to_q": ("img_attn_qkv", "img_attn.qkv", 0), "attn.to_k": ("img_attn_qkv", "img_attn.qkv", 1),
    "attn.to_v": ("img_attn_qkv", "img_attn.qkv", 2),
    "attn.add_q_proj": ("txt_attn_qkv", "txt_attn.qkv", 0), "attn.add_k_proj": ("txt_attn_qkv", "txt_attn.qkv", 1),
    "attn.add_v_proj": ("txt_attn_qkv", "txt_attn.qkv", 2),
    "attn.to_out.0": ("img_attn_proj", "img_attn.proj", None),
    "attn.to_add_out": ("txt_attn_proj", "txt_attn.proj", None),
    "ff.net.0.proj": ("img_mlp.fc1", "img_mlp.0", None), "ff.net.2": ("img_mlp.fc2", "img_mlp.2", None),
    "ff_context.net.0.proj": ("txt_mlp.fc1", "txt_mlp.0", None), "ff_context.net.2": ("txt_mlp.fc2", "txt_mlp.2", None),
    "norm1.linear": ("img_mod.linear", "img_mod.lin", None),
    "norm1_context.linear": ("txt_mod.linear", "txt_mod.lin", None),
    "attn.norm_q": ("img_attn_q_norm", "img_attn.norm.query_norm", None),
    "attn.norm_k": ("img_attn_k_norm", "img_attn.norm.key_norm", None),
    "attn.norm_added_q": ("txt_attn_q_norm", "txt_attn.norm.query_norm", None),
    "attn.norm_added_k": ("txt_attn_k_norm", "txt_attn.norm.key_norm", None),
}
_HY_SINGLE = {
    "attn.to_q": ("linear1", "linear1", 0), "attn.to_k": ("linear1", "linear1", 1),
    "attn.to_v": ("linear1", "linear1", 2), "proj_mlp": ("linear1", "linear1", 3),
    "proj_out": ("linear2", "linear2", None),
    "norm.linear": ("modulation.linear", "modulation.lin", None),
    "attn.norm_q": ("q_norm", "norm.query_norm", None), "attn.norm_k": ("k_norm", "norm.key_norm", None),
}
_HY_REFINER = {
    "attn.to_q": ("self_attn_qkv", "self_attn.qkv", 0), "attn.to_k": ("self_attn_qkv", "self_attn.qkv", 1),
    "attn.to_v": ("self_attn_qkv", "self_attn.qkv", 2),
    "attn.to_out.0": ("self_attn_proj", "self_attn.proj", None),
    "ff.net.0.proj": ("mlp.fc1", "mlp.0", None), "ff.net.2": ("mlp.fc2", "mlp.2", None),
    "norm_out.linear": ("adaLN_modulation.1", "adaLN_modulation.1", None),
    "norm1": ("norm1", "norm1", None), "norm2": ("norm2", "norm2", None),
}
_HY_TOP = {
    "proj_out": ("final_layer.linear", "final_layer.linear", None),
    "norm_out.linear": ("final_layer.adaLN_modulation.1", "final_layer.adaLN_modulation.1", None),
    "x_embedder.proj": ("img_in.proj", "img_in.proj", None),
    "time_text_embed.timestep_embedder.linear_1": ("time_in.mlp.0", "time_in.in_layer", None),
    "time_text_embed.timestep_embedder.linear_2": ("time_in.mlp.2", "time_in.out_layer", None),
    "time_text_embed.guidance_embedder.linear_1": ("guidance_in.mlp.0", "guidance_in.in_layer", None),
    "time_text_embed.guidance_embedder.linear_2": ("guidance_in.mlp.2", "guidance_in.out_layer", None),
    "time_text_embed.text_embedder.linear_1": ("vector_in.in_layer", "vector_in.in_layer", None),
    "time_text_embed.text_embedder.linear_2": ("vector_in.out_layer", "vector_in.out_layer", None),
    "context_embedder.proj_in": ("txt_in.input_embedder", "txt_in.input_embedder", None),
    "context_embedder.time_text_embed.timestep_embedder.linear_1": ("txt_in.t_embedder.mlp.0", "txt_in.t_embedder.in_layer", None),
    "context_embedder.time_text_embed.timestep_embedder.linear_2": ("txt_in.t_embedder.mlp.2", "txt_in.t_embedder.out_layer", None),
    "context_embedder.time_text_embed.text_embedder.linear_1": ("txt_in.c_embedder.linear_1", "txt_in.c_embedder.in_layer", None),
    "context_embedder.time_text_embed.text_embedder.linear_2": ("txt_in.c_embedder.linear_2", "txt_in.c_embedder.out_layer", None),
}
_SWAPPED = "norm_out.linear"  # Tencent final adaLN emits (shift, scale); diffusers (scale, shift)


def _hunyuan_module(path: str, comfy: bool) -> tuple[str, int | None, int]:
    """(original module, index within a fused module or None, number of fused pieces)."""
    for pattern, prefix, table in (
        (r"^transformer_blocks\.(\d+)\.(.+)$", "double_blocks.{}.", _HY_DOUBLE),
        (r"^single_transformer_blocks\.(\d+)\.(.+)$", "single_blocks.{}.", _HY_SINGLE),
        (r"^context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.(.+)$", "txt_in.individual_token_refiner.blocks.{}.", _HY_REFINER),
    ):
        m = re.match(pattern, path)
        if m:
            tencent, comfy_name, idx = table[m.group(2)]
            n = 4 if tencent == "linear1" else (3 if idx is not None else 1)
            return prefix.format(m.group(1)) + (comfy_name if comfy else tencent), idx, n
    tencent, comfy_name, idx = _HY_TOP[path]
    return (comfy_name if comfy else tencent), idx, 1


# HunyuanVideo 1.5: diffusers -> Tencent original (separate q/k/v; no fused module in the blocks)
_HY15_DOUBLE = {
    "attn.to_q": "img_attn_q", "attn.to_k": "img_attn_k", "attn.to_v": "img_attn_v",
    "attn.add_q_proj": "txt_attn_q", "attn.add_k_proj": "txt_attn_k", "attn.add_v_proj": "txt_attn_v",
    "attn.to_out.0": "img_attn_proj", "attn.to_add_out": "txt_attn_proj",
    "ff.net.0.proj": "img_mlp.fc1", "ff.net.2": "img_mlp.fc2", "ff_context.net.0.proj": "txt_mlp.fc1",
    "ff_context.net.2": "txt_mlp.fc2", "norm1.linear": "img_mod.linear", "norm1_context.linear": "txt_mod.linear",
    "attn.norm_q": "img_attn_q_norm", "attn.norm_k": "img_attn_k_norm",
    "attn.norm_added_q": "txt_attn_q_norm", "attn.norm_added_k": "txt_attn_k_norm",
}
_HY15_TOP = {
    "proj_out": "final_layer.linear", "norm_out.linear": "final_layer.adaLN_modulation.1", "x_embedder.proj": "img_in.proj",
    "time_embed.timestep_embedder.linear_1": "time_in.mlp.0", "time_embed.timestep_embedder.linear_2": "time_in.mlp.2",
    "context_embedder.proj_in": "txt_in.input_embedder",
    "context_embedder.time_text_embed.timestep_embedder.linear_1": "txt_in.t_embedder.mlp.0",
    "context_embedder_2.linear_1": "byt5_in.fc1", "context_embedder_2.linear_2": "byt5_in.fc2",
    "context_embedder_2.linear_3": "byt5_in.fc3", "image_embedder.linear_1": "vision_in.proj.1",
    "image_embedder.linear_2": "vision_in.proj.3",
}


def _hy15_module(path: str) -> str:
    m = re.match(r"^transformer_blocks\.(\d+)\.(.+)$", path)
    if m:
        return f"double_blocks.{m.group(1)}.{_HY15_DOUBLE[m.group(2)]}"
    m = re.match(r"^context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.(.+)$", path)
    if m:  # the refiner's non-fused modules (its q/k/v are fused as in 1.0)
        inner = {"attn.to_out.0": "self_attn_proj", "ff.net.0.proj": "mlp.fc1", "ff.net.2": "mlp.fc2",
                 "norm_out.linear": "adaLN_modulation.1"}[m.group(2)]
        return f"txt_in.individual_token_refiner.blocks.{m.group(1)}.{inner}"
    return _HY15_TOP[path]


# ---------------------------------------------------------------- scheme layout
@dataclass(frozen=True)
class _Layout:
    prefix: str
    names: str  # "wan-original" | "wan-underscored" | "diffusers" | "hy-tencent" | "hy-comfy" | "hy-underscored" | "hy-diffusers-underscored" | "hy-split"
    down: str
    up: str
    alpha: str  # "key" | "always" | "metadata" | "sidecar" | "bake"
    deltas: str  # "diff" | "lora_bias" | "none"


_LAYOUTS = {
    "W1": _Layout("diffusion_model.", "wan-original", ".lora_A.weight", ".lora_B.weight", "key", "diff"),
    "W2": _Layout("diffusion_model.", "wan-original", ".lora_down.weight", ".lora_up.weight", "key", "diff"),
    "W3": _Layout("lora_unet_", "wan-underscored", ".lora_down.weight", ".lora_up.weight", "always", "diff"),
    "W3b": _Layout("lora_unet__", "wan-underscored", ".lora_down.weight", ".lora_up.weight", "always", "diff"),
    "W4": _Layout("transformer.", "diffusers", ".lora_A.weight", ".lora_B.weight", "metadata", "lora_bias"),
    "W4b": _Layout("base_model.model.", "wan-original", ".lora_A.weight", ".lora_B.weight", "sidecar", "none"),
    "W5": _Layout("", "wan-original", ".lora_A.default.weight", ".lora_B.default.weight", "bake", "diff"),
    "W7": _Layout("lycoris_", "wan-lycoris", ".lora_down.weight", ".lora_up.weight", "key", "none"),
    "H1": _Layout("diffusion_model.", "hy-tencent", ".lora_A.weight", ".lora_B.weight", "bake", "diff"),
    "H2": _Layout("lora_unet_", "hy-underscored", ".lora_down.weight", ".lora_up.weight", "always", "diff"),
    "H3": _Layout("Hunyuan_video_I2V_lora_", "hy-underscored", ".lora_down.weight", ".lora_up.weight", "always", "diff"),
    "H4": _Layout("diffusion_model.", "hy-comfy", ".lora_down.weight", ".lora_up.weight", "key", "diff"),
    "H5": _Layout("transformer.", "diffusers", ".lora_A.weight", ".lora_B.weight", "metadata", "lora_bias"),
    "H6": _Layout("lora_transformer_", "hy-diffusers-underscored", ".lora_down.weight", ".lora_up.weight", "always", "none"),
    "H6-split": _Layout("transformer.", "hy-split", ".lora_down.weight", ".lora_up.weight", "key", "none"),
    # PEFT save_pretrained on the original Wan model (Wan 2.2 Animate relighting LoRA): bare names,
    # alpha in adapter_config.json beside adapter_model.safetensors ("W-peft") or in the header
    "W-peft": _Layout("", "wan-original", ".lora_A.weight", ".lora_B.weight", "sidecar", "none"),
    "W-peft-meta": _Layout("", "wan-original", ".lora_A.weight", ".lora_B.weight", "metadata", "none"),
    # musubi-tuner networks.lora_framepack: kohya prefix over diffusers names, alpha always
    "FP-musubi": _Layout("lora_unet_", "diffusers-underscored", ".lora_down.weight", ".lora_up.weight", "always", "none"),
    # HunyuanVideo 1.5
    "HV15-musubi": _Layout("lora_unet_", "hy15-underscored", ".lora_down.weight", ".lora_up.weight", "always", "none"),
    "HV15-tencent": _Layout("", "hy15-original", ".lora_A.weight", ".lora_B.weight", "metadata", "none"),
    "HV15-tencent-sidecar": _Layout("", "hy15-original", ".lora_A.weight", ".lora_B.weight", "sidecar", "none"),
    "HV15-diffusers": _Layout("transformer.", "diffusers", ".lora_A.weight", ".lora_B.weight", "metadata", "lora_bias"),
    "HV15-comfy": _Layout("diffusion_model.", "hy15-original", ".lora_down.weight", ".lora_up.weight", "key", "diff"),
}


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # a copy: safetensors refuses tensors that share memory (a shared A written twice)
    return t.detach().to(dtype).clone().contiguous()


class _Writer:
    def __init__(self, layout: _Layout, dtype: torch.dtype):
        self.layout, self.dtype = layout, dtype
        self.out: dict[str, torch.Tensor] = {}

    def put(self, key: str, t: torch.Tensor) -> None:
        assert key not in self.out, f"writer produced {key} twice"
        self.out[self.layout.prefix + key] = _cast(t, self.dtype)

    def lora(self, module: str, down, up, alpha, magnitude=None) -> None:
        lay = self.layout
        if lay.alpha == "bake":
            up, alpha = up * (alpha / down.shape[0] if alpha else 1.0), None
        elif lay.alpha == "always" and alpha is None:
            alpha = float(down.shape[0])
        self.put(module + lay.down, down)
        self.put(module + lay.up, up)
        if alpha is not None and lay.alpha in ("key", "always"):
            self.put(module + ".alpha", torch.tensor(float(alpha)))
        if magnitude is not None:  # PEFT/diffusers name it lora_magnitude_vector, LyCORIS/kohya dora_scale
            self.put(module + (".lora_magnitude_vector" if lay.names == "diffusers" else ".dora_scale"), magnitude)


def _module_name(layout: _Layout, path: str) -> str:
    if layout.names == "wan-original":
        return _wan_module(path)
    if layout.names == "wan-underscored":
        return _wan_module(path).replace(".", "_")
    if layout.names == "wan-lycoris":
        # ai-toolkit's half-converted names: original attention prefix, diffusers leaves
        name = _wan_module(path).replace(".", "_")
        name = re.sub(r"_ffn_0$", "_ffn_net_0_proj", name)
        name = re.sub(r"_ffn_2$", "_ffn_net_2", name)
        return re.sub(r"_attn_o$", "_attn_to_out_0", name)
    if layout.names == "diffusers":
        return path
    if layout.names in ("hy-diffusers-underscored", "diffusers-underscored"):
        return path.replace(".", "_")
    if layout.names in ("hy15-original", "hy15-underscored"):
        name = _hy15_module(path)
        return name.replace(".", "_") if layout.names == "hy15-underscored" else name
    raise AssertionError(layout.names)


def _write_fused_pieces(w: _Writer, fused: dict[str, dict[int, "LowRankTruth"]], sizes: dict[str, int], name_of) -> None:
    """Siblings of one fused original module written as one LoRA, exactly: A = the pieces'
    A stacked, B block-diagonal with each piece's scale baked in, alpha = total rank."""
    for original, pieces in fused.items():
        n = sizes[original]
        assert len(pieces) == n, f"{original}: give every fused piece"
        first = pieces[0]
        if all(torch.equal(p.down, first.down) and p.alpha == first.alpha for p in pieces.values()):
            w.lora(name_of(original), first.down, torch.cat([pieces[i].up for i in range(n)]), first.alpha)
            continue
        outs = [pieces[i].up.shape[0] for i in range(n)]
        total_r = sum(p.rank for p in pieces.values())
        up = torch.zeros(sum(outs), total_r)
        col = 0
        for i in range(n):
            p = pieces[i]
            row = sum(outs[:i])
            up[row : row + outs[i], col : col + p.rank] = p.scale * p.up
            col += p.rank
        alpha = float(total_r) if w.layout.alpha != "bake" else None
        w.lora(name_of(original), torch.cat([pieces[i].down for i in range(n)]), up, alpha)


def _write_wan_like(w: _Writer, truth: Truth) -> None:
    lay = w.layout
    fused: dict[str, dict[int, LowRankTruth]] = {}
    sizes: dict[str, int] = {}
    swap = lay.names.startswith("hy15-")  # HunyuanVideo 1.5's final adaLN halves, as 1.0's
    for path, adapter in truth.modules.items():
        if lay.names.startswith("wan-"):
            original, idx, n = _wan_fused(path)
            if idx is not None:
                assert isinstance(adapter, LowRankTruth), "fused originals take plain LoRA ground truth"
                fused.setdefault(original, {})[idx] = adapter
                sizes[original] = n
                continue
        name = _module_name(lay, path)
        if isinstance(adapter, LowRankTruth):
            up = adapter.up
            if swap and path == _SWAPPED:
                up = torch.cat([up[up.shape[0] // 2 :], up[: up.shape[0] // 2]])
            w.lora(name, adapter.down, up, adapter.alpha, adapter.magnitude)
        elif isinstance(adapter, LoHaTruth):
            for role in ("w1a", "w1b", "w2a", "w2b"):
                w.put(f"{name}.hada_{role[:2]}_{role[2]}", getattr(adapter, role))
            if adapter.alpha is not None:
                w.put(f"{name}.alpha", torch.tensor(float(adapter.alpha)))
        else:
            for n, factor in (("1", adapter.w1), ("2", adapter.w2)):
                if isinstance(factor, tuple):
                    w.put(f"{name}.lokr_w{n}_a", factor[0])
                    w.put(f"{name}.lokr_w{n}_b", factor[1])
                else:
                    w.put(f"{name}.lokr_w{n}", factor)
            if adapter.alpha is not None:
                w.put(f"{name}.alpha", torch.tensor(float(adapter.alpha)))
    underscored = lay.names in ("wan-underscored", "wan-lycoris")
    _write_fused_pieces(w, fused, sizes, lambda o: o.replace(".", "_") if underscored else o)
    for ppath, delta in truth.deltas.items():
        mpath, _, attr = ppath.rpartition(".")
        if lay.deltas == "lora_bias":
            adapter = truth.modules.get(mpath)
            assert attr == "bias" and isinstance(adapter, LowRankTruth), f"{ppath}: only lora_B.bias in diffusers files"
            w.put(f"{mpath}.lora_B.bias", delta / adapter.scale)
            continue
        assert lay.deltas == "diff", f"scheme cannot carry full-tensor deltas ({ppath})"
        if swap and mpath == _SWAPPED:
            delta = torch.cat([delta[delta.shape[0] // 2 :], delta[: delta.shape[0] // 2]])
        # modulation tables: blocks.N.diff_m / head.diff_m (LightX2V / kijai)
        m = re.match(r"^((?:vace_)?blocks)\.(\d+)\.scale_shift_table$", ppath)
        if m or ppath == "scale_shift_table":
            owner = f"{m.group(1)}.{m.group(2)}" if m else "head"
            w.put(f"{owner.replace('.', '_') if lay.names == 'wan-underscored' else owner}.diff_m", delta)
            continue
        suffix = {"weight": ".diff", "bias": ".diff_b"}[attr]
        w.put(_module_name(lay, mpath) + suffix, delta)


def _write_hunyuan_original(w: _Writer, truth: Truth, comfy: bool, underscored: bool) -> None:
    """Hunyuan's original fused modules: siblings sharing one A are written as one fused
    LoRA (A, B stacked by rows); otherwise exactly as A = [A_i stacked], B block-diagonal
    with each piece's scale baked in and alpha = total rank (scale 1)."""
    fused: dict[str, dict[int, LowRankTruth]] = {}
    sizes: dict[str, int] = {}

    def name_of(original: str) -> str:
        return original.replace(".", "_") if underscored else original

    for path, adapter in truth.modules.items():
        assert isinstance(adapter, LowRankTruth), "Hunyuan writers take plain LoRA ground truth"
        original, idx, n = _hunyuan_module(path, comfy)
        up = adapter.up
        if path == _SWAPPED:
            half = up.shape[0] // 2
            up = torch.cat([up[half:], up[:half]])
        if idx is None:
            w.lora(name_of(original), adapter.down, up, adapter.alpha, adapter.magnitude)
        else:
            assert adapter.magnitude is None, "DoRA on a fused piece: write the fused module's magnitude via extra="
            fused.setdefault(original, {})[idx] = LowRankTruth(adapter.down, up, adapter.alpha)
            sizes[original] = n
    for original, pieces in fused.items():
        n = sizes[original]
        first = pieces[min(pieces)]
        same = len(pieces) == n and all(
            p.down is first.down or torch.equal(p.down, first.down) and p.alpha == first.alpha for p in pieces.values()
        )
        if same:
            up = torch.cat([pieces[i].up for i in range(n)])
            w.lora(name_of(original), first.down, up, first.alpha)
            continue
        downs = []
        out_sizes = [None] * n
        for i, p in pieces.items():
            out_sizes[i] = p.up.shape[0]
        width = first.down.shape[1]
        for i in range(n):
            if out_sizes[i] is None:  # a missing piece: q/k/v are width rows, linear1's MLP is not inferable
                assert i < 3, f"{original}: the MLP piece of linear1 must be present to write it fused"
                out_sizes[i] = width
        total_r = sum(p.rank for p in pieces.values())
        up = torch.zeros(sum(out_sizes), total_r)
        col = 0
        for i in range(n):
            if i not in pieces:
                continue
            p = pieces[i]
            row = sum(out_sizes[:i])
            up[row : row + out_sizes[i], col : col + p.rank] = p.scale * p.up
            downs.append(p.down)
            col += p.rank
        alpha = float(total_r) if w.layout.alpha != "bake" else None
        w.lora(name_of(original), torch.cat(downs), up, alpha)
    # full-tensor deltas, fused rows concatenated (missing siblings are zero rows)
    fused_deltas: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    for ppath, delta in truth.deltas.items():
        mpath, _, attr = ppath.rpartition(".")
        original, idx, n = _hunyuan_module(mpath, comfy)
        suffix = {"weight": ".diff", "bias": ".diff_b"}[attr]
        if mpath == _SWAPPED:
            half = delta.shape[0] // 2
            delta = torch.cat([delta[half:], delta[:half]])
        if idx is None:
            w.put(name_of(original) + suffix, delta)
        else:
            fused_deltas.setdefault((original, suffix), {})[idx] = delta
            sizes[original] = n
    for (original, suffix), pieces in fused_deltas.items():
        n = sizes[original]
        assert len(pieces) == n, f"{original}{suffix}: give the delta of every fused piece"
        w.put(name_of(original) + suffix, torch.cat([pieces[i] for i in range(n)]))


def _write_hunyuan_split(w: _Writer, truth: Truth) -> None:
    """OneTrainer's split-index form: each fused piece its own LoRA, ``<fused>.<i>``."""
    for path, adapter in truth.modules.items():
        original, idx, _ = _hunyuan_module(path, comfy=True)
        up = adapter.up
        if path == _SWAPPED:
            half = up.shape[0] // 2
            up = torch.cat([up[half:], up[:half]])
        name = original if idx is None else f"{original}.{idx}"
        w.lora(name, adapter.down, up, adapter.alpha)
    assert not truth.deltas, "H6 files carry no full-tensor deltas"


def _peft_metadata(truth: Truth) -> dict | None:
    alphas = {p: a.alpha for p, a in truth.modules.items() if isinstance(a, LowRankTruth)}
    if all(a is None for a in alphas.values()):
        return None
    assert all(a is not None for a in alphas.values()), "metadata alpha needs an alpha for every module"
    ranks = {p: truth.modules[p].rank for p in alphas}
    common_r = max(set(ranks.values()), key=list(ranks.values()).count)
    common_a = max(set(alphas.values()), key=list(alphas.values()).count)
    return {
        "r": common_r,
        "lora_alpha": common_a,
        "rank_pattern": {p: r for p, r in ranks.items() if r != common_r},
        "alpha_pattern": {p: a for p, a in alphas.items() if a != common_a},
        "use_rslora": False,
        "use_dora": False,
        "target_modules": sorted(alphas),
    }


def _render(truth: Truth, scheme: str, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict | None]:
    layout = _LAYOUTS[scheme]
    w = _Writer(layout, dtype)
    if layout.names.startswith("hy-") and layout.names not in ("hy-diffusers-underscored",):
        if layout.names == "hy-split":
            _write_hunyuan_split(w, truth)
        else:
            _write_hunyuan_original(
                w, truth, comfy=layout.names == "hy-comfy", underscored=layout.names == "hy-underscored"
            )
    else:
        _write_wan_like(w, truth)
    peft = _peft_metadata(truth) if layout.alpha in ("metadata", "sidecar") else None
    return w.out, peft


def write_lora(
    path: str | os.PathLike,
    truth: Truth,
    scheme: str,
    dtype: torch.dtype = torch.float32,
    metadata: dict[str, str] | None = None,
    experts: dict[str, Truth] | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> str:
    """Write ``truth`` as a file of ``scheme`` (one of SCHEMES). For "W6" pass
    ``experts={"high": truth_hi, "low": truth_lo}`` (``truth`` is then ignored).
    ``extra``: raw keys added as is (for refusal and bad-input tests)."""
    path = os.fspath(path)
    meta = dict(metadata or {})
    if scheme == "W6":
        tensors = {}
        for expert, part in (experts or {}).items():
            sub = {"high": "transformer_1.", "low": "transformer_2."}[expert]
            rendered, _ = _render(part, "W1", dtype)
            tensors.update({"diffusion_model." + sub + k[len("diffusion_model.") :]: v for k, v in rendered.items()})
    else:
        tensors, peft = _render(truth, scheme, dtype)
        if peft is not None and _LAYOUTS[scheme].alpha == "metadata":
            meta["lora_adapter_metadata"] = json.dumps({f"transformer.{k}": v for k, v in peft.items()})
        if peft is not None and _LAYOUTS[scheme].alpha == "sidecar":
            with open(os.path.join(os.path.dirname(path), "adapter_config.json"), "w") as f:
                json.dump(peft, f)
    tensors.update(extra or {})
    return write_raw(path, tensors, meta)


def write_raw(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    path = os.fspath(path)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=metadata or None)
    return path
