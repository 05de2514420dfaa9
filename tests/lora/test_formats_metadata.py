"""Trigger words and training metadata, and the variant (task / version / expert) with
the evidence each field was set from."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.writers import write_raw
from vidlora.lora import read_lora
from vidlora.lora.metadata import training_summary, trigger_words


def _wan14b(tmp_path, name="x.safetensors", metadata=None, extra=None):
    """A rank-1 Wan 14B-width file (one module), with chosen name and metadata."""
    tensors = {
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(1, 5120) * 0.01,
        "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(5120, 1) * 0.01,
        **(extra or {}),
    }
    return read_lora(write_raw(tmp_path / name, tensors, metadata))


def test_trigger_words_from_every_source():
    meta = {
        "modelspec.trigger_phrase": "ohwx man, red hat",
        "ss_tag_frequency": json.dumps({"10_sks dog": {"sks dog": 40, "grass": 12, "Red Hat": 40}, "1_zzx": {"zzx": 1}}),
        "ss_training_comment": "Trigger words: neon city; trained 2000 steps",
    }
    assert trigger_words(meta) == ["ohwx man", "red hat", "sks dog", "zzx", "neon city"]


def test_trigger_words_absent_or_malformed():
    assert trigger_words({}) == []
    assert trigger_words({"ss_tag_frequency": "{not json", "ss_training_comment": "lr 1e-4"}) == []


def test_training_summary_keeps_known_keys_and_shortens():
    meta = {"ss_network_dim": "32", "ss_network_alpha": "1.0", "ss_training_comment": "x" * 1000, "junk": "y"}
    out = training_summary(meta)
    assert set(out) == {"ss_network_dim", "ss_network_alpha", "ss_training_comment"}
    assert len(out["ss_training_comment"]) == 300 and out["ss_training_comment"].endswith("...")


def test_lora_file_fields(tmp_path):
    lora = _wan14b(tmp_path, metadata={"modelspec.trigger_phrase": "ohwx"})
    assert lora.trigger_words == ["ohwx"] and lora.metadata == {"modelspec.trigger_phrase": "ohwx"}
    assert (lora.family, lora.width, lora.rank, lora.alpha, lora.dtype) == ("wan-14b", 5120, 1, None, torch.float32)
    assert lora.size_bytes == (tmp_path / "x.safetensors").stat().st_size
    assert lora.sha256 is not None and len(lora.sha256) == 64
    assert lora.name == "x"


@pytest.mark.parametrize(
    "name,metadata,want",
    [
        ("style_high_noise.safetensors", {}, ("high", "2.2", None)),
        ("Wan22-LOW.safetensors", {}, ("low", "2.2", None)),
        ("highlight.safetensors", {}, (None, None, None)),
        ("x.safetensors", {"modelspec.timestep_range": "875,1000"}, ("high", "2.2", "t2v")),
        ("x.safetensors", {"modelspec.timestep_range": "0,900"}, ("low", "2.2", "i2v")),
        ("x.safetensors", {"ss_base_model_version": "wan_2.1"}, (None, "2.1", None)),
        ("x.safetensors", {"ss_sd_model_name": "wan2.2_i2v_high_noise_14B_fp16.safetensors"}, ("high", "2.2", "i2v")),
        ("x.safetensors", {"modelspec.architecture": "wan2.1/lora"}, (None, None, None)),  # musubi writes it for 2.2 too
    ],
)
def test_variant_signals(tmp_path, name, metadata, want):
    v = _wan14b(tmp_path, name=name, metadata=metadata).variant
    assert (v.expert, v.version, v.task) == want
    assert len(v.evidence) == sum(x is not None for x in want)
    for fld, value in zip(("expert", "version", "task"), want):
        if value is not None:
            assert any(e.startswith(f"{fld} {value}") for e in v.evidence), v.evidence


def test_structure_beats_metadata_and_conflicts_are_shown(tmp_path):
    extra = {
        "diffusion_model.blocks.0.cross_attn.k_img.lora_down.weight": torch.randn(1, 5120),
        "diffusion_model.blocks.0.cross_attn.k_img.lora_up.weight": torch.randn(5120, 1),
    }
    v = _wan14b(tmp_path, metadata={"ss_sd_model_name": "wan2.1_t2v_14B.safetensors"}, extra=extra).variant
    assert v.task == "i2v" and v.version == "2.1"
    assert v.evidence[0].startswith("task i2v: 1 image cross-attention entries")
    assert any(e.startswith("ignored task t2v (already i2v): ss_sd_model_name") for e in v.evidence)


def test_width_implies_version(tmp_path):
    tensors = {
        "diffusion_model.blocks.0.ffn.0.lora_down.weight": torch.randn(1, 1536),
        "diffusion_model.blocks.0.ffn.0.lora_up.weight": torch.randn(8960, 1),
    }
    lora = read_lora(write_raw(tmp_path / "small_high.safetensors", tensors))
    assert lora.family == "wan-1.3b" and lora.variant.version == "2.1" and lora.variant.expert is None


def test_module_counts(tmp_path):
    extra = {
        "diffusion_model.blocks.0.cross_attn.k_img.lora_down.weight": torch.randn(1, 5120),
        "diffusion_model.blocks.0.cross_attn.k_img.lora_up.weight": torch.randn(5120, 1),
        "diffusion_model.blocks.3.ffn.2.lora_down.weight": torch.randn(1, 13824),
        "diffusion_model.blocks.3.ffn.2.lora_up.weight": torch.randn(5120, 1),
        "diffusion_model.head.head.lora_down.weight": torch.randn(1, 5120),
        "diffusion_model.head.head.lora_up.weight": torch.randn(64, 1),
    }
    counts = _wan14b(tmp_path, extra=extra).module_counts
    assert counts == {"self-attn": 1, "cross-attn": 0, "image cross-attn": 1, "ffn": 1, "other": 1}
