"""The FP8 Triton kernels (W8A16, W8A8) against fp8_reference, through the Triton interpreter.

conftest.py sets TRITON_INTERPRET=1 before anything imports Triton, so these run the
kernels' own code on CPU tensors. Shapes are ragged (M in {1, 17, 130}, N and K not
multiples of 16), tiles are small so every case spans several programs, K steps and a
ragged K tail, and the W8A8 quantize pass runs 2 persistent programs over several row
blocks each.

What is compared, and how tightly:
- The kernels against an fp32 oracle built from the *stored* operands (W8 and its scales;
  for W8A8 the reference's q(x) and x_s): the only differences allowed are rounding, with
  the per-element bound of test_kernels_interpreter.py (unit roundoff u of x's dtype;
  T*c rounded once, y rounded once, fp32 sums of K products):
      |y - y_ref| <= 2u (|y_ref| + |T c| |B|^T) + 2 K 2^-24 (|lhs| |W8|^T s + |T c| |B|^T)
  where lhs is x (W8A16) or q(x) with its scale x_s folded into s (W8A8).
- The quantize pass: x8 and x_s bit for bit equal to the reference's
  (``quantize_rows_e4m3``), ties and e4m3 subnormals included.
- The LoRA part: (output with LoRA) - (output without) equals the fp32 reference delta
  to fp32 rounding (fp32 compute dtype): the adapter delta is never quantized.
- The lossy part, x W^T against the unquantized fp32 weights: SQNR >= 28 dB for W8A16
  (one e4m3 operand, 3 mantissa bits: ~31.7 dB measured with per-channel scales) and
  >= 25 dB for W8A8 (two e4m3 operands: ~28.8 dB; torchao's float8 tests use 25 dB).
"""

from __future__ import annotations

import itertools

import pytest
import torch
import triton
import triton.language as tl

from vidlora.errors import BackendUnavailableError
from vidlora.kernels.fp8_format import quantize_weight
from vidlora.kernels import lora_delta_reference
from vidlora.kernels.fp8_gemm import (
    lora_linear_fp8_triton,
    plan_fp8_launch,
    quantize_shrink_triton,
)
from vidlora.kernels.fp8_reference import lora_linear_fp8_reference, quantize_rows_e4m3
from vidlora.kernels.heuristics import GemmConfig, QuantConfig, ShrinkConfig, pad_rank
from vidlora.kernels.launching import INTERPRETED
from vidlora.kernels.tile_ops import _e4m3_bytes_to
from helpers.metrics import sqnr_db

pytestmark = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 before import (conftest.py)")

_U = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24}
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_CPU = torch.device("cpu")
# Small tiles: several programs per dimension and ragged K tails at these sizes. The fp8
# MMA's K step is 32 on a GPU, so the W8A8 GEMM tiles keep BLOCK_K = 32.
_SHRINK = ShrinkConfig(block_m=32, block_k=16, block_r=16, num_warps=4, num_stages=2)


def _gemm(r: int, block_k: int = 16, fused: bool = False) -> GemmConfig:
    return GemmConfig(32, 32, block_k, pad_rank(r) if fused else 16, 2, 4, 2)


def _quant(r: int) -> QuantConfig:
    return QuantConfig(block_m=32, block_k=16, block_r=pad_rank(min(r, 128)), programs=2, num_warps=4, num_stages=2)


def _plan(mode, m, n, k, r, dtype, strategy=None, weight_load=None):
    if mode == "w8a8":
        return plan_fp8_launch(m, n, k, r, dtype, mode, _CPU, strategy=strategy, gemm=_gemm(r, 32),
                               shrink=_SHRINK, quant=_quant(r))  # fmt: skip
    return plan_fp8_launch(m, n, k, r, dtype, mode, _CPU, strategy=strategy, gemm=_gemm(r, fused=strategy == "fused"),
                           shrink=_SHRINK, weight_load=weight_load)  # fmt: skip


