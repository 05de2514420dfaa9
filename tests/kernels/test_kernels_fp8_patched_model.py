"""A whole FP8-patched tiny transformer on the FP8 Triton kernels' own code path (interpreter).

``attach(model, fp8="w8a16" / "w8a8")`` stores every patched block weight as e4m3 with
per-channel scales and forward calls vidlora::lora_linear_fp8; with backend "triton" on
CPU tensors under TRITON_INTERPRET=1 every one of those calls runs the FP8 kernels. The
result must match the same model on the torch reference backend.

W8A16: both sides compute with the same stored weights, so they differ only by fp32
summation order (tolerance as the 16-bit test). W8A8: the quantize pass gives the
reference's bytes for the same input, but a layer's input already differs in the last
fp32 bits between the backends, and an x * (1 / x_s) that lands next to an e4m3 rounding
boundary then rounds to the neighbouring value (a 2^-4 relative step of one element,
~1% of that row's outputs at the tiny width 24, ~60 dB over the whole output). So the
model outputs are compared by SQNR >= 50 dB, against ~29 dB for the quantization itself
(test_kernels_fp8.py): the backends must agree ~100x more closely than W8A8 agrees with
the unquantized model. Measured here: 134 dB (I2V) and 141 dB (Hunyuan): no flip.
"""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.model import inventory
from vidlora.kernels.lora_gemm import INTERPRETED
from vidlora.app.tiny import tiny_transformer, tiny_transformer_inputs

from helpers.models import random_lora, run
from helpers.metrics import sqnr_db

pytestmark = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 before import (conftest.py)")



@pytest.mark.parametrize("kind,mode", [("wan-t2v", "w8a16"), ("wan-i2v", "w8a8"), ("hunyuan-t2v", "w8a8")])
def test_fp8_patched_model_on_triton_matches_torch_backend(kind, mode, monkeypatch):
    from vidlora.kernels import fp8_gemm

    calls = []
    real = fp8_gemm.lora_linear_fp8_triton
    monkeypatch.setattr(fp8_gemm, "lora_linear_fp8_triton", lambda *a, **k: calls.append(a[7]) or real(*a, **k))
    model = tiny_transformer(kind, seed=0)
    inputs = tiny_transformer_inputs(kind)
    family = inventory(model).family
    # LoRAs over the plain model's block Linears (made before attach replaces them).
    a = random_lora(model, 1, family, name="a", rank=4, alpha=2.0)
    b = random_lora(model, 2, family, name="b", rank=8)
    h = vidlora.attach(model, fp8=mode)
    h.add(a, weight=0.8)
    h.add(b, weight=-0.6)
    with vidlora.use_backend("torch"):
        ref = run(model, inputs)
    with vidlora.use_backend("triton"):
        out = run(model, inputs)
    assert calls and set(calls) == {mode == "w8a8"}, "no Linear went through the FP8 Triton kernels"
    if mode == "w8a16":
        torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    else:
        assert sqnr_db(ref, out) >= 50
    h.detach()
