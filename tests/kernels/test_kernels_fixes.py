"""Regression tests for the bugs a GPU would have hit (issue 14, item 4), on CPU.

- fp32 tiles fit shared memory on every architecture (the tile choice knows the element
  size; the AOT audit checks the compiled ``metadata.shared`` too);
- bias and per-channel scales are read through their strides (a strided slice);
- the W8A8 quantize pass keeps NaN where torch does (maxnum would drop it) and treats Inf
  as torch does;
- the launch-time shared-memory check raises a clear error naming both numbers.
"""

from __future__ import annotations

import types

import pytest
import torch

from vidlora.kernels.errors import KernelResourceError
from vidlora.kernels import launching
from vidlora.kernels.fp8_format import quantize_weight
from vidlora.kernels.fp8_gemm import lora_linear_fp8_triton, plan_fp8_launch, quantize_shrink_triton
from vidlora.kernels.fp8_reference import lora_linear_fp8_reference, quantize_rows_e4m3
from vidlora.kernels.heuristics import (
    GemmConfig,
    QuantConfig,
    ShrinkConfig,
    fp8_gemm_config,
    gemm_config,
    shared_memory_limit,
    shrink_config,
)
from vidlora.kernels.launching import INTERPRETED
from vidlora.kernels.lora_gemm import lora_linear_triton
from vidlora.kernels.reference import lora_linear_reference

_ARCHS = [(8, 0), (8, 6), (8, 9), (9, 0), None]
_GEMM = GemmConfig(32, 32, 16, 16, 2, 4, 2)
_SHRINK = ShrinkConfig(32, 16, 16, 4, 2)
interp = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 before import (conftest.py)")


def _staging(g, elem: int, w_elem: int | None = None) -> int:
    return (g.block_m * elem + g.block_n * (w_elem or elem)) * g.block_k * g.num_stages


@pytest.mark.parametrize("cap", _ARCHS)
@pytest.mark.parametrize("elem", [2, 4])
@pytest.mark.parametrize("m", [16, 64, 256, 32760])
def test_tiles_fit_shared_memory_for_the_element_size(cap, elem, m):
    limit = shared_memory_limit(cap)
    for strategy, r in (("plain", 0), ("shrink_expand", 32), ("fused", 64), ("shrink_expand", 128)):
        g = gemm_config(m, 5120, 5120, r, cap, strategy, elem)
        assert _staging(g, elem) <= limit, (strategy, r, g)
        if strategy == "shrink_expand":
            s = shrink_config(m, 5120, r, cap, elem)
            assert (s.block_m + s.block_r) * s.block_k * elem * s.num_stages <= limit, s
        g8 = fp8_gemm_config(m, 5120, 5120, r, cap, strategy, "w8a16", elem)
        assert _staging(g8, elem, 1) <= limit, g8
    # fp32 at 2-byte tile sizes would need 288 KB on sm_90 (limit 227 KB): never chosen.
    assert gemm_config(32760, 5120, 5120, 0, (9, 0), "plain", 4).block_n < 256


@interp
@pytest.mark.parametrize("strategy", ["plain", "shrink_expand", "fused"])
def test_strided_bias_and_weight_scale(strategy):
    g = torch.Generator().manual_seed(1)
    m, n, k, r = 17, 40, 56, 0 if strategy == "plain" else 8
    x = torch.randn(m, k, generator=g).half()
    w = (torch.randn(n, k, generator=g) * k**-0.5).half()
    bias = torch.randn(2 * n, generator=g).half()[::2]  # stride 2
    scale = (torch.rand(3 * n, generator=g) + 0.5)[1::3]  # stride 3
    a = (torch.randn(r, k, generator=g) * k**-0.5).half()
    b = torch.randn(n, r, generator=g).half()
    c = torch.rand(r, generator=g) + 0.5
    assert bias.stride(0) == 2 and scale.stride(0) == 3
    y = lora_linear_triton(x, w, bias, a, b, c, weight_scale=scale, strategy=strategy, gemm=GemmConfig(
        32, 32, 16, 16, 2, 4, 2), shrink=_SHRINK)  # fmt: skip
    f = lambda t: t.float()  # noqa: E731
    base = (f(x) @ f(w).t()) * scale + f(bias)
    ref = base + (lora_linear_reference(f(x), f(w), None, f(a), f(b), c) - f(x) @ f(w).t())
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=1e-2)
    # The same values contiguous give the same bits (the stride is the only difference).
    y2 = lora_linear_triton(x, w, bias.contiguous(), a, b, c, weight_scale=scale.contiguous(), strategy=strategy,
                            gemm=GemmConfig(32, 32, 16, 16, 2, 4, 2), shrink=_SHRINK)  # fmt: skip
    assert torch.equal(y, y2)


