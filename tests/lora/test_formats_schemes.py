"""Every key scheme, written from ground truth for the tiny models, read back by
read_lora, merged into a copy of the model and compared with merging the ground truth.
Also against diffusers + PEFT's own loader where diffusers reads the scheme correctly."""

from __future__ import annotations

import pytest
import torch

from helpers.format_cases import hunyuan_truth_spec, load_with_diffusers, round_truth_to, tiny, wan_truth_spec
from helpers.writers import Truth, random_truth, write_lora
from helpers.merged import assert_same_params, merged
from helpers.models import run
from vidlora.lora import match_lora, read_lora
from vidlora.model import inventory
from vidlora.app.tiny import tiny_transformer_inputs

WAN_ALPHA = {"W1": None, "W2": 2.0, "W3": 1.0, "W3b": 4.0, "W4": 8.0, "W4b": 3.0, "W5": 2.0, "W7": 2.0}
_SCHEME_ID = {"W3b": "W3b", "W4b": "W4b", "H6-split": "H6"}


def _check_roundtrip(model, truth, path, warn: str = ""):
    lora = read_lora(path)
    report = match_lora(lora, inventory(model))  # strict: every entry lands somewhere
    assert not report.skipped, report.skipped
    assert [w for w in report.warnings if warn and warn in w] == report.warnings, report.warnings
    assert_same_params(merged(model, lora), merged(model, truth), atol=2e-6)
    return lora


@pytest.mark.parametrize("kind", ["wan-t2v", "wan-i2v"])
@pytest.mark.parametrize("scheme", ["W1", "W2", "W3", "W3b", "W4", "W4b", "W5"])
def test_wan_scheme_roundtrip(tmp_path, kind, scheme):
    model = tiny(kind)
    paths, deltas = wan_truth_spec(model, scheme)
    truth = random_truth(model, seed=len(scheme), paths=paths, deltas=deltas, alpha=WAN_ALPHA[scheme])
    path = write_lora(tmp_path / f"{scheme}.safetensors", truth, scheme)
    lora = _check_roundtrip(model, truth, path)
    assert lora.scheme.startswith(_SCHEME_ID.get(scheme, scheme) + " ")
    assert (lora.arch, lora.family, lora.width) == ("wan", "wan (width 24)", 24)
    assert len(lora.modules) == len([p for p in paths if p != "patch_embedding"])
    assert lora.variant.task == ("i2v" if kind == "wan-i2v" else None if scheme not in ("W1", "W2") else "t2v")


@pytest.mark.parametrize("share", [True, False], ids=["shared-A", "per-piece-A"])
@pytest.mark.parametrize("scheme", ["H1", "H2", "H3", "H4", "H5", "H6", "H6-split"])
def test_hunyuan_scheme_roundtrip(tmp_path, scheme, share):
    if not share and scheme in ("H5", "H6", "H6-split"):
        pytest.skip("diffusers-named and split-index files have no fused modules")
    model = tiny("hunyuan-t2v")
    paths, deltas = hunyuan_truth_spec(model, scheme)
    alpha = None if scheme in ("H1",) else 3.0
    truth = random_truth(model, seed=7, paths=paths, deltas=deltas, alpha=alpha, share_fused_down=share)
    path = write_lora(tmp_path / f"{scheme}.safetensors", truth, scheme)
    # H3 is Tencent's I2V training: on this T2V model, a warning says so
    lora = _check_roundtrip(model, truth, path, warn="looks made for task i2v" if scheme == "H3" else "")
    assert lora.scheme.startswith(_SCHEME_ID.get(scheme, scheme) + " ")
    assert (lora.arch, lora.family, lora.width) == ("hunyuan-video", "hunyuan-video (width 20)", 20)
    assert lora.variant.task == ("i2v" if scheme == "H3" else None)


