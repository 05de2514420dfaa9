"""attach on the tiny Wan VACE, SkyReels V2, Wan 2.2 Animate, FramePack and HunyuanVideo 1.5
transformers, for every key scheme their LoRAs come in: one and two stacked adapters equal
the independent merged-weights reference (helpers/merged.py); detach is bit exact."""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.runtime.unit import LoRALinear

from helpers.family_models import family_inputs, family_model, pristine
from helpers.merged import merged_stack
from helpers.models import run, state_snapshot
from helpers.writers import HUNYUAN_SCHEMES, HV15_SCHEMES, WAN_SCHEMES, random_truth, write_lora


def _linears(model, prefix: str = "") -> list[str]:
    return [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n.startswith(prefix)]


# per family: LoRA paths every scheme carries, extra ones only some schemes name, full deltas
def _wan_family_spec(model, kind: str, scheme: str) -> tuple[list[str], list[str]]:
    groups = ("blocks.", "vace_blocks.", "face_adapter.")
    paths = [p for p in _linears(model) if p.startswith(groups)]
    extra = ["proj_out", "condition_embedder.time_proj"]
    if kind == "skyreels-v2":
        extra += ["fps_projection.net.0.proj", "fps_projection.net.2"]
    if kind == "wan-animate":
        extra += ["face_encoder.out_proj"]
    deltas: list[str] = []
    if scheme in ("W1", "W2", "W3", "W3b", "W5"):
        deltas = ["blocks.0.norm2.weight", "blocks.1.attn1.to_q.bias", "blocks.0.scale_shift_table", "proj_out.bias"]
        if kind == "wan-vace":
            deltas += ["vace_blocks.1.scale_shift_table", "vace_blocks.0.proj_in.bias"]
    if scheme == "W4":
        deltas = ["blocks.0.attn1.to_q.bias", "proj_out.bias"]
    if scheme in ("W7", "W-peft", "W-peft-meta"):  # no top-level names in these producers' files
        extra = []
    return paths + extra, deltas


def _hy_family_spec(model, kind: str, scheme: str) -> tuple[list[str], list[str]]:
    paths = _linears(model, "transformer_blocks.") + _linears(model, "single_transformer_blocks.")
    if kind == "framepack":
        if scheme in ("H5", "H6", "FP-musubi"):
            paths += ["image_projection.up", "image_projection.down", "proj_out"]
        if scheme in ("H1", "H2", "H4"):
            paths += ["norm_out.linear", "proj_out"]  # the half-swapped final adaLN
        return paths, (["transformer_blocks.0.attn.to_out.0.bias"] if scheme in ("H1", "H2", "H4") else [])
    # HunyuanVideo 1.5
    paths += ["norm_out.linear", "proj_out", "context_embedder_2.linear_1", "image_embedder.linear_1",
              "time_embed.timestep_embedder.linear_1", "context_embedder.token_refiner.refiner_blocks.0.ff.net.0.proj"]
    deltas = []
    if scheme == "HV15-comfy":
        deltas = ["norm_out.linear.bias", "transformer_blocks.0.attn.norm_q.weight", "transformer_blocks.1.ff.net.2.bias"]
    if scheme == "HV15-diffusers":
        deltas = ["transformer_blocks.0.attn.to_q.bias"]
    return paths, deltas


_WAN_ALPHA = {"W1": None, "W2": 2.0, "W3": 1.0, "W3b": 4.0, "W4": 8.0, "W4b": 3.0, "W5": 2.0, "W7": 2.0,
              "W-peft": 4.0, "W-peft-meta": 6.0}  # fmt: skip
CASES = (
    # VACE and SkyReels V2 take every Wan scheme; Wan Animate's LoRAs come as PEFT saves of the
    # original model (the relighting LoRA: sidecar or header metadata) and lightx2v extractions (W2)
    [(k, s) for k in ("wan-vace", "skyreels-v2") for s in WAN_SCHEMES]
    + [("wan-animate", s) for s in ("W-peft", "W-peft-meta", "W2", "W4", "W3")]
    + [("framepack", s) for s in (*HUNYUAN_SCHEMES, "FP-musubi")]
    + [("hunyuan1.5", s) for s in HV15_SCHEMES]
)


