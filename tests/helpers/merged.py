"""An independent merged-weights reference: a deep copy of a model with a LoRA's effect
written into its weights, W += s * scale * B @ A and param += s * delta.

It reads only the ground truth (tests/lora_writers.Truth) or the canonical fields of a
LoRAFile (LowRank.down/up/scale, deltas), never vidlora's readers or name tables, so
comparing the two merges checks the reader end to end.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vidlora.lora.lora_file import LoRAFile

__all__ = ["param_deltas_of", "merged", "merged_stack", "assert_same_params"]


def param_deltas_of(source) -> dict[str, torch.Tensor]:
    """parameter path -> total additive delta (fp64) of a Truth or a LoRAFile."""
    if not isinstance(source, LoRAFile):
        return source.param_deltas()
    assert not source.experts, "merge one expert part at a time"
    out: dict[str, torch.Tensor] = {}
    for path, low in source.modules.items():
        out[f"{path}.weight"] = low.scale * (low.up.double() @ low.down.double())
    for path, d in source.deltas.items():
        out[path] = out[path] + d.double() if path in out else d.double()
    return out


def merged(model: nn.Module, source, strength: float = 1.0) -> nn.Module:
    """Deep copy of ``model`` with ``strength`` x the source's deltas merged in."""
    return merged_stack(model, [(source, strength)])


@torch.no_grad()
def merged_stack(model: nn.Module, sources: list) -> nn.Module:
    """Deep copy of ``model`` with every (source, strength) merged in: the deltas are summed
    in fp64 and each parameter is rounded once."""
    ref = copy.deepcopy(model)
    params = dict(ref.named_parameters())
    totals: dict[str, torch.Tensor] = {}
    for source, strength in sources:
        for path, delta in param_deltas_of(source).items():
            assert path in params, f"{path} is not a parameter of the model"
            p = params[path]
            assert tuple(p.shape) == tuple(delta.shape), f"{path}: delta {tuple(delta.shape)} vs parameter {tuple(p.shape)}"
            totals[path] = totals.get(path, 0) + strength * delta
    for path, total in totals.items():
        p = params[path]
        p.copy_((p.double() + total).to(p.dtype))
    return ref


def assert_same_params(a: nn.Module, b: nn.Module, atol: float, rtol: float = 0.0) -> None:
    """Every parameter of two models equal within tolerance; names the ones that differ."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    bad = []
    for name, x in pa.items():
        y = pb[name]
        if not torch.allclose(x.double(), y.double(), atol=atol, rtol=rtol):
            bad.append(f"{name} (max diff {(x.double() - y.double()).abs().max().item():.3g})")
    assert not bad, f"{len(bad)} parameters differ: " + ", ".join(bad[:8])