def test_hunyuan_fused_split_copies_a_and_cuts_b(tmp_path):
    """qkv: A copied to q/k/v, B cut in three; linear1: 20/20/20/80 rows at width 20."""
    model = tiny("hunyuan-t2v")
    paths = ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v"]
    paths += [f"single_transformer_blocks.0.{p}" for p in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")]
    truth = random_truth(model, seed=3, paths=paths, alpha=2.0, share_fused_down=True)
    lora = read_lora(write_lora(tmp_path / "h2.safetensors", truth, "H2"))
    for p in paths:
        assert torch.equal(lora.modules[p].down, truth.modules[p].down)
        assert torch.equal(lora.modules[p].up, truth.modules[p].up)
        assert lora.modules[p].scale == pytest.approx(2.0 / truth.modules[p].rank)
    assert lora.modules["single_transformer_blocks.0.proj_mlp"].up.shape == (80, 4)


def test_final_layer_halves_swapped(tmp_path):
    """Tencent's final adaLN is (shift, scale); diffusers' norm_out is (scale, shift)."""
    model = tiny("hunyuan-t2v")
    truth = random_truth(model, seed=4, paths=["norm_out.linear"], deltas=["norm_out.linear.bias"], alpha=None)
    lora = read_lora(write_lora(tmp_path / "h4.safetensors", truth, "H4"))
    up_file = read_lora(write_lora(tmp_path / "h5.safetensors", truth, "H5")).modules["norm_out.linear"].up
    assert torch.equal(lora.modules["norm_out.linear"].up, up_file)
    assert torch.equal(lora.modules["norm_out.linear"].down, truth.modules["norm_out.linear"].down)
    assert torch.equal(lora.deltas["norm_out.linear.bias"], truth.deltas["norm_out.linear.bias"])


def test_wan_forward_matches_reference(tmp_path):
    """The merged model's output, not just its weights (W2 with every extra on Wan I2V)."""
    model = tiny("wan-i2v")
    paths, deltas = wan_truth_spec(model, "W2")
    truth = random_truth(model, seed=11, paths=paths, deltas=deltas, alpha=2.0)
    lora = read_lora(write_lora(tmp_path / "w2.safetensors", truth, "W2"))
    inputs = tiny_transformer_inputs("wan-i2v")
    got, want, base = run(merged(model, lora), inputs), run(merged(model, truth), inputs), run(model, inputs)
    assert (want - base).abs().max() > 0.05  # the LoRA changes the output
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kind,scheme",
    [("wan-t2v", "W4"), ("wan-i2v", "W4"), ("wan-i2v", "W1"), ("wan-t2v", "W2"), ("wan-i2v", "W3"), ("hunyuan-t2v", "H5")],
)
def test_matches_diffusers_peft_loader(tmp_path, kind, scheme):
    """diffusers reads W4/H5 natively and W1/W2/W3 through its converters (alpha baked)."""
    model = tiny(kind)
    if kind.startswith("wan"):
        paths = [p for p in wan_truth_spec(model, "W4")[0] if p.startswith("blocks.")]
    else:
        paths = [p for p in hunyuan_truth_spec(model, "H5")[0] if "transformer_blocks." in p]
    alpha = None if scheme in ("W1", "W4", "H5") else 2.0
    truth = random_truth(model, seed=5, paths=paths, alpha=alpha)
    path = write_lora(tmp_path / f"{scheme}.safetensors", truth, scheme)
    inputs = tiny_transformer_inputs(kind)
    theirs = run(load_with_diffusers(model, path), inputs)
    ours = run(merged(model, read_lora(path)), inputs)
    assert (ours - run(model, inputs)).abs().max() > 0.05
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-5)


def test_w4_alpha_from_adapter_metadata_with_pattern(tmp_path):
    """lora_adapter_metadata: lora_alpha for most modules, alpha_pattern for the rest."""
    model = tiny("wan-t2v")
    paths = ["blocks.0.attn1.to_q", "blocks.0.attn1.to_k", "blocks.1.ffn.net.2"]
    truth = random_truth(model, seed=6, paths=paths, alpha=8.0)
    truth.modules["blocks.1.ffn.net.2"].alpha = 2.0
    lora = read_lora(write_lora(tmp_path / "w4.safetensors", truth, "W4"))
    for p in paths:
        assert lora.modules[p].scale == pytest.approx(truth.modules[p].scale)
    assert lora.modules["blocks.1.ffn.net.2"].alpha == 2.0


def test_alpha_rules(tmp_path):
    """Missing alpha: scale 1. musubi alpha 1 at rank 16: 1/16. Alpha baked into the
    tensors (no key) gives the same merge as the explicit alpha."""
    model = tiny("wan-t2v")
    base = random_truth(model, seed=8, paths=["blocks.0.attn1.to_q"], rank=16)
    low = base.modules["blocks.0.attn1.to_q"]
    low = type(low)(low.down, low.up[:, :16], None)
    no_alpha = Truth({"blocks.0.attn1.to_q": low})
    assert read_lora(write_lora(tmp_path / "a.safetensors", no_alpha, "W1")).modules["blocks.0.attn1.to_q"].scale == 1.0
    musubi = Truth({"blocks.0.attn1.to_q": type(low)(low.down, low.up, 1.0)})
    got = read_lora(write_lora(tmp_path / "b.safetensors", musubi, "W3")).modules["blocks.0.attn1.to_q"]
    assert (got.rank, got.alpha, got.scale) == (16, 1.0, pytest.approx(1 / 16))
    baked = read_lora(write_lora(tmp_path / "c.safetensors", musubi, "W5"))  # W5 bakes alpha/r into B
    assert baked.modules["blocks.0.attn1.to_q"].scale == 1.0
    assert_same_params(merged(model, baked), merged(model, musubi), atol=1e-7)


