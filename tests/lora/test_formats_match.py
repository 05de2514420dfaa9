"""match_lora: unmatched keys (strict and not), shape mismatches, harmless image
cross-attention extras, two-expert files, variant warnings."""

from __future__ import annotations

import pytest
import torch

from helpers.format_cases import tiny
from helpers.writers import Truth, random_truth, write_lora
from vidlora.errors import LoRAMismatchError
from vidlora.model import inventory
from vidlora.lora import match_lora, read_lora


def _file(tmp_path, kind="wan-t2v", scheme="W2", extra=None, name="x.safetensors", **kw):
    model = tiny(kind)
    paths = kw.pop("paths", ["blocks.0.attn1.to_q", "blocks.1.ffn.net.0.proj"])
    truth = random_truth(model, seed=0, paths=paths, **kw)
    return read_lora(write_lora(tmp_path / name, truth, scheme, extra=extra))


def _extra_blocks(n):
    """LoRAs on blocks the 3-block tiny Wan does not have."""
    out = {}
    for b in range(5, 5 + n):
        out[f"diffusion_model.blocks.{b}.self_attn.q.lora_down.weight"] = torch.randn(2, 24)
        out[f"diffusion_model.blocks.{b}.self_attn.q.lora_up.weight"] = torch.randn(24, 2)
    return out


def test_unmatched_strict_lists_first_keys_and_count(tmp_path):
    lora = _file(tmp_path, extra=_extra_blocks(7))
    with pytest.raises(LoRAMismatchError) as err:
        match_lora(lora, inventory(tiny("wan-t2v")))
    msg = str(err.value)
    assert msg.startswith("x: 7 LoRA entries map to nothing in Wan (width 24): blocks.5.attn1.to_q (from diffusion_model.blocks.5")
    assert "and 2 more" in msg and "strict=False" in msg


def test_unmatched_not_strict_warns_once_and_reports(tmp_path):
    lora = _file(tmp_path, extra=_extra_blocks(3))
    report = match_lora(lora, inventory(tiny("wan-t2v")), strict=False)
    assert sorted(report.linears) == ["blocks.0.attn1.to_q", "blocks.1.ffn.net.0.proj"]
    assert len(report.warnings) == 1 and "skipped 3, applied 2" in report.warnings[0]
    assert [why for _, why in report.skipped] == ["maps to nothing in the model"] * 3


def test_shape_mismatch_names_both_sides(tmp_path):
    extra = {
        "diffusion_model.blocks.2.norm3.diff": torch.randn(30),
        "diffusion_model.blocks.2.ffn.0.lora_down.weight": torch.randn(2, 24),
        "diffusion_model.blocks.2.ffn.0.lora_up.weight": torch.randn(48, 2),
    }
    lora = _file(tmp_path, extra=extra)
    with pytest.raises(LoRAMismatchError) as err:
        match_lora(lora, inventory(tiny("wan-t2v")), strict=False)  # shapes are never downgraded
    msg = str(err.value)
    assert "2 shapes differ from Wan (width 24)" in msg
    assert "blocks.2.ffn.net.0.proj: LoRA 24->48, model 24->40" in msg
    assert "blocks.2.norm2.weight: LoRA delta (30,), model parameter (24,)" in msg


def test_image_keys_harmless_on_model_without_image_branch(tmp_path):
    i2v = tiny("wan-i2v")
    paths = ["blocks.0.attn1.to_q", "blocks.0.attn2.add_k_proj", "blocks.0.attn2.add_v_proj",
             "condition_embedder.image_embedder.ff.net.0.proj"]
    truth = random_truth(i2v, seed=1, paths=paths, deltas=["blocks.0.attn2.norm_added_k.weight"])
    lora = read_lora(write_lora(tmp_path / "lightx2v.safetensors", truth, "W2"))
    report = match_lora(lora, inventory(tiny("wan-t2v")))  # strict, still fine
    assert list(report.linears) == ["blocks.0.attn1.to_q"]
    assert sorted(n for n, _ in report.skipped) == [
        "blocks.0.attn2.add_k_proj", "blocks.0.attn2.add_v_proj", "blocks.0.attn2.norm_added_k.weight",
        "condition_embedder.image_embedder.ff.net.0.proj",
    ]
    assert all("no image branch (harmless)" in why for _, why in report.skipped)
    on_i2v = match_lora(lora, inventory(i2v))
    assert len(on_i2v.linears) == 4 and not on_i2v.skipped


def test_wan_lora_on_hunyuan_and_back(tmp_path):
    wan = _file(tmp_path)
    hy = _file(tmp_path, kind="hunyuan-t2v", scheme="H2", paths=["transformer_blocks.0.attn.to_out.0"], name="h.safetensors")
    # another family: both sides named, the LoRA's with what tells its naming apart
    with pytest.raises(LoRAMismatchError, match=r"LoRA targets Wan \(width 24, blocks.N self_attn / cross_attn / ffn\); "
                       r"the model is HunyuanVideo \(20\)"):  # fmt: skip
        match_lora(wan, inventory(tiny("hunyuan-t2v")))
    with pytest.raises(LoRAMismatchError, match=r"LoRA targets HunyuanVideo \(width 20, fused img_attn_qkv, single-stream "
                       r"blocks\); the model is Wan \(24\)"):  # fmt: skip
        match_lora(hy, inventory(tiny("wan-t2v")))


def test_nothing_applies_is_an_error_even_when_not_strict(tmp_path):
    lora = read_lora(write_lora(tmp_path / "none.safetensors", Truth(), "W2", extra=_extra_blocks(2)))
    with pytest.raises(LoRAMismatchError, match="nothing in this LoRA applies"):
        match_lora(lora, inventory(tiny("wan-t2v")), strict=False)


def test_two_expert_file_is_matched_per_part(tmp_path):
    model = tiny("wan-t2v")
    part = random_truth(model, seed=2, paths=["blocks.0.attn1.to_q"])
    lora = read_lora(write_lora(tmp_path / "combo.safetensors", Truth(), "W6", experts={"high": part, "low": part}))
    with pytest.raises(LoRAMismatchError, match=r"holds both Wan 2.2 experts \(high, low\)"):
        match_lora(lora, inventory(model))
    assert list(match_lora(lora.experts["low"], inventory(model)).linears) == ["blocks.0.attn1.to_q"]


def test_variant_mismatch_is_a_warning(tmp_path):
    model = tiny("wan-i2v")  # config says Wan 2.1 I2V
    truth = random_truth(model, seed=3, paths=["blocks.0.attn1.to_q"])
    path = write_lora(tmp_path / "t2v.safetensors", truth, "W2",
                      metadata={"ss_sd_model_name": "wan2.2_t2v_low_noise_14B_fp16.safetensors"})
    report = match_lora(read_lora(path), inventory(model))
    assert any("looks made for task t2v" in w and "the model is task i2v" in w for w in report.warnings)
    assert any("looks made for version 2.2" in w and "the model is version 2.1" in w for w in report.warnings)
