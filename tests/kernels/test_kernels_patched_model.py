"""A whole patched tiny transformer on the Triton kernels' own code path (interpreter).

attach() patches every block Linear (Wan q/k/v fused into one N = 3*dim call with a
block-diagonal B) and forward calls vidlora::lora_linear; with backend "triton" on CPU
tensors under TRITON_INTERPRET=1 every one of those calls runs the Triton kernels. The
result must match the same model on the torch reference backend.
"""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.model import inventory
from vidlora.kernels.lora_gemm import INTERPRETED
from vidlora.app.tiny import tiny_transformer, tiny_transformer_inputs

from helpers.models import random_lora, run

pytestmark = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 before import (conftest.py)")


@pytest.mark.parametrize("kind", ["wan-t2v", "hunyuan-t2v"])
def test_patched_model_on_triton_matches_torch_backend(kind, monkeypatch):
    from vidlora.kernels import lora_gemm

    calls = []
    real = lora_gemm.lora_linear_triton
    monkeypatch.setattr(lora_gemm, "lora_linear_triton", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    model = tiny_transformer(kind, seed=0)
    inputs = tiny_transformer_inputs(kind)
    family = inventory(model).family
    # LoRAs over the plain model's block Linears (made before attach replaces them).
    a = random_lora(model, 1, family, name="a", rank=4, alpha=2.0)
    b = random_lora(model, 2, family, name="b", rank=8)
    h = vidlora.attach(model)
    h.add(a, weight=0.8)
    h.add(b, weight=-0.6)
    base_free = run(model, inputs)
    with vidlora.use_backend("torch"):
        ref = run(model, inputs)
    with vidlora.use_backend("triton"):
        out = run(model, inputs)
    assert calls, "no Linear went through the Triton kernels"
    assert torch.equal(base_free, ref)  # auto on CPU is the torch reference
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    h.detach()
