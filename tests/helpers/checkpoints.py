"""Model checkpoints for the extraction tests: a tiny model's state dict saved in diffusers
names, as a single file in original names (Wan original / Tencent Hunyuan with fused qkv
and linear1, ComfyUI fp8-scaled), or as a pipeline folder; and a tuned copy with a known
low-rank delta. The original names come from the writers' own diffusers -> producer
tables (helpers/writers.py), not from vidlora's."""

from __future__ import annotations

import json
import os
import re

import torch
from safetensors.torch import save_file

from .writers import _SWAPPED, _hunyuan_module, _wan_module

__all__ = ["original_state_dict", "with_low_rank_delta", "save", "save_pipeline", "fp8_scaled"]

_WAN_PARAMS = {"scale_shift_table": "head.modulation", "condition_embedder.image_embedder.pos_embed": "img_emb.emb_pos"}


def _wan_key(path: str) -> str | None:
    m = re.match(r"^blocks\.(\d+)\.scale_shift_table$", path)
    if m:
        return f"blocks.{m.group(1)}.modulation"
    if path in _WAN_PARAMS:
        return _WAN_PARAMS[path]
    module, _, attr = path.rpartition(".")
    try:
        return f"{_wan_module(module)}.{attr}"
    except KeyError:
        return None


def original_state_dict(state: dict[str, torch.Tensor], arch: str, prefix: str = "model.diffusion_model.") -> dict:
    """A diffusers state dict in the original checkpoint's names (Hunyuan pieces fused by
    rows, the final adaLN's halves swapped back); names the tables lack are left out."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[int, torch.Tensor]] = {}
    sizes: dict[str, int] = {}
    for path, t in state.items():
        if arch == "wan":
            key = _wan_key(path)
            if key is not None:
                out[prefix + key] = t
            continue
        module, _, attr = path.rpartition(".")
        try:
            original, idx, n = _hunyuan_module(module, comfy=False)
        except KeyError:
            continue
        if module == _SWAPPED:
            half = t.shape[0] // 2
            t = torch.cat([t[half:], t[:half]])
        if idx is None:
            out[f"{prefix}{original}.{attr}"] = t
        else:
            fused.setdefault(f"{prefix}{original}.{attr}", {})[idx] = t
            sizes[f"{prefix}{original}.{attr}"] = n
    for key, pieces in fused.items():
        assert len(pieces) == sizes[key], key
        out[key] = torch.cat([pieces[i] for i in range(sizes[key])])
    return out


def with_low_rank_delta(state: dict[str, torch.Tensor], rank: int, seed: int, scale: float = 0.02,
                        match: str = "blocks.") -> tuple[dict, dict]:  # fmt: skip
    """(tuned state, {param: delta}): every 2-D ``.weight`` whose path contains ``match``
    gets a random exact-rank-``rank`` delta; one bias and one norm get full deltas."""
    gen = torch.Generator().manual_seed(seed)
    tuned, truth = dict(state), {}
    for k, v in state.items():
        if v.ndim == 2 and k.endswith(".weight") and match in k:
            d = scale * (torch.randn(v.shape[0], rank, generator=gen) @ torch.randn(rank, v.shape[1], generator=gen))
            d = d / v.shape[1] ** 0.5
            tuned[k], truth[k] = v + d, d
    for k in [k for k in state if k.endswith(".bias") and match in k][:1] + [k for k in state if "norm" in k][:1]:
        d = 0.01 * torch.randn(state[k].shape, generator=gen)
        tuned[k], truth[k] = state[k] + d, d
    return tuned, truth


def save(path, state: dict[str, torch.Tensor], metadata: dict | None = None) -> str:
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, os.fspath(path), metadata=metadata)
    return os.fspath(path)


def fp8_scaled(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ComfyUI's fp8_scaled form: 2-D weights as float8_e4m3fn with a per-tensor
    ``scale_weight`` and the ``scaled_fp8`` marker; the rest as is."""
    out = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for k, v in state.items():
        if v.ndim == 2 and k.endswith(".weight"):
            scale = v.abs().max().float() / 448.0
            out[k] = (v.float() / scale).to(torch.float8_e4m3fn)
            out[k[: -len("weight")] + "scale_weight"] = scale.reshape(1)
        else:
            out[k] = v
    return out


def dequantized(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What an fp8_scaled state dict stands for, in fp32."""
    out = {}
    for k, v in state.items():
        if k == "scaled_fp8" or k.endswith(".scale_weight"):
            continue
        scale = state.get(k[: -len("weight")] + "scale_weight") if k.endswith(".weight") else None
        out[k] = v.float() * scale.float() if scale is not None else v.float()
    return out


def save_pipeline(folder, parts: dict[str, dict[str, torch.Tensor]], config: dict) -> str:
    """A diffusers pipeline folder: model_index.json and one transformer folder per part
    (``transformer``, ``transformer_2``), weights sharded in two with an index."""
    os.makedirs(folder, exist_ok=True)
    index = {"_class_name": "WanPipeline", **{name: ["diffusers", config["_class_name"]] for name in parts}}
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump(index, f)
    for name, state in parts.items():
        sub = os.path.join(folder, name)
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "config.json"), "w") as f:
            json.dump(config, f)
        keys = sorted(state)
        halves = {"diffusion_pytorch_model-00001-of-00002.safetensors": keys[: len(keys) // 2],
                  "diffusion_pytorch_model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}  # fmt: skip
        for file, ks in halves.items():
            save(os.path.join(sub, file), {k: state[k] for k in ks})
        with open(os.path.join(sub, "diffusion_pytorch_model.safetensors.index.json"), "w") as f:
            json.dump({"weight_map": {k: file for file, ks in halves.items() for k in ks}}, f)
    return os.fspath(folder)
