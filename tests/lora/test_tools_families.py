"""The tools on the derived families and on LyCORIS: Wan VACE (vace_blocks before/after_proj),
Wan 2.2 Animate (the face adapter's fused linear1_kv), FramePack (musubi's kohya keys over
diffusers names) and HunyuanVideo 1.5 (separate q/k/v, Tencent's PEFT files) converted
key for key against the independent writers; LoHa / LoKr kept factored for comfyui /
musubi / original, refused by name for diffusers, and merged exactly as LoRA ranks."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from helpers.family_models import pristine
from helpers.format_cases import tiny
from helpers.merged import assert_same_params, merged, merged_stack
from helpers.writers import LoHaTruth, LoKrTruth, Truth, random_truth, write_lora, write_raw
from vidlora.lora import read_lora
from vidlora.lora.tools import convert_lora, merge_loras
from vidlora.lora.tools.render import UnsupportedError

_WAN = {"comfyui": "W2", "original": "W1", "musubi": "W3", "diffusers": "W4"}
CASES = {
    "wan-vace": ("W3", _WAN),
    "wan-animate": ("W2", _WAN),
    "framepack": ("FP-musubi", {"comfyui": "H4", "original": "H1", "musubi": "FP-musubi", "diffusers": "H5"}),
    "hunyuan1.5": ("HV15-musubi", {"comfyui": "HV15-comfy", "original": "HV15-tencent", "musubi": "HV15-musubi",
                                   "diffusers": "HV15-diffusers"}),
}  # fmt: skip


def _linears(model, prefixes) -> list[str]:
    return [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n.startswith(prefixes)]


def _truth(model, kind: str, source: str, target: str) -> Truth:
    if kind.startswith("wan"):
        paths = _linears(model, ("blocks.", "vace_blocks.", "face_adapter.")) + ["proj_out"]
        deltas = ["blocks.0.norm2.weight", "blocks.1.attn1.to_q.bias", "blocks.0.scale_shift_table", "proj_out.bias"]
        if kind == "wan-vace":
            deltas += ["vace_blocks.1.scale_shift_table", "vace_blocks.0.proj_in.bias"]
        if target == "W4":
            deltas = [d for d in deltas if d.endswith(".bias") and d[: -len(".bias")] in paths]
    else:
        paths = _linears(model, ("transformer_blocks.", "single_transformer_blocks."))
        if kind == "framepack" and target in ("H5", "FP-musubi"):
            paths += ["image_projection.up", "image_projection.down"]  # FramePack's own: the file reads as FramePack
        deltas = []
    return random_truth(model, seed=5, paths=paths, deltas=deltas, alpha=None if target == "H1" else 3.0,
                        share_fused_down=True)  # fmt: skip


def _same_file(got, want, skip_zero_suffix: str | None = None, rename=lambda k: k):
    g, w = load_file(got), {rename(k): v for k, v in load_file(want).items()}
    extra = sorted(set(g) - set(w))
    if skip_zero_suffix:
        assert all(k.endswith(skip_zero_suffix) and not g[k].any() for k in extra), extra[:3]
        extra = []
    assert not extra and set(w) <= set(g), (extra[:3], sorted(set(w) - set(g))[:3])
    bad = [k for k in w if not torch.equal(g[k], w[k])]
    assert not bad, bad[:3]


@pytest.mark.parametrize("target", ["comfyui", "original", "musubi", "diffusers"])
@pytest.mark.parametrize("kind", list(CASES))
def test_derived_family_conversions(tmp_path, kind, target):
    model = pristine(kind)
    source, schemes = CASES[kind]
    truth = _truth(model, kind, source, schemes[target])
    src = write_lora(tmp_path / "src.safetensors", truth, source)
    out = tmp_path / "out.safetensors"
    report = convert_lora(src, out, to=target)
    assert not report.dropped and report.scheme == schemes[target]
    if (kind, target) != ("hunyuan1.5", "diffusers"):
        # (diffusers names of HunyuanVideo 1.0 and 1.5 coincide; at the tiny width 16, which no
        # real model has, the reader cannot tell them apart: it reads as the first registered)
        assert read_lora(out).arch == read_lora(src).arch
    want = write_lora(tmp_path / "want.safetensors", truth, schemes[target])
    rename = (lambda k: k.replace(".diff_m", ".modulation.diff")) if target == "comfyui" and kind.startswith("wan") else (lambda k: k)
    _same_file(out, want, ".lora_B.bias" if target == "diffusers" else None, rename)
    assert_same_params(merged(model, read_lora(out)), merged(model, truth), atol=2e-6)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _loha(shape, alpha, g):
    out, inp = shape
    return LoHaTruth(torch.randn(out, 3, generator=g), torch.randn(3, inp, generator=g),
                     torch.randn(out, 2, generator=g), torch.randn(2, inp, generator=g), alpha)  # fmt: skip


def _lokr(shape, form, alpha, g):
    out, inp = shape
    w1 = (torch.randn(4, 2, generator=g), torch.randn(2, 4, generator=g)) if form == "both" else torch.randn(4, 4, generator=g)
    w2 = torch.randn(out // 4, inp // 4, generator=g) if form == "full" else (
        torch.randn(out // 4, 2, generator=g), torch.randn(2, inp // 4, generator=g))
    return LoKrTruth(w1, w2, alpha)


_PATHS = ["blocks.0.attn1.to_q", "blocks.0.attn2.to_out.0", "blocks.1.ffn.net.0.proj", "blocks.2.ffn.net.2"]


def _no_alpha(k: str) -> bool:
    return not k.endswith(".alpha")


@pytest.mark.parametrize("form,alpha", [("loha", 6.0), ("loha", None), ("full", 3.0), ("w2", 1.0), ("both", 4.0)])
def test_lycoris_kept_factored(tmp_path, form, alpha):
    """Factors written as read (key for key against the writers); alpha where it carries the
    scale (musubi writes it on every module; two full LoKr factors take none)."""
    model = tiny("wan-t2v")
    g = _gen(7)
    shapes = {p: tuple(model.get_submodule(p).weight.shape) for p in _PATHS}
    truth = Truth({p: _loha(s, alpha, g) if form == "loha" else _lokr(s, form, alpha, g) for p, s in shapes.items()})
    src = write_lora(tmp_path / "src.safetensors", truth, "W3")
    for target, scheme in (("comfyui", "W2"), ("original", "W1"), ("musubi", "W3")):
        out = tmp_path / f"{target}.safetensors"
        convert_lora(src, out, to=target)
        got, want = load_file(out), load_file(write_lora(tmp_path / f"w{target}.safetensors", truth, scheme))
        assert {k for k in got if _no_alpha(k)} == {k for k in want if _no_alpha(k)}
        assert all(torch.equal(got[k], want[k]) for k in want if _no_alpha(k))
        scale_carrying = alpha is not None and form != "full"
        for k in (k for k in want if k.endswith(".alpha") and scale_carrying):
            assert float(got[k]) == float(want[k])
        assert not any(".lora_" in k for k in got)  # never turned into LoRA or dense tensors
        assert_same_params(merged(model, read_lora(out)), merged(model, truth), atol=1e-5)
    with pytest.raises(UnsupportedError, match=r"LyCORIS Lo(Ha|Kr) has no diffusers form"):
        convert_lora(src, tmp_path / "d.safetensors", to="diffusers")


def test_model_picks_the_family_of_the_lineage(tmp_path):
    """A HunyuanVideo-named LoRA is a FramePack LoRA too; with the FramePack model given,
    --to musubi writes musubi's FramePack naming (kohya keys over diffusers names)."""
    model = pristine("framepack")
    truth = random_truth(model, seed=6, paths=_linears(model, ("transformer_blocks.",)), alpha=3.0)
    src = write_lora(tmp_path / "h5.safetensors", truth, "H5")
    assert read_lora(src).arch == "hunyuan-video"
    assert convert_lora(src, tmp_path / "h2.safetensors", to="musubi").scheme == "H2"
    report = convert_lora(src, tmp_path / "fp.safetensors", to="musubi", model=model)
    assert report.scheme == "FP-musubi"
    _same_file(tmp_path / "fp.safetensors", write_lora(tmp_path / "want.safetensors", truth, "FP-musubi"))