def test_bf16_file_reads_exactly(tmp_path):
    model = tiny("wan-t2v")
    paths, deltas = wan_truth_spec(model, "W2")
    truth = round_truth_to(random_truth(model, seed=9, paths=paths, deltas=deltas, alpha=4.0), torch.bfloat16)
    lora = read_lora(write_lora(tmp_path / "bf16.safetensors", truth, "W2", dtype=torch.bfloat16))
    assert lora.dtype == torch.bfloat16
    assert lora.modules["blocks.0.attn1.to_q"].down.dtype == torch.bfloat16
    assert_same_params(merged(model, lora), merged(model, truth), atol=2e-6)


def test_w6_two_experts(tmp_path):
    model = tiny("wan-t2v")
    paths = [p for p in wan_truth_spec(model, "W1")[0] if p.startswith("blocks.")]
    high = random_truth(model, seed=20, paths=paths)
    low = random_truth(model, seed=21, paths=paths[:5])
    lora = read_lora(write_lora(tmp_path / "combo.safetensors", Truth(), "W6", experts={"high": high, "low": low}))
    assert lora.scheme.startswith("W6 ") and not lora.modules and set(lora.experts) == {"high", "low"}
    assert lora.variant.version == "2.2"
    for name, truth in (("high", high), ("low", low)):
        part = lora.experts[name]
        assert part.variant.expert == name and part.variant.version == "2.2"
        assert part.modules["blocks.0.attn1.to_q"].source_keys[0].startswith(
            "diffusion_model.transformer_" + ("1." if name == "high" else "2.")
        )
        assert_same_params(merged(model, part), merged(model, truth), atol=2e-6)
    assert lora.rank == [4, 5, 6]


def test_t2v_lora_on_i2v_model(tmp_path):
    """A T2V LoRA fits an I2V model (the image branch is simply left alone)."""
    t2v = tiny("wan-t2v")
    i2v = tiny("wan-i2v")
    truth = random_truth(t2v, seed=12, paths=[p for p in wan_truth_spec(t2v, "W2")[0] if p.startswith("blocks.")])
    lora = read_lora(write_lora(tmp_path / "t2v.safetensors", truth, "W2"))
    report = match_lora(lora, inventory(i2v))
    assert len(report.linears) == len(lora.modules) and not report.skipped
    assert_same_params(merged(i2v, lora), merged(i2v, truth), atol=2e-6)


def test_unmappable_names_reach_validation(tmp_path):
    """A module name with no diffusers equivalent keeps its name and is reported by
    match_lora, not dropped by the reader. (This used VACE's vace_blocks, which now read:
    tests/model/test_wan_family.py has them on plain Wan.)"""
    model = tiny("wan-t2v")
    truth = random_truth(model, seed=13, paths=["blocks.0.attn1.to_q"])
    extra = {
        "diffusion_model.blocks.0.cross_attn.q_extra.lora_down.weight": torch.randn(2, 24),
        "diffusion_model.blocks.0.cross_attn.q_extra.lora_up.weight": torch.randn(24, 2),
    }
    lora = read_lora(write_lora(tmp_path / "extra.safetensors", truth, "W2", extra=extra))
    assert "blocks.0.cross_attn.q_extra" in lora.modules
    report = match_lora(lora, inventory(model), strict=False)
    assert ("blocks.0.cross_attn.q_extra (from diffusion_model.blocks.0.cross_attn.q_extra.lora_down.weight)",
            "maps to nothing in the model") in report.skipped


