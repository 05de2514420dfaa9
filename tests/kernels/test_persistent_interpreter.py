"""The persistent TMA kernel (kernels/persistent_gemm.py) against the fp32 reference, interpreted.

Same product and tolerance rule as test_kernels_interpreter.py (dtype x M x rank x
strategy, ragged shapes, a LoRA term far above the bound), with N and K chosen so W meets
TMA's 16-byte rules (K * 2 bytes a multiple of 16; the interpreter does not check them, the
launcher does) while N = 33 sends y through the pointer-store path and N = 40 through the
descriptor. The grid has fewer programs than tiles (NUM_SMS = 3), so every program walks
several tiles. x layouts: contiguous (2-D descriptor), batch-strided (3-D descriptor), and
2 bytes off alignment (pointer fallback for x); K = 5121 is routed to the classic kernel.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import triton

from test_kernels_interpreter import _case, _check
from vidlora.kernels.candidates import candidates_for
from vidlora.kernels.heuristics import pad_rank
from vidlora.kernels.launching import INTERPRETED
from vidlora.kernels.persistent_gemm import PersistentConfig, applies, lora_linear_persistent, tma_compatible

pytestmark = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 before import (conftest.py)")

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _cfg(r: int, strategy: str) -> PersistentConfig:
    return PersistentConfig(32, 32, 16, pad_rank(r) if strategy == "fused" else 16, 2, 4, 2, 2)


def _cases():
    nks, biases = itertools.cycle(((40, 56), (33, 72))), itertools.cycle((True, False, False))
    for dtype in _DTYPES:
        for m in (1, 17, 130):
            for r in (0, 4, 16, 48, 100):
                strategies = ["plain"] if r == 0 else ["shrink_expand"] + (["fused"] if r <= 64 else [])
                for strategy in strategies:
                    n, k = next(nks)
                    bias = next(biases)
                    yield pytest.param(m, n, k, r, dtype, strategy, bias,
                                       id=f"{str(dtype)[6:]}-m{m}-n{n}-k{k}-r{r}-{strategy}-{'bias' if bias else 'nobias'}")  # fmt: skip


@pytest.mark.parametrize("m,n,k,r,dtype,strategy,bias", list(_cases()))
def test_persistent_matches_reference(m, n, k, r, dtype, strategy, bias):
    x, w, b, a, bb, c = _case(m, n, k, r, dtype, bias=bias, seed=m * 1000 + r + 7)
    assert tma_compatible(w)
    y = lora_linear_persistent(x, w, b, a, bb, c, strategy=strategy, config=_cfg(r, strategy), num_sms=3)
    _check(y, x, w, b, a, bb, c)


def test_fewer_programs_than_tiles_cover_every_tile():
    """130 x 72 output in 32 x 32 tiles = 5 x 3 = 15 tiles walked by 2 programs."""
    x, w, b, a, bb, c = _case(130, 72, 56, 16, torch.float16, seed=3)
    assert triton.cdiv(130, 32) * triton.cdiv(72, 32) == 15
    for sms in (1, 2, 15, 64):
        y = lora_linear_persistent(x, w, b, a, bb, c, strategy="shrink_expand", config=_cfg(16, "s"), num_sms=sms)
        _check(y, x, w, b, a, bb, c)


@pytest.mark.parametrize("strategy", ["plain", "shrink_expand", "fused"])
def test_batch_strided_x_uses_3d_descriptors(strategy):
    # Every other token of a [2, 35, 72] buffer, its first 56 features: the batch stride
    # does not collapse onto the rows (3-D descriptor for x and y), each batch has 17 rows,
    # so 32-row tiles are clipped per batch, never straddling two.
    r = 0 if strategy == "plain" else 12
    _, w, b, a_full, b_full, c_full = _case(1, 40, 56, 32, torch.float16, seed=17)
    big = torch.randn(2, 35, 72, generator=torch.Generator().manual_seed(8)).half()
    x = big[:, 1::2, :56]
    assert tma_compatible(x) and x.stride(0) != 17 * x.stride(1)
    a, bb, c = a_full[:r], b_full[:, :r], c_full[:r]
    y = lora_linear_persistent(x, w, b, a, bb, c, strategy=strategy, config=_cfg(max(r, 16), strategy), num_sms=3)
    assert y.shape == (2, 17, 40)
    _check(y, x, w, b, a, bb, c)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_misaligned_x_falls_back_to_pointer_loads(dtype):
    """x 2 bytes past a 16-byte boundary: no descriptor for x (TMA would fault), W and y keep theirs."""
    _, w, b, a, bb, c = _case(1, 40, 64, 8, dtype, seed=21)
    flat = torch.randn(50 * 64 + 1, generator=torch.Generator().manual_seed(9)).to(dtype)
    x = flat[1:].view(50, 64)
    assert x.data_ptr() % 16 == 2 and not tma_compatible(x)
    for strategy in ("shrink_expand", "fused"):
        y = lora_linear_persistent(x, w, b, a, bb, c, strategy=strategy, config=_cfg(8, strategy), num_sms=3)
        _check(y, x, w, b, a, bb, c)


def test_k_5121_is_routed_to_the_classic_kernel():
    """K = 5121: W's row stride (10,242 bytes) breaks TMA's rules: the persistent kernel is not
    offered and refuses if called; the first-use candidates are the classic kernels and torch."""
    x, w, b, a, bb, c = _case(20, 24, 5121, 16, torch.float16, seed=5)
    assert not tma_compatible(w) and not applies(x, w, a, bb, None)
    with pytest.raises(ValueError, match="TMA descriptors"):
        lora_linear_persistent(x, w, b, a, bb, c, strategy="shrink_expand")
    names = [cand.name for cand in candidates_for("lora_linear", (x, w, b, a, bb, c))]
    assert names and not any("persistent" in nm for nm in names) and "torch" in names
    x2, w2, b2, a2, bb2, c2 = _case(20, 24, 64, 16, torch.float16, seed=5)
    names2 = [cand.name for cand in candidates_for("lora_linear", (x2, w2, b2, a2, bb2, c2))]
    assert names2[0].startswith("triton.persistent.") and not any(nm.endswith(".pdl") for nm in names2)
    # fp32 (an FMA path, no TMA benefit) stays on the classic kernel.
    x3, w3, b3, a3, bb3, c3 = _case(20, 24, 64, 16, torch.float32, seed=5)
    assert not applies(x3, w3, a3, bb3, None)


def _w8a8_cases():
    nks = itertools.cycle(((40, 64), (33, 96)))
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        for m in (1, 17, 130):
            for r in (0, 4, 48, 100, 144):  # 144 > 128: T from the shrink kernel
                n, k = next(nks)
                yield pytest.param(m, n, k, r, dtype, id=f"{str(dtype)[6:]}-m{m}-n{n}-k{k}-r{r}")


@pytest.mark.parametrize("m,n,k,r,dtype", list(_w8a8_cases()))
def test_w8a8_persistent_matches_reference(m, n, k, r, dtype):
    """The fp8 descriptors, both scales and the LoRA expand in the epilogue, against the
    quantized fp32 oracle (test_kernels_fp8.py's rule); fewer programs than tiles."""
    from test_kernels_fp8 import _case as _fp8_case
    from test_kernels_fp8 import _check as _fp8_check
    from vidlora.kernels.fp8_persistent import lora_linear_w8a8_persistent

    x, _, w8, ws, b, a, bb, c = _fp8_case(m, n, k, r, dtype, bias=r % 2 == 0, seed=m + r)
    cfg = PersistentConfig(32, 32, 32, 16, 2, 4, 2, 2)
    y = lora_linear_w8a8_persistent(x, w8, ws, b, a, bb, c, config=cfg, num_sms=3)
    _fp8_check(y, x, w8, ws, b, a, bb, c, act_quant=True)