def _case(m, n, k, r, dtype, *, bias=True, seed=0):
    """x, the fp32 weight, its (W8, w_s), bias, A, B, c: random, non-identity adapters."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(dtype)
    w = torch.randn(n, k, generator=g) * k**-0.5 * torch.logspace(-1, 1, n)[:, None]  # rows of different size
    w8, ws = quantize_weight(w)
    b = torch.randn(n, generator=g).to(dtype) if bias else None
    a = (torch.randn(r, k, generator=g) * k**-0.5).to(dtype)
    bb = torch.randn(n, r, generator=g).to(dtype)
    c = torch.rand(r, generator=g) * 0.75 + 0.25
    return x, w, w8, ws, b, a, bb, c


def _check(y, x, w8, ws, b, a, bb, c, act_quant):
    """y against the fp32 oracle on the stored operands, within the rounding bound (module doc)."""
    k = x.shape[-1]
    x2 = x.reshape(-1, k).float()
    if act_quant:
        q, xs = quantize_rows_e4m3(x.reshape(-1, k))
        lhs, row_scale = q.float(), xs[:, None]
    else:
        lhs, row_scale = x2, 1.0
    w8f = w8.float()
    base = (lhs @ w8f.t()) * ws * row_scale + (b.float() if b is not None else 0)
    tc = (x2 @ a.float().t()) * c
    ref = base + tc @ bb.float().t()
    u, u32 = _U[x.dtype], 2.0**-24
    tcb = tc.abs() @ bb.float().abs().t()
    bound = 2 * u * (ref.abs() + tcb) + 2 * k * u32 * ((lhs.abs() @ w8f.abs().t()) * ws * row_scale + tcb)
    ref, bound = ref.reshape(y.shape), bound.reshape(y.shape)
    assert y.dtype == x.dtype
    if a.shape[0] > 0:
        assert ((ref - base.reshape(y.shape)).abs() > 20 * bound).any(), "LoRA term below the tolerance"
    err = (y.float() - ref).abs()
    bad = (err > bound).nonzero()
    assert bad.numel() == 0, (
        f"{bad.shape[0]} of {err.numel()} elements off; first at {bad[:5].tolist()}: got "
        f"{y.float()[tuple(bad[0])].item()}, want {ref[tuple(bad[0])].item()}, bound "
        f"{bound[tuple(bad[0])].item():.3g}; max err {err.max().item():.3g}"
    )


def _cases(mode):
    """dtype x M x rank (36 cases); strategy, weight load, (N, K) and bias alternate."""
    nks, biases = itertools.cycle(((40, 56), (33, 70), (24, 45))), itertools.cycle((True, False, False))
    strategies = itertools.cycle(("shrink_expand", "fused") if mode == "w8a16" else ("shrink_expand",))
    loads = itertools.cycle(("fp8", "bytes") if mode == "w8a16" else (None,))
    for dtype in _DTYPES:
        for m in (1, 17, 130):
            for r in (0, 1, 16, 48):
                strategy = "plain" if r == 0 else next(strategies)
                (n, k), bias, load = next(nks), next(biases), next(loads)
                yield pytest.param(m, n, k, r, dtype, strategy, load, bias, id=(
                    f"{str(dtype)[6:]}-m{m}-n{n}-k{k}-r{r}-{strategy}-{load}-{'bias' if bias else 'nobias'}"))  # fmt: skip


@pytest.mark.parametrize("m,n,k,r,dtype,strategy,load,bias", list(_cases("w8a16")))
def test_w8a16_matches_reference(m, n, k, r, dtype, strategy, load, bias):
    x, _, w8, ws, b, a, bb, c = _case(m, n, k, r, dtype, bias=bias, seed=m * 1000 + r)
    plan = _plan("w8a16", m, n, k, r, dtype, strategy, load)
    assert (plan.strategy, plan.weight_load) == (strategy, load)
    y = lora_linear_fp8_triton(x, w8, ws, b, a, bb, c, False, plan=plan)
    _check(y, x, w8, ws, b, a, bb, c, act_quant=False)


@pytest.mark.parametrize("m,n,k,r,dtype,strategy,load,bias", list(_cases("w8a8")))
def test_w8a8_matches_reference(m, n, k, r, dtype, strategy, load, bias):
    x, _, w8, ws, b, a, bb, c = _case(m, n, k, r, dtype, bias=bias, seed=m * 1000 + r + 1)
    y = lora_linear_fp8_triton(x, w8, ws, b, a, bb, c, True, plan=_plan("w8a8", m, n, k, r, dtype))
    _check(y, x, w8, ws, b, a, bb, c, act_quant=True)


def test_w8a8_rank_above_the_quantize_pass_takes_t_from_the_shrink_kernel():
    x, _, w8, ws, b, a, bb, c = _case(17, 40, 56, 130, torch.float16, seed=5)
    plan = _plan("w8a8", 17, 40, 56, 130, torch.float16)
    assert plan.shrink is not None
    _check(lora_linear_fp8_triton(x, w8, ws, b, a, bb, c, True, plan=plan), x, w8, ws, b, a, bb, c, act_quant=True)


@triton.jit
def _convert_bytes_kernel(b_ptr, out_ptr):
    offs = tl.arange(0, 256)
    v = _e4m3_bytes_to(tl.load(b_ptr + offs), tl.load(out_ptr + offs))
    tl.store(out_ptr + offs, v)


@pytest.mark.parametrize("dtype", _DTYPES)
def test_e4m3_bytes_conversion_is_exact_for_all_256_patterns(dtype):
    """The sm_80 W8A16 load: every byte (subnormals, +-0, NaN) to torch's own cast, bit for bit."""
    b = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    out = torch.zeros(256, dtype=dtype)
    _convert_bytes_kernel[(1,)](b, out)
    want = b.view(torch.float8_e4m3fn).to(dtype)
    nan = want.isnan()
    assert nan.sum() == 2 and torch.equal(out.isnan(), nan)
    assert torch.equal(out[~nan], want[~nan]) and torch.equal(out[~nan].signbit(), want[~nan].signbit())


