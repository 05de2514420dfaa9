"""The Triton kernels against the fp32 reference, run through the Triton interpreter.

conftest.py sets TRITON_INTERPRET=1 before anything imports Triton, so these run the
kernels' own code on CPU tensors. Shapes are ragged on purpose (M in {1, 17, 130}, N and K
not multiples of 16) and the tile configs are small so every case spans several programs
and ragged K tails. Adapters are random (never a zero B), and each case first checks that
the LoRA term is far larger than the tolerance, so dropping it cannot pass.

Tolerance: a per-element rounding bound for the dtype, not a loosened allclose. With unit
roundoff u (fp16 2^-11, bf16 2^-8, fp32 2^-24), the kernel rounds T*c once and y once, and
accumulates K products in fp32:
    |y - y_ref| <= 2u (|y_ref| + |T c| |B|^T) + 2 K 2^-24 (|x| |W|^T + |x| |A|^T |c| |B|^T)
(2x the first-order bound, for the second-order terms.)
"""

from __future__ import annotations

import itertools

import pytest
import torch

from vidlora.kernels.heuristics import GemmConfig, ShrinkConfig, pad_rank
from vidlora.kernels.lora_gemm import INTERPRETED, lora_linear_triton
from vidlora.kernels.reference import lora_linear_reference

pytestmark = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 before import (conftest.py)")

_UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24}
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Small tiles: several programs per dimension and a ragged K tail at these sizes.
_GEMM = GemmConfig(block_m=32, block_n=32, block_k=16, block_r=16, group_m=2, num_warps=4, num_stages=2)
_SHRINK = ShrinkConfig(block_m=32, block_k=16, block_r=16, num_warps=4, num_stages=2)