def test_text_encoder_keys_are_reported(tmp_path):
    model = tiny("hunyuan-t2v")
    truth = random_truth(model, seed=14, paths=["transformer_blocks.0.attn.to_out.0"])
    extra = {"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.randn(2, 8)}
    lora = read_lora(write_lora(tmp_path / "te.safetensors", truth, "H2", extra=extra))
    assert lora.ignored == [("lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight",
                             "text-encoder key: vidlora patches the video transformer only")]
    assert lora.ignored[0] in match_lora(lora, inventory(model)).skipped


def _rekey(path, out, rename, metadata=None):
    """Rewrite a written file's keys (producers' small variations of one scheme)."""
    from safetensors import safe_open

    from helpers.writers import write_raw

    with safe_open(str(path), "pt") as f:
        tensors = {rename(k): f.get_tensor(k) for k in f.keys()}
        meta = f.metadata() or {}
    meta.update(metadata or {})
    return write_raw(out, tensors, meta)


def test_h1_with_older_transformer_prefix(tmp_path):
    model = tiny("hunyuan-t2v")
    paths, _ = hunyuan_truth_spec(model, "H1")
    truth = random_truth(model, seed=15, paths=paths, share_fused_down=True)
    first = write_lora(tmp_path / "a.safetensors", truth, "H1")
    path = _rekey(first, tmp_path / "b.safetensors", lambda k: "transformer." + k[len("diffusion_model."):])
    lora = read_lora(path)
    assert lora.scheme.startswith("H1 ")
    assert_same_params(merged(model, lora), merged(model, truth), atol=2e-6)


def test_kijai_modulation_diff_spelling(tmp_path):
    """kijai renames blocks.N.diff_m to blocks.N.modulation.diff; both patch scale_shift_table."""
    model = tiny("wan-t2v")
    truth = random_truth(model, seed=16, paths=["blocks.0.attn1.to_q"],
                         deltas=["blocks.1.scale_shift_table", "scale_shift_table"])
    first = write_lora(tmp_path / "a.safetensors", truth, "W2")
    path = _rekey(first, tmp_path / "b.safetensors",
                  lambda k: k.replace("blocks.1.diff_m", "blocks.1.modulation.diff").replace("head.diff_m", "head.modulation.diff"))
    lora = read_lora(path)
    assert sorted(lora.deltas) == ["blocks.1.scale_shift_table", "scale_shift_table"]
    assert_same_params(merged(model, lora), merged(model, truth), atol=1e-7)


def test_rslora_metadata_divides_by_sqrt_rank(tmp_path):
    import json

    model = tiny("wan-t2v")
    truth = random_truth(model, seed=17, paths=["blocks.0.attn1.to_q"], rank=9)
    first = write_lora(tmp_path / "a.safetensors", truth, "W4")
    meta = {"lora_adapter_metadata": json.dumps({"transformer.r": 9, "transformer.lora_alpha": 6,
                                                 "transformer.use_rslora": True})}
    lora = read_lora(_rekey(first, tmp_path / "b.safetensors", lambda k: k, meta))
    assert lora.modules["blocks.0.attn1.to_q"].scale == pytest.approx(6 / 3)


def test_w4b_sidecar_alpha(tmp_path):
    """Raw PEFT saves keep lora_alpha in adapter_config.json beside the weights."""
    model = tiny("wan-t2v")
    truth = random_truth(model, seed=18, paths=["blocks.0.attn1.to_q", "blocks.2.ffn.net.2"], alpha=5.0)
    lora = read_lora(write_lora(tmp_path / "adapter_model.safetensors", truth, "W4b"))
    assert (tmp_path / "adapter_config.json").exists()
    assert lora.modules["blocks.2.ffn.net.2"].scale == pytest.approx(5.0 / truth.modules["blocks.2.ffn.net.2"].rank)
    (tmp_path / "adapter_config.json").unlink()
    assert read_lora(tmp_path / "adapter_model.safetensors").modules["blocks.2.ffn.net.2"].scale == 1.0


def test_kohya_keys_with_diffusers_inner_names(tmp_path):
    """lora_unet_blocks_0_attn1_to_q (kohya-style keys over diffusers' Wan module names)."""
    model = tiny("wan-i2v")
    paths = [p for p in wan_truth_spec(model, "W3")[0] if p.startswith("blocks.")]
    truth = random_truth(model, seed=19, paths=paths, alpha=2.0)
    path = tmp_path / "kohya_diffusers.safetensors"
    tensors = {}
    for p, low in truth.modules.items():
        name = "lora_unet_" + p.replace(".", "_")
        tensors.update({f"{name}.lora_down.weight": low.down, f"{name}.lora_up.weight": low.up,
                        f"{name}.alpha": torch.tensor(2.0)})
    from helpers.writers import write_raw

    lora = read_lora(write_raw(path, tensors))
    assert_same_params(merged(model, lora), merged(model, truth), atol=2e-6)
