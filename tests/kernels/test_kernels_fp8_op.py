"""The op ``torch.ops.vidlora.lora_linear_fp8``: backends, torch.compile, the import guard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidlora.kernels.fp8_format import quantize_weight
from vidlora.kernels import lora_linear_fp8, lora_linear_fp8_reference

from helpers.paths import REPO_ROOT


def _args(dtype=torch.float32, r=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 40, generator=g).to(dtype)
    w8, ws = quantize_weight(torch.randn(24, 40, generator=g) * 40**-0.5)
    b = torch.randn(24, generator=g).to(dtype)
    a, bb = (torch.randn(r, 40, generator=g) * 0.2).to(dtype), torch.randn(24, r, generator=g).to(dtype)
    return x, w8, ws, b, a, bb, torch.rand(r, generator=g) + 0.5


@pytest.mark.parametrize("act_quant", [False, True])
def test_cpu_default_is_the_reference(act_quant):
    args = _args()
    torch.testing.assert_close(lora_linear_fp8(*args, act_quant), lora_linear_fp8_reference(*args, act_quant),
                               atol=0, rtol=0)  # fmt: skip


def test_compiles_without_graph_breaks_and_strengths_do_not_recompile():
    """The fake implementation lets Dynamo trace through; c is a tensor, so a new strength
    is data, not a new graph (aot_eager: the same tracing as Inductor, no codegen)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    x, w8, ws, b, a, bb, c = _args()
    counter = CompileCounterWithBackend("aot_eager")
    fn = torch.compile(lambda x, c: lora_linear_fp8(x, w8, ws, b, a, bb, c, True) * 2, backend=counter, fullgraph=True)
    torch.testing.assert_close(fn(x, c), 2 * lora_linear_fp8_reference(x, w8, ws, b, a, bb, c, True))
    fn(x, c * 0.5)
    assert counter.frame_count == 1


def test_wrong_arguments_are_precise_errors():
    x, w8, ws, b, a, bb, c = _args()
    with pytest.raises(TypeError, match="weight must be float8_e4m3fn"):
        lora_linear_fp8(x, w8.float(), ws, b, a, bb, c)
    with pytest.raises(ValueError, match="weight_scale must be float32 \\[24\\]"):
        lora_linear_fp8(x, w8, ws[:3], b, a, bb, c)


_SHADOW_SCRIPT = """
import importlib, sys, torch
import vidlora
import vidlora.kernels.fp8_gemm as fg
from vidlora.kernels import lora_linear_fp8
from vidlora.kernels.fp8_format import quantize_weight

shadow = importlib.import_module("kernels")  # what transformers' probe does from a checkout
assert shadow.__all__ == [] and "kernels.fp8_ops" not in sys.modules
try:
    import kernels.fp8_ops
except ImportError as err:
    assert "import vidlora.kernels.fp8_ops, not kernels.fp8_ops" in str(err), err
else:
    raise AssertionError("kernels.fp8_ops imported as a second copy")
calls = []
real = fg.lora_linear_fp8_triton
fg.lora_linear_fp8_triton = lambda *a, **k: calls.append(1) or real(*a, **k)
w8, ws = quantize_weight(torch.randn(24, 40))
x, a, b, c = torch.randn(3, 40), torch.randn(16, 40), torch.randn(24, 16), torch.rand(16)
with vidlora.use_backend("triton"):
    lora_linear_fp8(x, w8, ws, None, a, b, c, True)
assert calls == [1], "use_backend('triton') was not honoured"
print("OK")
"""


def test_top_level_kernels_import_from_a_checkout_cannot_register_a_second_fp8_op():
    root = REPO_ROOT
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("VIDLORA_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", _SHADOW_SCRIPT], cwd=root, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-3000:]
