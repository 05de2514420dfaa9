"""convert_lora: every scheme vidlora reads, into each target naming, compared key for key
and tensor for tensor with the tests' independent writer of that target scheme
(helpers/writers.py, its own diffusers -> producer tables); then the converted files
applied through vidlora and, for the diffusers target, through diffusers + PEFT."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import vidlora
from helpers.format_cases import hunyuan_truth_spec, load_with_diffusers, tiny, wan_truth_spec
from helpers.merged import assert_same_params, merged
from helpers.models import run
from helpers.writers import Truth, random_truth, write_lora
from vidlora.app.tiny import tiny_transformer_inputs
from vidlora.errors import VidloraError
from vidlora.lora import read_lora
from vidlora.lora.tools import convert_lora
from vidlora.lora.tools.render import UnsupportedError

WAN_TARGET = {"diffusers": "W4", "comfyui": "W2", "musubi": "W3", "original": "W1"}
HY_TARGET = {"diffusers": "H5", "comfyui": "H4", "musubi": "H2", "original": "H1"}


def _comfy_modulation(key: str) -> str:
    # ComfyUI's generic key map reaches Wan's modulation tables as <param>.diff; the W2
    # writer spells them the LightX2V way (blocks.N.diff_m, head.diff_m)
    return key.replace(".diff_m", ".modulation.diff")


def assert_same_file(got_path, want_path, rename=lambda k: k, zero_extra: str | None = None, rtol: float = 0.0):
    """Same keys, shapes, dtypes and values (bit for bit unless ``rtol``: a PEFT lora_B.bias
    is stored divided by the module's scale, so a bias read from one is one rounding off)."""
    got, want = load_file(got_path), {rename(k): v for k, v in load_file(want_path).items()}
    extra = sorted(set(got) - set(want))
    if zero_extra:  # entries only one side writes, which must be zeros (PEFT's lora_bias)
        assert all(k.endswith(zero_extra) and not got[k].any() for k in extra), extra[:5]
        extra = []
    assert not extra and set(want) <= set(got), (extra[:5], sorted(set(want) - set(got))[:5])
    bad = [k for k in want if got[k].shape != want[k].shape or got[k].dtype != want[k].dtype
           or not (torch.equal(got[k], want[k]) or rtol and torch.allclose(got[k], want[k], rtol=rtol, atol=0))]
    assert not bad, bad[:5]


def _wan_truth(model, target: str, source: str, seed: int):
    # what both the source and the target scheme carry: the W4 spec for the diffusers
    # target (LoRAs + their biases), else the W2 spec without the convolution LoRA (read
    # as a dense delta, which the targets write as patch_embedding.diff)
    paths, deltas = wan_truth_spec(model, "W4" if "W4" in (target, source) else "W2")
    paths = [p for p in paths if p != "patch_embedding"]
    alpha = None if source == "W5" else 2.0  # W5 bakes alpha into B: scale 1 afterwards
    return random_truth(model, seed=seed, paths=paths, deltas=deltas, alpha=alpha)


@pytest.mark.parametrize("target", list(WAN_TARGET))
@pytest.mark.parametrize("source", ["W1", "W2", "W3", "W3b", "W4", "W5"])
def test_wan_convert_matches_independent_writer(tmp_path, source, target):
    model = tiny("wan-i2v")
    truth = _wan_truth(model, WAN_TARGET[target], source, seed=len(source) + len(target))
    src = write_lora(tmp_path / "src.safetensors", truth, source)
    out = tmp_path / f"{target}.safetensors"
    report = convert_lora(src, out, to=target)
    assert report.outputs == [str(out)] and report.scheme == WAN_TARGET[target] and not report.dropped
    want = write_lora(tmp_path / "want.safetensors", truth, WAN_TARGET[target])
    assert_same_file(out, want, rename=_comfy_modulation if target == "comfyui" else (lambda k: k),
                     zero_extra=".lora_B.bias" if target == "diffusers" else None,
                     rtol=1e-6 if source == "W4" else 0.0)  # fmt: skip


def _hy_truth(model, source: str, target: str, share: bool, seed: int):
    paths, deltas = hunyuan_truth_spec(model, "H2")
    paths = [p for p in paths if p != "x_embedder.proj"]
    if "H5" in (source, target):  # diffusers names carry biases of LoRA modules only
        deltas = [d for d in deltas if d.endswith(".bias") and d[: -len(".bias")] in paths]
    if source in ("H6", "H6-split"):
        deltas = []
    alpha = None if source == "H1" else 3.0  # H1 bakes alpha into B
    return random_truth(model, seed=seed, paths=paths, deltas=deltas, alpha=alpha, share_fused_down=share)


@pytest.mark.parametrize("target", list(HY_TARGET))
@pytest.mark.parametrize(
    "source,share",
    [("H1", True), ("H2", True), ("H2", False), ("H3", True), ("H4", False), ("H5", True), ("H5", False),
     ("H6", False), ("H6-split", False)],
)  # fmt: skip
def test_hunyuan_convert_matches_independent_writer(tmp_path, source, share, target):
    """Split -> fused: one A shared by the pieces gives the fused LoRA; per-piece A's give
    the exact block-diagonal form (the writers do the same). Fused -> split: A copied."""
    model = tiny("hunyuan-t2v")
    truth = _hy_truth(model, source, HY_TARGET[target], share, seed=3 + len(source))
    src = write_lora(tmp_path / "src.safetensors", truth, source)
    out = tmp_path / f"{target}.safetensors"
    report = convert_lora(src, out, to=target)
    assert not report.dropped
    grows = not share and target != "diffusers" and source in ("H5", "H6", "H6-split")  # split in, fused out
    assert bool(report.notes) == grows, report.notes
    if grows:
        assert any("block-diagonal" in n and "img_attn" in n for n in report.notes)
    if source in ("H1", "H2", "H3", "H4") and not share and target == "diffusers":
        # the source itself is block-diagonal (per-piece A's, scales baked into B): split
        # back, each piece keeps only its own ranks, at scale 1
        got = read_lora(out)
        for path, low in truth.modules.items():
            assert got.modules[path].rank == low.rank
        assert_same_params(merged(model, got), merged(model, truth), atol=2e-6)
        return
    want = write_lora(tmp_path / "want.safetensors", truth, HY_TARGET[target])
    assert_same_file(out, want, zero_extra=".lora_B.bias" if target == "diffusers" else None,
                     rtol=1e-6 if source == "H5" else 0.0)


def _vidlora_output(kind, files_and_weights):
    model = tiny(kind)
    h = vidlora.attach(model)
    for f, w in files_and_weights:
        h.add(str(f), weight=w)
    out = run(model, tiny_transformer_inputs(kind))
    h.detach()
    return out


@pytest.mark.parametrize("kind,source", [("wan-i2v", "W3"), ("hunyuan-t2v", "H2")])
def test_converted_files_give_the_same_output_through_vidlora(tmp_path, kind, source):
    model = tiny(kind)
    if kind.startswith("wan"):
        truth = _wan_truth(model, "W2", source, seed=1)
    else:
        truth = _hy_truth(model, source, "H4", share=False, seed=2)
    src = write_lora(tmp_path / "src.safetensors", truth, source)
    want = _vidlora_output(kind, [(src, 0.7)])
    assert (want - run(model, tiny_transformer_inputs(kind))).abs().max() > 0.05
    for target in ("comfyui", "musubi", "original", "diffusers"):
        out = tmp_path / f"{target}.safetensors"
        convert_lora(src, out, to=target, drop_unsupported=target == "diffusers")
        if target == "diffusers":  # norms / modulation have no diffusers name: compare without them
            kept = Truth(truth.modules, {k: v for k, v in truth.deltas.items()
                                         if k.endswith(".bias") and k[: -len(".bias")] in truth.modules})
            src_kept = write_lora(tmp_path / "kept.safetensors", kept, source)
            want_kept = _vidlora_output(kind, [(src_kept, 0.7)])
            torch.testing.assert_close(_vidlora_output(kind, [(out, 0.7)]), want_kept, atol=2e-5, rtol=1e-5)
        else:
            torch.testing.assert_close(_vidlora_output(kind, [(out, 0.7)]), want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("kind,source", [("wan-i2v", "W3"), ("hunyuan-t2v", "H4")])
def test_diffusers_target_read_by_diffusers_and_peft(tmp_path, kind, source):
    """diffusers' own loader + PEFT reads the file (alpha from lora_adapter_metadata, with
    different alphas per module and PEFT lora_bias) and gives vidlora's output."""
    model = tiny(kind)
    paths = [p for p in (wan_truth_spec(model, "W4")[0] if kind.startswith("wan") else hunyuan_truth_spec(model, "H5")[0])]
    paths = [p for p in paths if p != "x_embedder.proj"]
    deltas = ["blocks.0.attn1.to_q.bias", "proj_out.bias"] if kind.startswith("wan") else ["proj_out.bias"]
    truth = random_truth(model, seed=4, paths=paths, deltas=deltas, alpha=4.0)
    for i, low in enumerate(truth.modules.values()):
        low.alpha = (4.0, 2.0, 8.0)[i % 3]
    src = write_lora(tmp_path / "src.safetensors", truth, source)
    out = tmp_path / "d.safetensors"
    convert_lora(src, out, to="diffusers")
    inputs = tiny_transformer_inputs(kind)
    theirs = run(load_with_diffusers(model, out), inputs)
    ours = run(merged(model, truth), inputs)
    assert (ours - run(model, inputs)).abs().max() > 0.05
    torch.testing.assert_close(theirs, ours, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(run(merged(model, read_lora(out)), inputs), ours, atol=2e-5, rtol=1e-5)


def test_two_expert_file_kept_split_and_joined(tmp_path):
    model = tiny("wan-t2v")
    paths = [p for p in wan_truth_spec(model, "W1")[0] if p.startswith("blocks.")]
    high, low = random_truth(model, seed=20, paths=paths, alpha=2.0), random_truth(model, seed=21, paths=paths[:5])
    combo = write_lora(tmp_path / "combo.safetensors", Truth(), "W6", experts={"high": high, "low": low})
    # original naming has the two-expert form (W6): one file
    convert_lora(combo, tmp_path / "same.safetensors", to="original")
    assert_same_file(tmp_path / "same.safetensors", combo)
    # ComfyUI loads one LoRA per expert model: one file per expert, named for it
    report = convert_lora(combo, tmp_path / "c.safetensors", to="comfyui")
    assert report.outputs == [str(tmp_path / "c_high_noise.safetensors"), str(tmp_path / "c_low_noise.safetensors")]
    for expert, truth in (("high", high), ("low", low)):
        path = tmp_path / f"c_{expert}_noise.safetensors"
        assert_same_file(path, write_lora(tmp_path / f"w_{expert}.safetensors", truth, "W2"))
        assert read_lora(path).variant.expert == expert
    with pytest.raises(VidloraError, match="no two-expert form"):
        convert_lora(combo, tmp_path / "d.safetensors", to="diffusers", experts="join")
    joined = convert_lora({"high": tmp_path / "c_high_noise.safetensors", "low": tmp_path / "c_low_noise.safetensors"},
                          tmp_path / "joined.safetensors", to="original")  # fmt: skip
    assert joined.outputs == [str(tmp_path / "joined.safetensors")]
    assert_same_file(tmp_path / "joined.safetensors", combo)


def test_metadata_carried_with_source_sha256(tmp_path):
    model = tiny("wan-t2v")
    truth = random_truth(model, seed=5, paths=["blocks.0.attn1.to_q"], alpha=1.0)
    meta = {"modelspec.trigger_phrase": "zxc style", "ss_base_model_version": "wan_2.1", "ss_network_dim": "4"}
    src = write_lora(tmp_path / "src.safetensors", truth, "W3", metadata=meta)
    convert_lora(src, tmp_path / "out.safetensors", to="diffusers")
    with safe_open(str(tmp_path / "out.safetensors"), "pt") as f:
        got = f.metadata()
    assert {k: got[k] for k in meta} == meta
    assert got["vidlora.source_sha256"] == hashlib.sha256(open(src, "rb").read()).hexdigest()
    assert got["vidlora.source_scheme"].startswith("W3 ") and got["format"] == "pt"
    assert json.loads(got["lora_adapter_metadata"])["transformer.lora_alpha"] == 1.0
    out = read_lora(tmp_path / "out.safetensors")
    assert out.trigger_words == ["zxc style"]
    assert out.modules["blocks.0.attn1.to_q"].scale == pytest.approx(1.0 / 4)


def test_skipped_text_encoder_keys_are_reported(tmp_path):
    model = tiny("hunyuan-t2v")
    truth = random_truth(model, seed=14, paths=["transformer_blocks.0.attn.to_out.0"])
    extra = {"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.randn(2, 8)}
    src = write_lora(tmp_path / "te.safetensors", truth, "H2", extra=extra)
    report = convert_lora(src, tmp_path / "out.safetensors", to="comfyui")
    assert any("1 keys the reader skips are not carried (text-encoder key" in n for n in report.notes)
    assert not any(k.startswith("lora_te") for k in load_file(tmp_path / "out.safetensors"))


def test_rslora_scale_kept_as_alpha(tmp_path):
    model = tiny("wan-t2v")
    truth = random_truth(model, seed=6, paths=["blocks.0.attn1.to_q"], rank=9)
    src = write_lora(tmp_path / "src.safetensors", truth, "W4")
    meta = {"lora_adapter_metadata": json.dumps({"transformer.r": 9, "transformer.lora_alpha": 6,
                                                 "transformer.use_rslora": True})}  # fmt: skip
    tensors = load_file(src)
    from helpers.writers import write_raw

    rs = write_raw(tmp_path / "rs.safetensors", tensors, meta)
    convert_lora(rs, tmp_path / "k.safetensors", to="musubi")
    got = load_file(tmp_path / "k.safetensors")
    assert float(got["lora_unet_blocks_0_self_attn_q.alpha"]) == pytest.approx(6 / 3 * 9)
    assert read_lora(tmp_path / "k.safetensors").modules["blocks.0.attn1.to_q"].scale == pytest.approx(2.0)


def test_unsupported_entries_listed_or_dropped(tmp_path):
    model = tiny("wan-t2v")
    truth = random_truth(model, seed=7, paths=["blocks.0.attn1.to_q"], deltas=["blocks.0.norm2.weight",
                                                                                 "blocks.1.scale_shift_table"])
    src = write_lora(tmp_path / "src.safetensors", truth, "W2")
    with pytest.raises(UnsupportedError, match=r"2 entries .*blocks\.0\.norm2\.weight.*scale_shift_table"):
        convert_lora(src, tmp_path / "d.safetensors", to="diffusers")
    assert not list(tmp_path.glob("d*")) and not list(tmp_path.glob(".vidlora-*"))
    report = convert_lora(src, tmp_path / "d.safetensors", to="diffusers", drop_unsupported=True)
    assert [name for name, _ in report.dropped] == ["blocks.0.norm2.weight", "blocks.1.scale_shift_table"]
    assert "dropped 2 entries" in str(report)
    assert set(read_lora(tmp_path / "d.safetensors").modules) == {"blocks.0.attn1.to_q"}


def test_refuses_to_overwrite_and_writes_atomically(tmp_path, monkeypatch):
    model = tiny("wan-t2v")
    src = write_lora(tmp_path / "src.safetensors", random_truth(model, seed=8, paths=["blocks.0.attn1.to_q"]), "W1")
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(VidloraError, match="exists; pass overwrite=True"):
        convert_lora(src, out, to="comfyui")
    assert out.read_bytes() == b"keep me"
    with pytest.raises(VidloraError, match="also an input"):
        convert_lora(src, src, to="comfyui", overwrite=True)

    import safetensors.torch

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        convert_lora(src, out, to="comfyui", overwrite=True)
    assert out.read_bytes() == b"keep me" and not list(tmp_path.glob(".vidlora-*"))
    monkeypatch.undo()
    convert_lora(src, out, to="comfyui", overwrite=True, dtype=torch.bfloat16)
    assert {t.dtype for t in load_file(out).values() if t.ndim} == {torch.bfloat16}
