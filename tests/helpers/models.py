"""Model-side helpers: Linear paths of a model, random canonical (non-identity) LoRAs for it,
running a transformer, state snapshots. The merged-weights reference is helpers.merged."""

from __future__ import annotations

import torch
from torch import nn

from vidlora.lora.lora_file import LoRAFile, LowRank


def linear_paths(model: nn.Module, blocks_only: bool = True) -> list[str]:
    out = []
    for name, m in model.named_modules():
        if type(m) is nn.Linear and (not blocks_only or "blocks." in name):
            out.append(name)
    return out


def random_lora(
    model: nn.Module,
    seed: int,
    family: str,
    rank: int | dict = 4,
    alpha: float | None = None,
    paths: list[str] | None = None,
    deltas: list[str] = (),
    name: str = "lora",
    delta_scale: float = 0.05,
) -> LoRAFile:
    """A non-identity canonical LoRA over ``paths`` (default: every block Linear) plus
    full-tensor deltas for the parameter paths in ``deltas``."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    paths = linear_paths(model) if paths is None else paths
    modules = {}
    for i, p in enumerate(paths):
        lin = model.get_submodule(p)
        r = rank[p] if isinstance(rank, dict) else (rank + i % 3 if rank > 2 else rank)
        down = torch.randn(r, lin.in_features, generator=gen) * lin.in_features**-0.5
        up = torch.randn(lin.out_features, r, generator=gen) * 0.3
        scale = 1.0 if alpha is None else alpha / r
        modules[p] = LowRank(down=down, up=up, alpha=alpha, scale=scale)
    full = {}
    for d in deltas:
        full[d] = torch.randn(params[d].shape, generator=gen) * delta_scale
    return LoRAFile(
        path=f"/virtual/{name}.safetensors",
        scheme="test (canonical)",
        arch="wan" if family.startswith("wan") else "hunyuan-video",
        family=family,
        width=int(next(iter(modules.values())).in_features) if modules else 0,
        modules=modules,
        deltas=full,
        dtype=torch.float32,
    )


def run(model: nn.Module, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


def state_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
