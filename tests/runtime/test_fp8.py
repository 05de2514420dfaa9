"""FP8 bases: quantization quality (SQNR), the reference op (exact LoRA part), the model-level
LoRA effect vs merge-then-requantize, detach, quantize-while-moving, FP8 checkpoints."""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.errors import LoRAMismatchError, VidloraError
from vidlora.model import inventory
from vidlora.kernels.fp8_format import dequantize_weight, quantize_weight
from vidlora.kernels import lora_delta_reference
from vidlora.kernels.fp8_reference import lora_linear_fp8_reference
from vidlora.runtime.unit import LoRALinear
from vidlora.app.tiny import tiny_transformer, tiny_transformer_inputs

from helpers.models import random_lora, run
from helpers.metrics import sqnr_db



def test_per_channel_quantization_quality_and_zero_rows():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(37, 70, generator=gen) * torch.logspace(-3, 1, 37)[:, None]  # rows of very different size
    w[5] = 0
    w8, s = quantize_weight(w)
    assert w8.dtype == torch.float8_e4m3fn and s.shape == (37,)
    deq = dequantize_weight(w8, s, torch.float32)
    assert torch.all(deq[5] == 0)
    # per-channel scales: every row keeps ~e4m3's precision (~31 dB), however small it is
    for i in (0, 10, 36):
        assert sqnr_db(w[i], deq[i]) > 25


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_reference_w8a16_and_exact_lora_part(dtype, tol):
    gen = torch.Generator().manual_seed(1)
    k, n, r = 40, 29, 6
    x = torch.randn(3, 11, k, generator=gen).to(dtype)
    w8, ws = quantize_weight(torch.randn(n, k, generator=gen))
    bias = torch.randn(n, generator=gen).to(dtype)
    a = torch.randn(r, k, generator=gen).to(dtype)
    b = torch.randn(n, r, generator=gen).to(dtype)
    c = torch.rand(r, generator=gen) + 0.1
    y = lora_linear_fp8_reference(x, w8, ws, bias, a, b, c)
    want = x.float() @ dequantize_weight(w8, ws, torch.float32).t() + bias.float() + lora_delta_reference(x, a, b, c)
    torch.testing.assert_close(y.float(), want, atol=tol * 10, rtol=tol)
    if dtype == torch.float32:
        # the LoRA part is computed unquantized: with minus without is exactly the delta
        y0 = lora_linear_fp8_reference(x, w8, ws, bias, a[:0], b[:, :0], c[:0])
        torch.testing.assert_close(y - y0, lora_delta_reference(x, a, b, c), atol=1e-5, rtol=1e-5)


def test_reference_w8a8_sqnr_and_exact_lora_part():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(65, 96, generator=gen)
    w = torch.randn(48, 96, generator=gen)
    w8, ws = quantize_weight(w)
    a, b = torch.randn(4, 96, generator=gen), torch.randn(48, 4, generator=gen)
    c = torch.full((4,), 0.5)
    y = lora_linear_fp8_reference(x, w8, ws, None, a, b, c, act_quant=True)
    exact = x @ w.t() + lora_delta_reference(x, a, b, c)
    assert sqnr_db(exact, y) > 25  # both operands e4m3: ~28 dB measured
    y0 = lora_linear_fp8_reference(x, w8, ws, None, a[:0], b[:, :0], c[:0], act_quant=True)
    torch.testing.assert_close(y - y0, lora_delta_reference(x, a, b, c), atol=1e-4, rtol=1e-5)


def test_lora_effect_survives_fp8_but_not_merge_requantize():
    from vidlora.benchmarks.fp8_lora_error import lora_effect_errors

    rows = lora_effect_errors(strengths=(1.0,))
    err = {r["method"]: r["rel_error"] for r in rows}
    assert err["vidlora"] < 0.05, err
    assert err["merge_rtn"] > 0.5, err


