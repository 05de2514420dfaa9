"""vidlora.inspect: the JSON report and its text rendering, with and without a model."""

from __future__ import annotations

import json

import torch

from helpers.format_cases import tiny, wan_truth_spec
from helpers.writers import Truth, random_truth, write_lora
from vidlora.model import inventory
from vidlora.lora import read_lora
from vidlora.app.inspect_report import build_report, model_inventory, render_report

_META = {
    "modelspec.trigger_phrase": "ohwx, neon",
    "ss_network_module": "networks.lora_wan",
    "ss_network_dim": "4",
    "ss_network_alpha": "2.0",
    "ss_steps": "1200",
}


def _lora(tmp_path, kind="wan-i2v", scheme="W2"):
    model = tiny(kind)
    paths, deltas = wan_truth_spec(model, scheme)
    truth = random_truth(model, seed=0, paths=paths, deltas=deltas, alpha=2.0)
    return read_lora(write_lora(tmp_path / "motion.safetensors", truth, scheme, metadata=_META))


def test_report_without_model(tmp_path):
    lora = _lora(tmp_path)
    report = build_report(lora)
    assert json.loads(json.dumps(report)) == report
    assert report["scheme"].startswith("W2 ") and report["family"] == "wan (width 24)" and report["width"] == 24
    assert report["family_evidence"].startswith("in_features 24 of blocks.0.")
    assert report["family_evidence"].endswith(".lora_down.weight)")
    assert report["variant"]["task"] == "i2v" and report["variant"]["evidence"]
    assert report["rank"] == [4, 5, 6] and report["alpha"] == 2.0
    assert report["effective_scale"] == [round(2 / 6, 8), 0.4, 0.5]
    # 3 blocks x (4 self + 4 cross + 2 image + 2 ffn) + proj_out, time_proj, text_embedder, image ff
    assert report["modules"] == {
        "total": 40,
        "by_kind": {"self-attn": 12, "cross-attn": 12, "image cross-attn": 7, "ffn": 6, "other": 3},
    }
    assert report["modules"]["total"] == len(lora.modules)
    assert report["deltas"]["total"] == len(lora.deltas) == 13  # 12 diffs + the patch conv LoRA
    assert report["blocks"] == {"blocks": "0-2"}
    assert report["trigger_words"] == ["ohwx", "neon"]
    assert report["training"]["ss_network_module"] == "networks.lora_wan"
    assert report["dtype"] == "float32" and report["size_bytes"] == lora.size_bytes
    assert "compatibility" not in report


def test_report_with_fitting_model(tmp_path):
    lora = _lora(tmp_path, kind="wan-t2v")
    report = build_report(lora, inventory(tiny("wan-t2v")))
    c = report["compatibility"]
    assert c["ok"] and c["error"] is None and c["model"] == "Wan (width 24)"
    assert c["patched_block_linears"] == 30 and c["other_linears"] == 3 and c["deltas"] == 12 == len(lora.deltas)
    assert json.loads(json.dumps(report)) == report


def test_report_with_model_missing_the_image_branch(tmp_path):
    model = tiny("wan-i2v")
    paths = [p for p in wan_truth_spec(model, "W2")[0] if p.startswith("blocks.")]
    lora = read_lora(write_lora(tmp_path / "i2v.safetensors", random_truth(model, seed=1, paths=paths), "W2"))
    c = build_report(lora, inventory(tiny("wan-t2v")))["compatibility"]
    assert c["ok"] and c["patched_block_linears"] == 30
    assert len(c["skipped"]) == 6 and all("no image branch" in why for _, why in c["skipped"])
    text = render_report(build_report(lora, inventory(tiny("wan-t2v"))))
    assert "6: image cross-attention entry; this model has no image" in " ".join(text.split())


def test_report_with_wrong_model_says_why(tmp_path):
    lora = _lora(tmp_path)
    report = build_report(lora, model_inventory("wan2.1-t2v-1.3b"))
    c = report["compatibility"]
    assert not c["ok"] and "the model is Wan 1.3B (1536)" in c["error"]
    text = render_report(report)
    assert "does not fit" in text and "LoRA targets Wan (in_features 24)" in text


def test_render_shows_the_essentials(tmp_path):
    text = render_report(build_report(_lora(tmp_path)))
    for needle in ("LoRA motion", "W2 (original Wan names", "wan (width 24)", "task i2v", "evidence",
                   "4, 5, 6", "0.333333, 0.4, 0.5", "ohwx, neon", "self-attn 12", "image cross-attn 7",
                   "training metadata", "ss_steps", "1200"):
        assert needle in text, needle


def test_two_expert_report(tmp_path):
    model = tiny("wan-t2v")
    high = random_truth(model, seed=2, paths=["blocks.0.attn1.to_q", "blocks.1.attn1.to_q"])
    low = random_truth(model, seed=3, paths=["blocks.2.ffn.net.2"])
    lora = read_lora(write_lora(tmp_path / "moe.safetensors", Truth(), "W6", experts={"high": high, "low": low}))
    report = build_report(lora, inventory(model))
    assert report["modules"]["total"] == 0
    assert report["experts"]["high"]["modules"]["by_kind"]["self-attn"] == 2
    assert report["experts"]["low"]["variant"]["expert"] == "low"
    assert report["compatibility"]["low"]["patched_block_linears"] == 1
    text = render_report(report)
    assert "expert: high noise" in text and "compatibility (low noise part)" in text
    assert json.loads(json.dumps(report)) == report


def test_hunyuan_report(tmp_path):
    model = tiny("hunyuan-t2v")
    paths = ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v",
             "single_transformer_blocks.1.proj_mlp", "transformer_blocks.1.ff.net.2", "norm_out.linear"]
    truth = random_truth(model, seed=4, paths=paths, alpha=1.0, share_fused_down=True)
    lora = read_lora(write_lora(tmp_path / "hy.safetensors", truth, "H2", dtype=torch.float16))
    report = build_report(lora, inventory(model))
    assert report["dtype"] == "float16" and report["scheme"].startswith("H2 ")
    # a fused linear1 covers q/k/v too (zero rows here): the file patches all four pieces
    assert report["modules"]["by_kind"] == {"self-attn": 6, "cross-attn": 0, "image cross-attn": 0, "ffn": 2, "other": 1}
    assert report["blocks"] == {"transformer_blocks": "0-1", "single_transformer_blocks": "1"}
    assert report["compatibility"]["patched_block_linears"] == 8