@pytest.mark.parametrize("load", ["fp8", "bytes"])
def test_w8a16_gemm_reads_every_finite_weight_byte_exactly(load):
    """W8 holds each of the 254 finite e4m3 patterns (subnormals included) in fp32: the
    result equals x @ W8^T to fp32 rounding, through both weight loads."""
    g = torch.Generator().manual_seed(3)
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    finite = codes[~codes.view(torch.float8_e4m3fn).float().isnan()]
    w8 = finite[torch.randperm(254, generator=g)].reshape(2, 127).repeat(3, 1).view(torch.float8_e4m3fn)
    n, k = w8.shape  # 6 x 127: ragged K
    ws = torch.rand(n, generator=g) + 0.5
    x = torch.randn(9, k, generator=g)
    empty_a, empty_b, empty_c = torch.zeros(0, k), torch.zeros(n, 0), torch.zeros(0)
    plan = _plan("w8a16", 9, n, k, 0, torch.float32, weight_load=load)
    y = lora_linear_fp8_triton(x, w8, ws, None, empty_a, empty_b, empty_c, False, plan=plan)
    _check(y, x, w8, ws, None, empty_a, empty_b, empty_c, act_quant=False)


@pytest.mark.parametrize("dtype", _DTYPES)
def test_quantize_pass_gives_the_reference_bytes(dtype):
    """x8 and x_s bit for bit equal to quantize_rows_e4m3: ties to even, e4m3 subnormals,
    -0, a zero row, rows scaled over 6 decades; T from the unquantized x."""
    g = torch.Generator().manual_seed(4)
    m, k, r = 70, 45, 16
    x = torch.randn(m, k, generator=g) * torch.logspace(-3, 3, m)[:, None]
    x[3] = 0
    # Row 5 has amax 448, so x_s = 1 and x8 = e4m3(x): 17 and 19 are ties (e4m3 spacing 2
    # in [16, 32)) that round to even (16, 20); 3 * 2^-10 ties between the subnormals
    # 2^-9 and 2^-8 (-> 2^-8); -2^-11 rounds to -0.
    x[5, :6] = torch.tensor([448.0, 17.0, 19.0, 3 * 2.0**-10, -(2.0**-11), -300.0])
    x = x.to(dtype)
    a = (torch.randn(r, k, generator=g) * k**-0.5).to(dtype)
    c = torch.rand(r, generator=g) + 0.25
    x8, xs, t = quantize_shrink_triton(x[:, :k], a, c, quant=_quant(r))
    q, s = quantize_rows_e4m3(x)
    assert torch.equal(x8.view(torch.uint8), q.view(torch.uint8))
    assert torch.equal(xs, s)
    assert x8[5, :6].float().tolist() == [448.0, 16.0, 20.0, 2.0**-8, 0.0, -288.0]
    assert x8[5, 4].view(torch.uint8).item() == 0x80  # -0
    t_ref = (x.float() @ a.float().t()) * c
    bound = 2 * _U[dtype] * t_ref.abs() + 2 * k * 2.0**-24 * (x.float().abs() @ a.float().abs().t()) * c
    assert ((t.float() - t_ref).abs() <= bound).all()