@interp
def test_fp8_strided_weight_scale_and_bias():
    g = torch.Generator().manual_seed(2)
    m, n, k, r = 17, 40, 64, 8
    x = torch.randn(m, k, generator=g).half()
    w8, ws = quantize_weight(torch.randn(n, k, generator=g) * k**-0.5)
    ws_strided = torch.zeros(2 * n)
    ws_strided[::2] = ws
    bias = torch.randn(2 * n, generator=g).half()[1::2]
    a = (torch.randn(r, k, generator=g) * k**-0.5).half()
    b = torch.randn(n, r, generator=g).half()
    c = torch.rand(r, generator=g) + 0.5
    plan = plan_fp8_launch(m, n, k, r, torch.float16, "w8a16", torch.device("cpu"), gemm=GemmConfig(
        32, 32, 16, 16, 2, 4, 2), shrink=_SHRINK, strategy="shrink_expand")  # fmt: skip
    y = lora_linear_fp8_triton(x, w8, ws_strided[::2], bias, a, b, c, plan=plan)
    y_ref = lora_linear_fp8_triton(x, w8, ws.clone(), bias.contiguous(), a, b, c, plan=plan)
    assert torch.equal(y, y_ref)
    ref = lora_linear_fp8_reference(x, w8, ws, bias.contiguous(), a, b, c)
    torch.testing.assert_close(y.float(), ref.float(), atol=2e-2, rtol=1e-2)


@interp
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_quantize_pass_keeps_nan_and_inf_like_torch(dtype):
    """A NaN anywhere in a row makes the row's scale and every byte of it NaN (torch: amax
    keeps NaN, clamp_min and clamp keep it); an Inf makes the scale Inf and the row's
    finite values 0, the Inf itself NaN (Inf * 0)."""
    g = torch.Generator().manual_seed(5)
    m, k, r = 40, 45, 16
    x = torch.randn(m, k, generator=g)
    x[2, 7] = float("nan")
    x[9, 0] = float("nan")  # first element of a row (first K tile)
    x[11, 44] = float("nan")  # last element (ragged K tail)
    x[20, 3] = float("inf")
    x[21, 5] = float("-inf")
    x = x.to(dtype)
    a = (torch.randn(r, k, generator=g) * k**-0.5).to(dtype)
    c = torch.rand(r, generator=g) + 0.25
    x8, xs, _ = quantize_shrink_triton(x, a, c, quant=QuantConfig(16, 16, 16, 2, 4, 2))
    q, s = quantize_rows_e4m3(x)
    assert torch.equal(torch.isnan(xs), torch.isnan(s)) and torch.isnan(xs[[2, 9, 11]]).all()
    assert torch.equal(xs[~torch.isnan(s)], s[~torch.isnan(s)])
    qf, x8f = q.float(), x8.float()
    assert torch.equal(torch.isnan(x8f), torch.isnan(qf)), (torch.isnan(x8f) != torch.isnan(qf)).nonzero()
    assert torch.isnan(x8f[[2, 9, 11]]).all() and torch.isinf(xs[[20, 21]]).all()
    finite = ~torch.isnan(qf)
    assert torch.equal(x8f[finite], qf[finite])


def test_launch_checks_compiled_shared_memory_against_the_device(monkeypatch):
    """On CUDA, the first launch of a specialisation compiles it (warmup) and compares its
    shared memory with the device's opt-in limit before anything runs."""
    launched = []

    class FakeKernel:
        fn = types.SimpleNamespace(__name__="_fake_kernel")

        def warmup(self, *args, grid, **kwargs):
            return types.SimpleNamespace(metadata=types.SimpleNamespace(shared=kwargs["BLOCK"] * 1024))

        def __getitem__(self, grid):
            return lambda *a, **k: launched.append(k["BLOCK"])

    monkeypatch.setattr(launching, "INTERPRETED", False)
    monkeypatch.setattr(launching, "device_facts", lambda index: {"smem_per_block": 227 * 1024, "name": "FakeGPU"})
    dev = torch.device("cuda", 0)
    launching.launch(FakeKernel(), (1,), (), {"BLOCK": 200}, dev)
    assert launched == [200]
    with pytest.raises(KernelResourceError, match=r"_fake_kernel.*BLOCK.*294912 bytes.*FakeGPU allows 232448"):
        launching.launch(FakeKernel(), (1,), (), {"BLOCK": 288}, dev)
    assert launched == [200]  # the oversized config never launched