def test_hunyuan_fused_lokr_fused_back(tmp_path):
    """A LoKr on Hunyuan's fused img_attn_qkv is read as three row selections of one
    Kronecker product; written for ComfyUI it is that one LoKr again."""
    g = _gen(8)
    model = tiny("hunyuan-t2v")
    out_f, inp = model.get_submodule("transformer_blocks.0.attn.to_q").weight.shape
    w1, w2 = torch.randn(3, 2, generator=g), (torch.randn(out_f, 2, generator=g), torch.randn(2, inp // 2, generator=g))
    key = "lora_unet_double_blocks_0_img_attn_qkv"
    src = write_raw(tmp_path / "h2.safetensors", {f"{key}.lokr_w1": w1, f"{key}.lokr_w2_a": w2[0],
                                                   f"{key}.lokr_w2_b": w2[1], f"{key}.alpha": torch.tensor(1.0)})
    convert_lora(src, tmp_path / "h4.safetensors", to="comfyui")
    got = load_file(tmp_path / "h4.safetensors")
    name = "diffusion_model.double_blocks.0.img_attn.qkv"
    assert sorted(got) == sorted(f"{name}{s}" for s in (".alpha", ".lokr_w1", ".lokr_w2_a", ".lokr_w2_b"))
    assert torch.equal(got[f"{name}.lokr_w1"], w1) and float(got[f"{name}.alpha"]) == 1.0
    assert_same_params(merged(model, read_lora(tmp_path / "h4.safetensors")), merged(model, read_lora(src)), atol=1e-6)


def test_lycoris_merged_exactly_as_lora_ranks(tmp_path):
    model = tiny("wan-t2v")
    g = _gen(9)
    shapes = {p: tuple(model.get_submodule(p).weight.shape) for p in _PATHS}
    loha = write_lora(tmp_path / "a.safetensors", Truth({p: _loha(s, 6.0, g) for p, s in shapes.items()}), "W3")
    lokr = write_lora(tmp_path / "b.safetensors", Truth({p: _lokr(s, "w2", 1.0, g) for p, s in shapes.items()}), "W3")
    full = write_lora(tmp_path / "c.safetensors", Truth({p: _lokr(s, "full", None, g) for p, s in shapes.items()}), "W3")
    lora = write_lora(tmp_path / "d.safetensors", random_truth(model, 1, _PATHS, alpha=2.0), "W1")
    for to, stack in (("diffusers", [(loha, 0.7), (lokr, -0.4), (lora, 0.5)]),
                      ("comfyui", [(loha, 0.7), (lokr, -0.4), (full, 1.2), (lora, 0.5)])):  # fmt: skip
        report = merge_loras(stack, tmp_path / f"m_{to}.safetensors", to=to)
        got = read_lora(report.outputs[0])
        # LoHa 3 x 2 ranks, LoKr rank(w1 = 4 x 4) x rank(w2) = 4 x 2, then the LoRA's own
        assert all(got.modules[p].rank == 3 * 2 + 4 * 2 + read_lora(lora).modules[p].rank for p in _PATHS)
        assert not got.deltas if to == "diffusers" else sorted(got.deltas) == [f"{p}.weight" for p in sorted(_PATHS)]
        want = merged_stack(model, [(read_lora(f), w) for f, w in stack])
        assert_same_params(merged_stack(model, [(got, 1.0)]), want, atol=1e-5)