@pytest.mark.parametrize("act_quant", [False, True])
def test_lora_delta_is_exact(act_quant):
    """fp32: (with LoRA) - (without) is the fp32 reference delta, to fp32 rounding."""
    m, n, k, r = 33, 40, 64, 16
    x, _, w8, ws, b, a, bb, c = _case(m, n, k, r, torch.float32, seed=6)
    strategy = "shrink_expand"
    y = lora_linear_fp8_triton(x, w8, ws, b, a, bb, c, act_quant,
                               plan=_plan("w8a8" if act_quant else "w8a16", m, n, k, r, torch.float32, strategy))  # fmt: skip
    y0 = lora_linear_fp8_triton(x, w8, ws, b, a[:0], bb[:, :0], c[:0], act_quant,
                                plan=_plan("w8a8" if act_quant else "w8a16", m, n, k, 0, torch.float32))  # fmt: skip
    delta = lora_delta_reference(x, a, bb, c)
    assert delta.abs().max() > 0.5
    # y and y0 are each within ~K * 2^-24 * |x||W| of their exact values.
    tol = 4 * k * 2.0**-24 * (x.abs() @ (w8.float().abs() * ws[:, None]).t() + y.abs())
    assert ((y - y0 - delta).abs() <= tol + 1e-6).all(), (y - y0 - delta).abs().max()
    ref = lora_linear_fp8_reference(x, w8, ws, b, a, bb, c, act_quant)
    ref0 = lora_linear_fp8_reference(x, w8, ws, b, a[:0], bb[:, :0], c[:0], act_quant)
    torch.testing.assert_close(y - y0, ref - ref0, atol=1e-5, rtol=1e-5)



@pytest.mark.parametrize("act_quant,min_db", [(False, 28.0), (True, 25.0)])
def test_sqnr_against_the_unquantized_linear(act_quant, min_db):
    """The lossy part, x W^T, against the fp32 weights (bias and the exact LoRA delta taken
    out first: they would inflate the signal). Measured here over seeds 7-11: W8A16
    31.5-32.0 dB, W8A8 28.6-29.0 dB, so the thresholds leave ~3.5 dB."""
    m, n, k, r = 64, 96, 160, 16
    x, w, w8, ws, b, a, bb, c = _case(m, n, k, r, torch.float32, seed=7)
    mode = "w8a8" if act_quant else "w8a16"
    y = lora_linear_fp8_triton(x, w8, ws, b, a, bb, c, act_quant, plan=_plan(mode, m, n, k, r, torch.float32))
    base = y - b - lora_delta_reference(x, a, bb, c)
    assert sqnr_db(x @ w.t(), base) >= min_db


@pytest.mark.parametrize("act_quant", [False, True])
def test_strided_3d_and_4d_inputs_are_read_in_place(act_quant):
    # x is every other token of a [2, 35, 72] buffer, its first 56 features: neither
    # contiguous rows nor a 2-D view; A and B are slices of larger stacks (never copied).
    mode = "w8a8" if act_quant else "w8a16"
    _, _, w8, ws, b, a_full, b_full, c_full = _case(1, 40, 56, 32, torch.float16, seed=8)
    big = torch.randn(2, 35, 72, generator=torch.Generator().manual_seed(9)).half()
    x = big[:, 1::2, :56]
    a, bb, c = a_full[:12], b_full[:, :12], c_full[:12]
    y = lora_linear_fp8_triton(x, w8, ws, b, a, bb, c, act_quant, plan=_plan(mode, 34, 40, 56, 12, torch.float16))
    assert y.shape == (2, 17, 40)
    _check(y, x, w8, ws, b, a, bb, c, act_quant)
    x4 = torch.randn(2, 3, 5, 56, generator=torch.Generator().manual_seed(10)).half()
    y4 = lora_linear_fp8_triton(x4, w8, ws, None, a, bb, c, act_quant, plan=_plan(mode, 30, 40, 56, 12, torch.float16))
    assert y4.shape == (2, 3, 5, 40)
    _check(y4, x4, w8, ws, None, a, bb, c, act_quant)


