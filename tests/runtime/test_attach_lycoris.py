"""LoHa / LoKr through attach, against the independent merged-weights reference: every way
vidlora applies them (exact LoRA ranks in the fused stack, the Kronecker side term, a dense
side term formed on the device), one and two stacked adapters, strengths, removal, detach,
and unmerged on FP8 bases."""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.app.tiny import tiny_transformer, tiny_transformer_inputs
from vidlora.runtime.unit import LoRALinear

from helpers.merged import merged_stack
from helpers.models import run, state_snapshot
from helpers.writers import LoHaTruth, LoKrTruth, Truth, write_lora, write_raw


def _rnd(g, *shape):
    return torch.randn(*shape, generator=g) * 0.3


def _wan_truth(model, seed: int, forms) -> Truth:
    """One LyCORIS module per path; ``forms`` cycles over: loha-low (rank 2 x 2: stack
    ranks), loha-high (6 x 6 = 36 > 24 * 24 / 48: dense side term), lokr-full (kron
    [4, 4] x [out/4, in/4]: Kronecker term), lokr-w2 (w2 rank 2: stack ranks)."""
    g = torch.Generator().manual_seed(seed)
    paths = ["blocks.0.attn1.to_q", "blocks.0.attn1.to_k", "blocks.0.attn1.to_v", "blocks.0.attn2.to_out.0",
             "blocks.1.attn2.to_k", "blocks.1.ffn.net.0.proj", "blocks.2.ffn.net.2", "blocks.2.attn1.to_out.0",
             "condition_embedder.time_proj"]  # fmt: skip
    mods = {}
    for i, p in enumerate(paths):
        out, inp = model.get_submodule(p).weight.shape
        form = forms[i % len(forms)]
        if form == "loha-low":
            mods[p] = LoHaTruth(_rnd(g, out, 2), _rnd(g, 2, inp), _rnd(g, out, 2), _rnd(g, 2, inp), 1.0)
        elif form == "loha-high":
            mods[p] = LoHaTruth(_rnd(g, out, 6), _rnd(g, 6, inp), _rnd(g, out, 6), _rnd(g, 6, inp), 3.0)
        elif form == "lokr-full":
            mods[p] = LoKrTruth(_rnd(g, 4, 4), _rnd(g, out // 4, inp // 4), None)
        else:
            mods[p] = LoKrTruth(_rnd(g, 4, 4), (_rnd(g, out // 4, 2), _rnd(g, 2, inp // 4)), 1.0)
    return Truth(mods)


ALL_FORMS = ("loha-low", "loha-high", "lokr-full", "lokr-w2")


def _routes(model) -> dict[str, int]:
    units = [m for m in model.modules() if isinstance(m, LoRALinear)]
    return {
        "ranks": sum(u.stack.used_rank > 0 for u in units),
        "kron": sum(len(u.kron_terms) for u in units),
        "dense": sum(u.dense_delta is not None for u in units),
    }


@pytest.mark.parametrize("n_adapters", [1, 2])
def test_lycoris_equals_merged_reference(tmp_path, n_adapters):
    model = tiny_transformer("wan-t2v", seed=0)
    inputs = tiny_transformer_inputs("wan-t2v")
    base = run(model, inputs)
    before = state_snapshot(model)
    truths = [_wan_truth(model, 10 + i, ALL_FORMS[i:] + ALL_FORMS[:i]) for i in range(n_adapters)]
    files = [write_lora(tmp_path / f"l{i}.safetensors", t, "W3" if i == 0 else "W7") for i, t in enumerate(truths)]
    weights = [0.8, -0.6][:n_adapters]
    h = vidlora.attach(model)
    for i, (f, w) in enumerate(zip(files, weights)):
        h.add(f, name=f"a{i}", weight=w)
    routes = _routes(model)
    assert routes["ranks"] and routes["kron"] and routes["dense"], routes
    ref = run(merged_stack(_fresh(), list(zip(truths, weights))), inputs)
    torch.testing.assert_close(run(model, inputs), ref, atol=2e-5, rtol=1e-5)
    # strengths are written in place for every route; disable / remove restore the base
    h.set_weight("a0", 0.3)
    ref = run(merged_stack(_fresh(), list(zip(truths, [0.3] + weights[1:]))), inputs)
    torch.testing.assert_close(run(model, inputs), ref, atol=2e-5, rtol=1e-5)
    for i in range(n_adapters):
        h.disable(f"a{i}")
    torch.testing.assert_close(run(model, inputs), base, atol=1e-6, rtol=0)
    for i in range(n_adapters):
        h.remove(f"a{i}")
    assert _routes(model) == {"ranks": 0, "kron": 0, "dense": 0}
    h.detach()
    after = state_snapshot(model)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert torch.equal(run(model, inputs), base)


def _fresh():
    """The original model: tiny_transformer is deterministic (the test's own is patched)."""
    return tiny_transformer("wan-t2v", seed=0)


def _dequantized():
    """The base the FP8 units compute with, as plain Linears: attach fp8, detach."""
    m = _fresh()
    vidlora.attach(m, fp8=True).detach()
    return m


def test_lycoris_on_fp8_base_unmerged(tmp_path):
    """On FP8 bases every LoHa / LoKr is applied beside the FP8 GEMM, never merged (no
    dense term either): the output equals the dequantized model with the delta merged in fp64."""
    model = _fresh()
    inputs = tiny_transformer_inputs("wan-t2v")
    truth = _wan_truth(model, 20, ALL_FORMS)
    h = vidlora.attach(model, fp8=True)
    h.add(write_lora(tmp_path / "lyco.safetensors", truth, "W3"), weight=0.9)
    routes = _routes(model)
    assert routes["kron"] and routes["ranks"] and routes["dense"] == 0, routes
    ref = run(merged_stack(_dequantized(), [(truth, 0.9)]), inputs)
    torch.testing.assert_close(run(model, inputs), ref, atol=5e-5, rtol=1e-4)


def test_failed_add_of_a_lycoris_file_leaves_the_model_bit_identical(tmp_path):
    model = tiny_transformer("wan-t2v", seed=0)
    truth = _wan_truth(model, 30, ALL_FORMS)
    good = write_lora(tmp_path / "good.safetensors", truth, "W3")
    from safetensors.torch import load_file

    tensors = load_file(good)
    tensors["lora_unet_blocks_7_self_attn_q.lokr_w1"] = torch.randn(4, 4)  # block 7 does not exist
    tensors["lora_unet_blocks_7_self_attn_q.lokr_w2"] = torch.randn(6, 6)
    bad = write_raw(tmp_path / "bad.safetensors", tensors)
    h = vidlora.attach(model)
    h.add(good, name="good")
    snap = state_snapshot(model)
    units = {n: (len(m.kron_terms), m.stack.used_rank, m.dense_delta) for n, m in model.named_modules()
             if isinstance(m, LoRALinear)}  # fmt: skip
    with pytest.raises(vidlora.LoRAMismatchError, match="blocks.7"):
        h.add(bad, name="bad")
    assert h.names == ("good",)
    after = state_snapshot(model)
    assert all(torch.equal(after[k], snap[k]) for k in snap)
    for n, m in model.named_modules():
        if isinstance(m, LoRALinear):
            k, r, d = units[n]
            assert (len(m.kron_terms), m.stack.used_rank) == (k, r) and (d is None) == (m.dense_delta is None)
