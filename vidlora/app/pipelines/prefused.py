"""Loading a diffusers transformer with each group of sibling projections (Wan's q/k/v,
cross-attention k/v, image k/v) already in one buffer, written while the file is read.

Why: ``vidlora.attach`` fuses those projections into one GEMM, which needs their weights
concatenated. Loaded by diffusers, they are separate tensors (converted on the way when
the checkpoint's dtype differs from the one asked, as the fp32 Wan-AI Diffusers releases
loaded in bf16), so attach copies them once more: on a Wan 14B block that is 262 MB
(q/k/v + cross k/v in bf16), ~0.1-0.4 s of CPU per block, 40 blocks per model
(benchmarks/loop_bench.py). Here the rows of each group are copied (and converted) from
the memory-mapped safetensors straight into one [sum N, K] tensor, and each Linear's
weight becomes a view of its rows: the file is read once, and an attach that adopts
adjacent row views (see ``loading.runtime_adopts_prefused``) copies nothing.

Everything else loads as diffusers loads it: zero-copy views of the mapped file when the
dtype matches, converted otherwise, ``_keep_in_fp32_modules`` kept in fp32. Only plain
diffusers safetensors folders (one file or an index of shards) are handled; anything else
returns None and the caller uses diffusers' own ``from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["load_prefused_transformer", "fusion_groups"]

_WEIGHTS = "diffusion_pytorch_model.safetensors"
_INDEX = "diffusion_pytorch_model.safetensors.index.json"


def fusion_groups(model) -> list[list[str]]:
    """[[Linear path, ...], ...]: the spec's fusion groups present in ``model`` (meta or
    real), parts in the fused order; the Linears of a group share in_features and bias."""
    from torch import nn

    from vidlora.model import spec_for_class

    spec = next((s for c in type(model).__mro__ if (s := spec_for_class(c.__name__)) is not None), None)
    if spec is None:
        return []
    groups = []
    for name, attn in model.named_modules():
        cross = bool(getattr(attn, "is_cross_attention", False))
        for fusion in spec.fusions_for(name):
            mods = [getattr(attn, p, None) for p in fusion.parts]
            if fusion.cross != cross or not all(type(m) is nn.Linear for m in mods):
                continue
            if len({(m.in_features, m.bias is not None) for m in mods}) != 1:
                continue
            groups.append([f"{name}.{p}" for p in fusion.parts])
    return groups


def load_prefused_transformer(folder: str | Path, dtype: Any, device: Any = "cpu"):
    """The transformer saved in ``folder`` (its own folder: config.json + weights), loaded
    in ``dtype`` on ``device`` with fusion groups in one buffer each; None when the folder
    is not one this loader handles (see the module docstring)."""
    import diffusers
    import torch
    from accelerate import init_empty_weights
    from safetensors import safe_open
    from torch import nn

    folder = Path(folder)
    files = _weight_files(folder)
    config_path = folder / "config.json"
    if files is None or not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    cls = getattr(diffusers, str(config.get("_class_name")), None)
    if cls is None or not hasattr(cls, "from_config"):
        return None
    with init_empty_weights():  # parameters on meta; buffers (rotary tables) built for real
        model = cls.from_config(config)
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    target = {name: (torch.float32 if keep.intersection(name.split(".")) else dtype)
              for name, _ in model.named_parameters()}  # fmt: skip

    # Destinations: each group's weights (and biases) as row views of one tensor.
    views: dict[str, torch.Tensor] = {}
    for paths in fusion_groups(model):
        lins = [model.get_submodule(p) for p in paths]
        for attr in ("weight", "bias"):
            if getattr(lins[0], attr) is None:
                continue
            names = [f"{p}.{attr}" for p in paths]
            if len({target[n] for n in names}) != 1:
                continue
            rows = sum(lin.out_features for lin in lins)
            shape = (rows, lins[0].in_features) if attr == "weight" else (rows,)
            buffer = torch.empty(shape, dtype=target[names[0]], device=device)
            start = 0
            for name, lin in zip(names, lins):
                views[name] = buffer[start : start + lin.out_features]
                start += lin.out_features

    expected = set(target)
    loaded: set[str] = set()
    with torch.no_grad():
        for file in files:
            with safe_open(str(file), framework="pt", device="cpu") as f:
                for key in f.keys():
                    if key not in expected:
                        return None  # a key diffusers would convert or warn about: let it
                    src = f.get_tensor(key)  # a view of the mapped file: no copy yet
                    if key in views:
                        if tuple(src.shape) != tuple(views[key].shape):
                            return None
                        views[key].copy_(src)  # the one pass: file -> fused rows, converted
                        value = views[key]
                    else:
                        value = src.to(device=device, dtype=target[key])  # zero-copy when it matches
                    _set_parameter(model, key, nn.Parameter(value, requires_grad=True))
                    loaded.add(key)
    if loaded != expected:
        return None
    model.register_to_config(_name_or_path=str(folder))
    return model.eval()


def _weight_files(folder: Path) -> list[Path] | None:
    if (folder / _WEIGHTS).is_file():
        return [folder / _WEIGHTS]
    if (folder / _INDEX).is_file():
        weight_map = json.loads((folder / _INDEX).read_text()).get("weight_map") or {}
        files = sorted({folder / name for name in weight_map.values()})
        return files if files and all(f.is_file() for f in files) else None
    return None


def _set_parameter(model, key: str, value) -> None:
    module_path, _, name = key.rpartition(".")
    module = model.get_submodule(module_path) if module_path else model
    module._parameters[name] = value