@pytest.mark.parametrize("act_quant,dtype", [(False, torch.bfloat16), (True, torch.bfloat16), (True, torch.float32)])
def test_default_plan_through_the_op(act_quant, dtype):
    """torch.ops.vidlora.lora_linear_fp8 with backend "triton": heuristic plan and tiles."""
    from vidlora.kernels import lora_linear_fp8
    from vidlora.kernels.backend import use_backend

    x, _, w8, ws, b, a, bb, c = _case(130, 40, 56, 16, dtype, seed=11)
    with use_backend("triton"):
        y = lora_linear_fp8(x.view(2, 65, 56), w8, ws, b, a, bb, c, act_quant)
    _check(y, x.view(2, 65, 56), w8, ws, b, a, bb, c, act_quant)


def test_w8a8_is_refused_below_sm89_and_w8a16_reads_bytes_there():
    with pytest.raises(BackendUnavailableError, match=r"W8A8 needs fp8 tensor cores.*sm_89.*8\.0.*w8a16"):
        plan_fp8_launch(32760, 5120, 5120, 32, torch.bfloat16, "w8a8", _CPU, capability=(8, 0))
    assert plan_fp8_launch(32760, 5120, 5120, 32, torch.bfloat16, "w8a16", _CPU, capability=(8, 0)).weight_load == "bytes"
    for cap in ((8, 9), (9, 0)):
        assert plan_fp8_launch(32760, 5120, 5120, 32, torch.bfloat16, "w8a16", _CPU, capability=cap).weight_load == "fp8"
        assert plan_fp8_launch(32760, 5120, 5120, 32, torch.bfloat16, "w8a8", _CPU, capability=cap).quant is not None


def test_plans_refuse_what_does_not_apply():
    with pytest.raises(ValueError, match="'fused' does not apply to FP8 w8a8"):
        plan_fp8_launch(8, 16, 32, 4, torch.float16, "w8a8", _CPU, strategy="fused")
    with pytest.raises(ValueError, match="'plain' does not apply to FP8 w8a16 at rank 4"):
        plan_fp8_launch(8, 16, 32, 4, torch.float16, "w8a16", _CPU, strategy="plain")
    with pytest.raises(ValueError, match="weight_load must be 'fp8' or 'bytes'"):
        plan_fp8_launch(8, 16, 32, 4, torch.float16, "w8a16", _CPU, weight_load="int8")
    with pytest.raises(ValueError, match="unknown FP8 mode 'w4a16'"):
        plan_fp8_launch(8, 16, 32, 4, torch.float16, "w4a16", _CPU)
    x, _, w8, ws, b, a, bb, c = _case(8, 16, 32, 4, torch.float16)
    with pytest.raises(ValueError, match="plan is for w8a16 but act_quant=True"):
        lora_linear_fp8_triton(x, w8, ws, b, a, bb, c, True, plan=_plan("w8a16", 8, 16, 32, 4, torch.float16))


def test_empty_rows_and_empty_token_sets():
    # An empty token set ([B, 0, K]: Wan I2V's image tokens when none are given) once
    # failed in the shared row view (-1 is ambiguous with 0 elements).
    from vidlora.kernels.lora_gemm import lora_linear_triton

    x, _, w8, ws, b, a, bb, c = _case(1, 40, 56, 4, torch.float16)
    for act_quant in (False, True):
        assert lora_linear_fp8_triton(x[:0], w8, ws, b, a, bb, c, act_quant).shape == (0, 40)
        assert lora_linear_fp8_triton(x.new_zeros(2, 0, 56), w8, ws, b, a, bb, c, act_quant).shape == (2, 0, 40)
    w = w8.to(torch.float16)
    assert lora_linear_triton(x.new_zeros(2, 0, 56), w, b, a, bb, c).shape == (2, 0, 40)
