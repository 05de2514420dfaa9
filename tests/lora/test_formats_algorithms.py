"""LyCORIS LoHa / LoKr applied exactly (as dense deltas); DoRA and the algorithms vidlora
cannot apply exactly refused by name, never half-applied."""

from __future__ import annotations

import pytest
import torch

from helpers.format_cases import tiny
from helpers.writers import LoHaTruth, LoKrTruth, Truth, random_truth, write_lora
from helpers.merged import assert_same_params, merged
from vidlora.errors import LoRAFormatError
from vidlora.lora import match_lora, read_lora
from vidlora.model import inventory


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _loha(out: int, inp: int, r: int, alpha, g) -> LoHaTruth:
    return LoHaTruth(
        torch.randn(out, r, generator=g) * 0.3, torch.randn(r, inp, generator=g) * 0.3,
        torch.randn(out, r, generator=g) * 0.3, torch.randn(r, inp, generator=g) * 0.3, alpha,
    )


def _lokr(out: int, inp: int, form: str, alpha, g) -> LoKrTruth:
    """Factors of a [out, in] weight as kron([4, 4], [out/4, in/4]); w2 (and w1) full or rank 2."""
    a, b = out // 4, inp // 4

    def rnd(*s):
        return torch.randn(*s, generator=g) * 0.3

    w1 = (rnd(4, 2), rnd(2, 4)) if form == "both-factored" else rnd(4, 4)
    w2 = rnd(a, b) if form == "full" else (rnd(a, 2), rnd(2, b))
    return LoKrTruth(w1, w2, alpha)


_LINEARS = ["blocks.0.attn1.to_q", "blocks.0.attn2.to_out.0", "blocks.1.ffn.net.0.proj", "blocks.2.ffn.net.2"]


@pytest.mark.parametrize("alpha", [None, 1.0, 6.0])
def test_loha_is_exact(tmp_path, alpha):
    model = tiny("wan-t2v")
    g = _gen(1)
    truth = Truth({p: _loha(*model.get_submodule(p).weight.shape, 3, alpha, g) for p in _LINEARS})
    lora = read_lora(write_lora(tmp_path / "loha.safetensors", truth, "W3"))
    assert "LoHa" in lora.scheme and not lora.modules
    assert sorted(lora.deltas) == sorted(f"{p}.weight" for p in _LINEARS)
    match_lora(lora, inventory(model))
    assert_same_params(merged(model, lora), merged(model, truth), atol=2e-6)


@pytest.mark.parametrize("scheme", ["W3", "W7"])
@pytest.mark.parametrize("form,alpha", [("full", 3.0), ("w2-factored", 1.0), ("both-factored", 4.0), ("w2-factored", None)])
def test_lokr_is_exact(tmp_path, scheme, form, alpha):
    """alpha / r only when a factor is low-rank (r = w2's rank if factored, else w1's);
    two full factors mean scale 1 whatever alpha says."""
    model = tiny("wan-t2v")
    g = _gen(2)
    truth = Truth({p: _lokr(*model.get_submodule(p).weight.shape, form, alpha, g) for p in _LINEARS})
    lora = read_lora(write_lora(tmp_path / "lokr.safetensors", truth, scheme))
    assert lora.scheme.startswith(scheme + " ")
    assert_same_params(merged(model, lora), merged(model, truth), atol=2e-6)


def test_w7_plain_lora_half_converted_names(tmp_path):
    model = tiny("wan-i2v")
    paths = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n.startswith("blocks.")]
    truth = random_truth(model, seed=3, paths=paths, alpha=2.0)
    path = write_lora(tmp_path / "w7.safetensors", truth, "W7")
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        keys = set(f.keys())
    assert "lycoris_blocks_0_ffn_net_0_proj.lora_down.weight" in keys
    assert "lycoris_blocks_0_self_attn_to_out_0.lora_down.weight" in keys
    lora = read_lora(path)
    assert_same_params(merged(model, lora), merged(model, truth), atol=2e-6)


@pytest.mark.parametrize(
    "scheme,path,shape",
    [
        ("W1", "blocks.0.attn1.to_q", (24, 1)),
        ("W4", "blocks.0.attn1.to_q", (24,)),
        ("W3", "blocks.0.attn2.to_out.0", (1, 24)),
        ("H2", "transformer_blocks.0.attn.to_out.0", (20, 1)),
    ],
)
def test_dora_refused_by_name(tmp_path, scheme, path, shape):
    kind = "hunyuan-t2v" if scheme.startswith("H") else "wan-t2v"
    model = tiny(kind)
    truth = random_truth(model, seed=4, paths=[path], alpha=2.0 if scheme != "W4" else None)
    truth.modules[path].magnitude = torch.rand(shape) + 0.5
    written = write_lora(tmp_path / "dora.safetensors", truth, scheme)
    with pytest.raises(LoRAFormatError, match=r"DoRA .*refused rather than half-applied") as err:
        read_lora(written)
    assert str(written) in str(err.value)
    assert ("lora_magnitude_vector" if scheme == "W4" else "dora_scale") in str(err.value)


@pytest.mark.parametrize(
    "suffixes,name",
    [
        ({".a1.weight": (2, 24), ".a2.weight": (24, 2), ".b1.weight": (2, 24), ".b2.weight": (24, 2)}, "GLoRA"),
        ({".oft_blocks": (4, 6, 6)}, "OFT"),
        ({".lora_down.weight": (2, 24), ".lora_up.weight": (24, 2), ".lora_mid.weight": (2, 2, 1, 1)}, "lora_mid"),
        ({".hada_w1_a": (24, 2), ".hada_w1_b": (2, 24), ".hada_w2_a": (24, 2), ".hada_w2_b": (2, 24),
          ".hada_t1": (2, 2, 1, 1)}, "Tucker"),
        ({".set_weight": (24, 24)}, "set_weight"),
    ],
)
def test_other_algorithms_refused_by_name(tmp_path, suffixes, name):
    model = tiny("wan-t2v")
    truth = random_truth(model, seed=5, paths=["blocks.1.attn1.to_k"])
    extra = {f"diffusion_model.blocks.0.self_attn.q{s}": torch.randn(shape) for s, shape in suffixes.items()}
    path = write_lora(tmp_path / "algo.safetensors", truth, "W2", extra=extra)
    with pytest.raises(LoRAFormatError, match=name):
        read_lora(path)


def test_stand_in_refused(tmp_path):
    model = tiny("wan-t2v")
    truth = random_truth(model, seed=6, paths=["blocks.0.attn1.to_q"])
    extra = {"diffusion_model.blocks.0.self_attn.q_loras.down.weight": torch.randn(2, 24)}
    with pytest.raises(LoRAFormatError, match="Stand-In"):
        read_lora(write_lora(tmp_path / "standin.safetensors", truth, "W2", extra=extra))