@pytest.mark.parametrize("mode", ["w8a16", "w8a8"])
def test_fp8_attach_stacks_exact_delta_and_reports(mode):
    kind = "wan-i2v"
    model = tiny_transformer(kind, seed=0)
    inputs = tiny_transformer_inputs(kind)
    lora = random_lora(model, 1, inventory(model).family, deltas=["blocks.0.norm2.weight"])
    fp32_bytes = sum(m.weight.numel() * 4 for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "blocks." in n)
    h = vidlora.attach(model, fp8=mode)
    rep = h.report()["models"]["transformer"]
    assert rep["base_dtype"] == "float8_e4m3fn" and rep["fp8"] == [mode]
    assert rep["base_bytes"] < fp32_bytes / 3  # 1 byte per weight + 4 per output channel
    unit = model.blocks[0].attn1.to_qkv
    assert unit.weight.dtype == torch.float8_e4m3fn and unit.lora_a.dtype == torch.float32
    x = torch.randn(2, 5, 24)
    y0 = unit(x)
    h.add(lora, weight=0.7)
    got = unit(x) - y0
    want = 0.7 * lora_delta_reference(x, unit.lora_a, unit.lora_b, unit.lora_scale / 0.7)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert run(model, inputs).isfinite().all()


def test_detach_after_fp8_gives_dequantized_or_kept_originals():
    model = tiny_transformer("wan-t2v", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    vidlora.attach(model, fp8=True).detach()
    after = model.state_dict()
    w = "blocks.0.attn1.to_k.weight"
    assert after[w].dtype == torch.float32 and not torch.equal(after[w], before[w])
    assert sqnr_db(before[w], after[w]) > 25
    assert torch.equal(after["blocks.0.attn1.to_k.bias"], before["blocks.0.attn1.to_k.bias"])

    model = tiny_transformer("wan-t2v", seed=0)
    vidlora.attach(model, fp8=True, keep_original=True).detach()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_quantize_while_moving_to_another_device():
    """A bf16 model in CPU memory -> FP8 on the target device, layer by layer (the meta
    device stands in for the GPU here: every unit tensor must end up there)."""
    model = tiny_transformer("wan-t2v", seed=0, dtype=torch.bfloat16)
    h = vidlora.attach(model, fp8=True, device="meta")
    for m in model.modules():
        if isinstance(m, LoRALinear):
            assert {t.device.type for t in (m.weight, m.weight_scale, m.bias, m.lora_a, m.lora_scale)} == {"meta"}
            assert m.weight.dtype == torch.float8_e4m3fn and m.compute_dtype == torch.bfloat16
    assert {p.device.type for p in model.parameters()} == {"meta"}
    del h


def test_fp8_checkpoint_weights_are_used_as_stored():
    """diffusers layerwise casting stores Linear weights in float8_e4m3fn: attach uses them
    as they are (no round trip through bf16) and computes what the casting hooks did."""
    kind = "wan-t2v"
    model = tiny_transformer(kind, seed=0)
    inputs = tiny_transformer_inputs(kind)
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    expected = run(model, inputs)
    stored = model.blocks[0].ffn.net[2].weight
    ptr, data = stored.data_ptr(), stored.detach().clone()
    h = vidlora.attach(model)  # no fp8= needed: the weights already are FP8
    unit = model.blocks[0].ffn.net[2]
    assert unit.weight.data_ptr() == ptr and unit.fp8_origin == "adopted"
    assert unit.compute_dtype == torch.float32 and unit.bias.dtype == torch.float32
    torch.testing.assert_close(run(model, inputs), expected, atol=1e-5, rtol=1e-5)
    h.detach()
    assert torch.equal(model.blocks[0].ffn.net[2].weight.view(torch.uint8), data.view(torch.uint8))
    torch.testing.assert_close(run(model, inputs), expected, atol=0, rtol=0)


def test_dense_delta_on_fp8_base_is_refused_by_name():
    model = tiny_transformer("wan-t2v", seed=0)
    lora = random_lora(model, 1, inventory(model).family, paths=[], deltas=["blocks.0.ffn.net.2.weight"])
    h = vidlora.attach(model, fp8=True)
    with pytest.raises(LoRAMismatchError, match="FP8"):
        h.add(lora)
    assert h.names == ()


def test_bad_fp8_argument():
    with pytest.raises(VidloraError, match="fp8="):
        vidlora.attach(tiny_transformer("wan-t2v"), fp8="int4")

