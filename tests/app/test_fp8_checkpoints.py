"""ComfyUI/kijai "fp8_e4m3fn_scaled" Wan single files: loaded without a round trip through
bf16, block weights kept as stored, results equal to the dequantized weights'."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import vidlora
from vidlora.errors import LoRAFormatError
from vidlora.app.fp8_checkpoints import load_fp8_scaled_wan
from vidlora.app.tiny import tiny_transformer, tiny_transformer_inputs

from helpers.models import random_lora, run
from helpers.merged import merged_stack
from helpers.writers import _WAN_INNER as _INNER, _WAN_TOP as _TOP  # diffusers -> original Wan names



def _original_key(name: str) -> str:
    """diffusers parameter name -> the original Wan key (what fp8_scaled files hold)."""
    if name == "scale_shift_table":
        return "head.modulation"
    if name.startswith("blocks.") and name.endswith(".scale_shift_table"):
        return name.replace("scale_shift_table", "modulation")
    module, _, pname = name.rpartition(".")
    if module.startswith("blocks."):
        _, n, inner = module.split(".", 2)
        return f"blocks.{n}.{_INNER[inner]}.{pname}"
    return f"{_TOP[module]}.{pname}"


def _write_scaled(model, path):
    """What ComfyUI's fp8_scaled checkpoints hold: original names, every 2-D Linear weight
    in e4m3 with one per-tensor scale_weight, the rest in bf16, a scaled_fp8 marker."""
    tensors = {"scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    for name, p in model.state_dict().items():
        key = _original_key(name)
        if p.ndim == 2 and name.endswith(".weight") and "norm" not in name:
            scale = p.abs().max() / 448
            tensors[key] = (p / scale).to(torch.float8_e4m3fn)
            tensors[key[: -len(".weight")] + ".scale_weight"] = scale.reshape(1)
        else:
            tensors[key] = p.to(torch.bfloat16)
    save_file(tensors, str(path))


def _dequantized(model, path):
    """The independent reference: the same file read into the model with plain torch."""
    from safetensors.torch import load_file

    raw = load_file(str(path))
    ref = tiny_transformer("wan-i2v", seed=0)
    with torch.no_grad():
        for name, p in ref.state_dict().items():
            key = _original_key(name)
            t = raw[key].float()
            if key.endswith(".weight") and key[: -len(".weight")] + ".scale_weight" in raw:
                t = t * raw[key[: -len(".weight")] + ".scale_weight"].float()
            p.copy_(t)
    return ref


def test_scaled_fp8_file_loads_as_stored_and_runs_under_attach(tmp_path):
    source = tiny_transformer("wan-i2v", seed=0)
    path = tmp_path / "wan_tiny_fp8_e4m3fn_scaled.safetensors"
    _write_scaled(source, path)
    model = load_fp8_scaled_wan(path, compute_dtype=torch.float32, head_dim=12)
    unit_weight = model.blocks[1].ffn.net[2].weight
    assert unit_weight.dtype == torch.float8_e4m3fn and model.blocks[1].ffn.net[2].weight_scale.shape == (24,)
    assert model.condition_embedder.time_proj.weight.dtype == torch.float32  # outside the blocks: dequantized
    ptr = unit_weight.data_ptr()

    ref = _dequantized(model, path)
    inputs = tiny_transformer_inputs("wan-i2v")
    lora = random_lora(ref, 3, "wan (width 24)", deltas=["blocks.0.norm2.weight"])
    h = vidlora.attach(model)
    assert model.blocks[1].ffn.net[2].weight.data_ptr() == ptr  # no copy, no round trip
    torch.testing.assert_close(run(model, inputs), run(ref, inputs), atol=1e-4, rtol=1e-4)
    h.add(lora, weight=0.5)
    torch.testing.assert_close(run(model, inputs), run(merged_stack(ref, [(lora, 0.5)]), inputs), atol=1e-4, rtol=1e-4)


def test_not_a_scaled_checkpoint(tmp_path):
    p = tmp_path / "plain.safetensors"
    save_file({"blocks.0.self_attn.q.weight": torch.randn(4, 4)}, str(p))
    with pytest.raises(LoRAFormatError, match="scale_weight"):
        load_fp8_scaled_wan(p)
    with pytest.raises(LoRAFormatError, match="safetensors"):
        load_fp8_scaled_wan(tmp_path / "x.ckpt")