def _case(m, n, k, r, dtype, *, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(dtype)
    w = (torch.randn(n, k, generator=g) * k**-0.5).to(dtype)
    b = torch.randn(n, generator=g).to(dtype) if bias else None
    a = (torch.randn(r, k, generator=g) * k**-0.5).to(dtype)
    bb = torch.randn(n, r, generator=g).to(dtype)
    c = torch.rand(r, generator=g) * 0.75 + 0.25
    return x, w, b, a, bb, c


def _check(y, x, w, b, a, bb, c, weight_scale=None):
    """y against the fp32 reference on the same (rounded) inputs, within the rounding bound."""
    f = lambda t: None if t is None else t.float()  # noqa: E731
    ref = lora_linear_reference(f(x), f(w), f(b), f(a), f(bb), c)
    base = lora_linear_reference(f(x), f(w), f(b), f(a)[:0], f(bb)[:, :0], c[:0])
    if weight_scale is not None:
        # y = (x W^T) * s + b + delta: rebuild the reference from its parts.
        delta = ref - base
        xw = lora_linear_reference(f(x), f(w), None, f(a)[:0], f(bb)[:, :0], c[:0])
        base = xw * weight_scale + (f(b) if b is not None else 0)
        ref = base + delta
    x2, k = f(x).reshape(-1, x.shape[-1]), x.shape[-1]
    tc = (x2 @ f(a).t()).abs() * c
    u, u32 = _UNIT_ROUNDOFF[x.dtype], 2.0**-24
    bound = 2 * u * (ref.reshape(tc.shape[0], -1).abs() + tc @ f(bb).abs().t())
    bound += 2 * k * u32 * (x2.abs() @ f(w).abs().t() + tc @ f(bb).abs().t())
    bound = bound.reshape(ref.shape)
    assert y.shape == ref.shape and y.dtype == x.dtype
    if a.shape[0] > 0:
        # The LoRA term must matter at this tolerance, or the test could not fail.
        assert ((ref - base).abs() > 20 * bound).any()
    err = (y.float() - ref).abs()
    bad = (err > bound).nonzero()
    assert bad.numel() == 0, (
        f"{bad.shape[0]} of {err.numel()} elements off; first at {bad[:5].tolist()}: "
        f"got {y.float()[tuple(bad[0])].item()}, want {ref[tuple(bad[0])].item()}, "
        f"bound {bound[tuple(bad[0])].item():.3g}; max err {err.max().item():.3g}"
    )


def _cases():
    """dtype x M x rank x strategy (90 cases), with (N, K) and bias alternating."""
    nks, biases = itertools.cycle(((40, 56), (33, 70))), itertools.cycle((True, False, False))
    for dtype in _DTYPES:
        for m in (1, 17, 130):
            for r in (0, 1, 4, 16, 48, 100):
                strategies = ["plain"] if r == 0 else ["shrink_expand"] + (["fused"] if r <= 64 else [])
                for strategy in strategies:
                    n, k = next(nks)
                    bias = next(biases)
                    yield pytest.param(m, n, k, r, dtype, strategy, bias,
                                       id=f"{str(dtype)[6:]}-m{m}-n{n}-k{k}-r{r}-{strategy}-{'bias' if bias else 'nobias'}")  # fmt: skip


@pytest.mark.parametrize("m,n,k,r,dtype,strategy,bias", list(_cases()))
def test_strategy_matches_reference(m, n, k, r, dtype, strategy, bias):
    x, w, b, a, bb, c = _case(m, n, k, r, dtype, bias=bias, seed=m * 1000 + r)
    # The fused kernel holds the whole (padded) rank in one tile.
    gemm = GemmConfig(32, 32, 16, pad_rank(r), 2, 4, 2) if strategy == "fused" else _GEMM
    y = lora_linear_triton(x, w, b, a, bb, c, strategy=strategy, gemm=gemm, shrink=_SHRINK)
    _check(y, x, w, b, a, bb, c)


@pytest.mark.parametrize("strategy", ["plain", "shrink_expand", "fused"])
def test_strided_3d_input_is_read_in_place(strategy):
    # x is every other token of a [2, 35, 72] buffer, its first 56 features: neither
    # contiguous rows nor a 2-D view (batch stride 35*72 != 17 rows * 144), and A and B
    # are slices of larger stacks (never copied).
    r = 0 if strategy == "plain" else 12
    _, w, b, a_full, b_full, c_full = _case(1, 40, 56, 32, torch.float16, seed=7)
    big = torch.randn(2, 35, 72, generator=torch.Generator().manual_seed(8)).half()
    x = big[:, 1::2, :56]
    a, bb, c = a_full[:r], b_full[:, :r], c_full[:r]
    assert not bb.is_contiguous() or r == 0
    y = lora_linear_triton(x, w, b, a, bb, c, strategy=strategy, gemm=_GEMM, shrink=_SHRINK)
    assert y.shape == (2, 17, 40)
    _check(y, x, w, b, a, bb, c)


def test_4d_input_and_strided_2d_rows():
    x4 = torch.randn(2, 3, 5, 24, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    _, w, b, a, bb, c = _case(1, 20, 24, 4, torch.bfloat16, seed=4)
    y4 = lora_linear_triton(x4, w, b, a, bb, c, strategy="shrink_expand", gemm=_GEMM, shrink=_SHRINK)
    assert y4.shape == (2, 3, 5, 20)
    _check(y4, x4, w, b, a, bb, c)
    rows = torch.randn(19, 40, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)[:, 3:27]
    y2 = lora_linear_triton(rows, w, None, a, bb, c, strategy="fused", gemm=_GEMM)
    _check(y2, rows, w, None, a, bb, c)


@pytest.mark.parametrize("dtype,r", [(torch.float16, 16), (torch.bfloat16, 100), (torch.float32, 16)])
def test_default_plan_through_the_op(dtype, r):
    """The public function with backend "triton": heuristic strategy and tile configs
    (rank 16 plans the fused kernel at this size, rank 100 shrink+expand)."""
    from vidlora.kernels import lora_linear
    from vidlora.kernels.backend import use_backend

    from vidlora.kernels.lora_gemm import plan_launch

    assert plan_launch(130, 40, 56, r, dtype, torch.device("cpu")).strategy == ("fused" if r == 16 else "shrink_expand")
    x, w, b, a, bb, c = _case(130, 40, 56, r, dtype, seed=11)
    with use_backend("triton"):
        y = lora_linear(x.view(2, 65, 56), w, b, a, bb, c)
    _check(y, x.view(2, 65, 56), w, b, a, bb, c)


def test_weight_scale_epilogue():
    """The per-output-channel scale step FP8 bases use: (x W^T) * s + b + delta."""
    x, w, b, a, bb, c = _case(17, 40, 56, 4, torch.float16, seed=12)
    s = torch.rand(40, generator=torch.Generator().manual_seed(13)) + 0.5
    for strategy in ("shrink_expand", "fused"):
        y = lora_linear_triton(x, w, b, a, bb, c, weight_scale=s, strategy=strategy, gemm=_GEMM, shrink=_SHRINK)
        _check(y, x, w, b, a, bb, c, weight_scale=s)


def test_empty_rows():
    x, w, b, a, bb, c = _case(1, 40, 56, 4, torch.float16)
    y = lora_linear_triton(x[:0], w, b, a, bb, c)
    assert y.shape == (0, 40)
