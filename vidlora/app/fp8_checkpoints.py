"""Loading Wan transformers that are already FP8 on disk, without a round trip through bf16.

ComfyUI / kijai "fp8_e4m3fn_scaled" single files (e.g.
``wan2.1_t2v_14B_fp8_e4m3fn_scaled.safetensors``) hold the original Wan names, Linear
weights in float8_e4m3fn, a per-layer ``<module>.scale_weight`` (the real weight is
W8 * scale_weight; notes/lora-formats.md §1.5) and a marker tensor ``scaled_fp8``.

    model = vidlora.load_fp8_scaled_wan("wan2.1_t2v_14B_fp8_e4m3fn_scaled.safetensors")
    pipe = WanPipeline.from_pretrained("Wan-AI/Wan2.1-T2V-14B-Diffusers", transformer=model, ...)
    h = vidlora.attach(pipe)        # the FP8 block weights are used as stored

The DiT-block Linears keep their FP8 bytes and scales (the scale becomes a
``weight_scale`` buffer that ``attach`` picks up); ``attach`` is required before running
the model, since a plain ``nn.Linear`` cannot multiply FP8 weights. FP8 weights outside the
blocks (embedders, head: ~1% of the parameters) are dequantized into the compute dtype.
The transformer config is read from the tensor shapes (width, blocks, FFN, channels,
image branch), so no config file is needed. Only safetensors is read; nothing is
unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vidlora.errors import LoRAFormatError
from vidlora.model import block_linear_paths, inventory
from vidlora.model.wan import HEAD_DIM, WAN_NAMES, config_from_original_shapes

__all__ = ["load_fp8_scaled_wan"]



def _to_diffusers(key: str) -> str | None:
    """An original Wan state-dict key -> the diffusers parameter name (None: unknown)."""
    target = WAN_NAMES.translate_original(key)  # whole-key parameters: modulation, emb_pos
    if target is not None and target.is_param:
        return target.paths[0]
    module, _, pname = key.rpartition(".")
    target = WAN_NAMES.translate_original(module)
    if target is None or target.is_param:
        return None
    return f"{target.paths[0]}.{pname}"


def load_fp8_scaled_wan(path: str | os.PathLike, *, compute_dtype: torch.dtype = torch.bfloat16, head_dim: int = HEAD_DIM):
    """A WanTransformer3DModel with its block Linears in FP8 as stored (see module doc)."""
    from diffusers import WanTransformer3DModel
    from safetensors import safe_open


    path = Path(path)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        raise LoRAFormatError(f"{path}: expected an existing .safetensors file (FP8-scaled Wan checkpoint)")
    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as e:  # safetensors raises its own error types for a broken header
        raise LoRAFormatError(f"{path}: not a readable safetensors file ({e})") from None
    with handle as f:
        keys = [k[len("model.diffusion_model."):] if k.startswith("model.diffusion_model.") else k for k in f.keys()]
        raw_keys = list(f.keys())
        if not any(k.endswith(".scale_weight") for k in keys):
            raise LoRAFormatError(f"{path}: no '.scale_weight' tensors: not an fp8_scaled checkpoint")
        shapes = {k: tuple(f.get_slice(r).get_shape()) for k, r in zip(keys, raw_keys)}
        config = config_from_original_shapes(shapes, head_dim)
        with torch.device("meta"):
            model = WanTransformer3DModel(**config)
        keep_fp32 = set(getattr(model, "_keep_in_fp32_modules", None) or [])
        block_linears = set(block_linear_paths(inventory(model)))
        state, scales, unknown = {}, {}, []
        for key, raw in zip(keys, raw_keys):
            if key in ("scaled_fp8",) or key.endswith((".scale_weight", ".scale_input")):
                continue
            name = _to_diffusers(key)
            if name is None:
                unknown.append(key)
                continue
            t = f.get_tensor(raw)
            module = name.rpartition(".")[0]
            scale_key = raw[: -len(".weight")] + ".scale_weight" if raw.endswith(".weight") else None
            scale = f.get_tensor(scale_key).float() if scale_key and scale_key in raw_keys else None
            if t.dtype == torch.float8_e4m3fn and module in block_linears and name.endswith(".weight"):
                state[name] = t  # kept as stored
                scales[module] = scale if scale is not None else torch.ones(())
                continue
            if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                t = t.float() * (scale if scale is not None else 1.0)
            fp32 = bool(keep_fp32.intersection(name.split(".")))
            state[name] = t.to(torch.float32 if fp32 else compute_dtype)
    if unknown:
        raise LoRAFormatError(f"{path}: {len(unknown)} tensors with no Wan counterpart, e.g. {unknown[:3]}")
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise LoRAFormatError(f"{path}: {len(missing)} Wan tensors missing from the file, e.g. {missing[:3]}")
    model.load_state_dict(state, strict=True, assign=True)
    # the rotary tables are computed buffers, not checkpoint tensors: build them for real
    rope = model.rope
    model.rope = type(rope)(rope.attention_head_dim, rope.patch_size, rope.max_seq_len)
    for module, scale in scales.items():
        lin = model.get_submodule(module)
        lin.weight.requires_grad_(False)
        lin.vidlora_compute_dtype = compute_dtype  # read by attach: what the layer computes in
        lin.register_buffer("weight_scale", scale.reshape(-1).expand(lin.out_features).clone(), persistent=False)
    return model.eval()