def _write(tmp_path, kind, scheme, seed, sub=""):
    model = pristine(kind)
    spec = _wan_family_spec if kind in ("wan-vace", "skyreels-v2", "wan-animate") else _hy_family_spec
    paths, deltas = spec(model, kind, scheme)
    alpha = _WAN_ALPHA.get(scheme, None if scheme in ("H1", "H5", "H6-split", "HV15-diffusers") else 3.0)
    # fused originals written as one LoRA (shared A): Hunyuan's qkv / linear1, Animate's linear1_kv
    share = (kind == "framepack" and scheme not in ("H5", "H6", "H6-split", "FP-musubi")) or kind == "wan-animate"
    truth = random_truth(model, seed=seed, paths=paths, deltas=deltas, alpha=alpha, share_fused_down=share)
    folder = tmp_path / f"{scheme}{sub}"
    folder.mkdir()
    # PEFT's save_pretrained names its file adapter_model.safetensors (adapter_config.json beside it)
    name = "adapter_model" if "sidecar" in scheme or scheme in ("W-peft", "W4b") else f"{scheme}{sub}"
    return truth, write_lora(folder / f"{name}.safetensors", truth, scheme)


def _next(scheme: str, kind: str) -> str:
    schemes = [s for k, s in CASES if k == kind]
    return schemes[(schemes.index(scheme) + 1) % len(schemes)]


@pytest.mark.parametrize("kind,scheme", CASES)
def test_one_and_two_stacked_adapters_equal_the_merged_reference(tmp_path, kind, scheme):
    model = family_model(kind)
    inputs = family_inputs(kind)
    base = run(model, inputs)
    before = state_snapshot(model)
    t1, f1 = _write(tmp_path, kind, scheme, seed=3)
    other = _next(scheme, kind)
    t2, f2 = _write(tmp_path, kind, other, seed=4, sub="-2")

    h = vidlora.attach(model)
    h.add(f1, name="one", weight=0.9)
    assert h.report()["adapters"][0]["skipped"] == []
    ref = run(merged_stack(pristine(kind), [(t1, 0.9)]), inputs)
    out = run(model, inputs)
    assert (out - base).abs().max() > 1e-2
    torch.testing.assert_close(out, ref, atol=3e-5, rtol=1e-4)

    h.add(f2, name="two", weight=-0.7)
    ref = run(merged_stack(pristine(kind), [(t1, 0.9), (t2, -0.7)]), inputs)
    torch.testing.assert_close(run(model, inputs), ref, atol=3e-5, rtol=1e-4)

    h.detach()
    after = state_snapshot(model)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert torch.equal(run(model, inputs), base)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())


def test_skyreels_attention_runs_fused():
    """SkyReels V2's processor reads to_qkv / to_kv when fused: q/k/v are one unit."""
    model = family_model("skyreels-v2-i2v")
    inputs = family_inputs("skyreels-v2-i2v")
    base = run(model, inputs)
    h = vidlora.attach(model)
    attn1, attn2 = model.blocks[0].attn1, model.blocks[0].attn2
    assert isinstance(attn1.to_qkv, LoRALinear) and len(attn1.to_qkv.parts) == 3 and attn1.fused_projections
    assert isinstance(attn2.to_kv, LoRALinear) and isinstance(attn2.to_added_kv, LoRALinear)
    torch.testing.assert_close(run(model, inputs), base, atol=1e-5, rtol=1e-5)
    h.detach()
    assert not hasattr(attn1, "to_qkv") and torch.equal(run(model, inputs), base)


@pytest.mark.parametrize("kind", ["wan-vace", "wan-animate", "hunyuan1.5", "framepack"])
def test_fused_units_only_where_the_attention_reads_them(kind):
    model = family_model(kind)
    vidlora.attach(model)
    fused = {n for n, m in model.named_modules() if isinstance(m, LoRALinear) and len(m.parts) > 1}
    if kind == "wan-vace":  # blocks and vace_blocks: WanAttnProcessor
        assert "blocks.0.attn1.to_qkv" in fused and "vace_blocks.1.attn1.to_qkv" in fused
    elif kind == "wan-animate":  # the face adapter's processor reads the separate projections
        assert "blocks.0.attn1.to_qkv" in fused and not any(n.startswith("face_adapter") for n in fused)
        assert isinstance(model.face_adapter[0].to_q, LoRALinear)
    else:  # HunyuanVideo's processors never fuse
        assert not fused
