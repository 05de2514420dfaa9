"""Every kernel compiles for sm_80, sm_89 and sm_90 and is on the tensor-core path.

Runs ``python -m vidlora.benchmarks.kernel_audit --quick --json`` in a subprocess without
TRITON_INTERPRET (the interpreter and AOT compilation cannot share a process): each of the
four 16-bit kernels compiled once per architecture at a real Wan 14B shape, plus the
rank-128 shrink, and the FP8 kernels a rank-32 call launches (W8A16 expand and fused
GEMMs on every architecture; the W8A8 quantize pass and fp8 GEMM on sm_89 and sm_90):
plus one fp32 (IEEE) and one M <= 64 row per architecture and the TMA kernels on sm_90
(persistent 16-bit expand, its PDL variant, persistent W8A8): 34 compilations, ~60 s on
2 cores with an empty Triton cache.
The full real-shape list is the CLI's default mode (results in benchmarks/results/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vidlora.kernels.aot import ARCHS, KERNEL_VARIANTS, SHARED_MEMORY_LIMIT

_FP8_QUICK = {("w8a16_gemm_expand", a) for a in ARCHS} | {("w8a16_gemm_fused", a) for a in ARCHS} | {
    (v, a) for v in ("w8a8_quant_shrink", "w8a8_gemm_expand") for a in (89, 90)
}
_TMA_QUICK = {("persistent_expand", 90), ("persistent_expand_pdl", 90), ("w8a8_persistent_expand", 90)}
_KEYS = {"kernel", "base", "arch", "dtype", "shape", "m", "n", "k", "r", "mma", "mma_kind", "spills", "smem",
         "smem_limit", "regs", "tma", "persistent", "ok"}


@pytest.fixture(scope="module")
def audit_rows():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run(
        [sys.executable, "-m", "vidlora.benchmarks.kernel_audit", "--quick", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.stdout.strip(), out.stderr
    return json.loads(out.stdout)


def test_every_variant_compiled_for_every_arch(audit_rows):
    got = {(r["kernel"], r["arch"]) for r in audit_rows}
    want = {(v, f"sm_{a}") for v in KERNEL_VARIANTS for a in ARCHS} | {
        (v, f"sm_{a}") for v, a in _FP8_QUICK | _TMA_QUICK}
    assert got == want
    assert {r["r"] for r in audit_rows if r["kernel"] == "shrink"} == {32, 128}
    for r in audit_rows:
        assert _KEYS <= r.keys(), _KEYS - r.keys()
        assert r["base"] in ("16-bit", "w8a16", "w8a8") and r["dtype"] in ("bf16", "fp16", "fp32")


def test_sm90_tma_kernels_use_tma_and_a_persistent_grid(audit_rows):
    tma = [r for r in audit_rows if r["persistent"]]
    assert {r["kernel"] for r in tma} == {v for v, _ in _TMA_QUICK} and {r["arch"] for r in tma} == {"sm_90"}
    for r in tma:
        assert r["utmaldg"] > 0 and r["utmastg"] > 0 and r["tma"] == r["utmaldg"] + r["utmastg"], r
        assert r["pdl"] == r["kernel"].endswith("_pdl"), r  # griddepcontrol.wait only in the PDL variant
    (w8a8,) = [r for r in tma if r["base"] == "w8a8"]
    assert "QGMMA" in w8a8["mma_kind"], w8a8
    # The classic kernels stay on cp.async: no TMA, no persistent grid.
    assert all(r["tma"] == 0 and not r["persistent"] for r in audit_rows if not r["kernel"].startswith(
        ("persistent", "w8a8_persistent")))  # fmt: skip


def test_fp32_and_small_m_rows_per_arch_fit_and_do_not_spill(audit_rows):
    for arch in ARCHS:
        fp32 = [r for r in audit_rows if r["arch"] == f"sm_{arch}" and r["dtype"] == "fp32"]
        small = [r for r in audit_rows if r["arch"] == f"sm_{arch}" and r["m"] <= 64]
        assert fp32 and small, arch
        for r in fp32:
            # IEEE fp32: FMA, never a silent TF32 tensor-core MMA.
            assert r["mma_kind"] == "FFMA" and r["ptx_mma"] == [], r
        for r in fp32 + small:
            assert r["spills"] == 0 and r["smem"] <= r["smem_limit"] and r["ok"], r


def test_sm90_uses_warpgroup_mma(audit_rows):
    for r in audit_rows:
        if r["arch"] == "sm_90" and r["base"] in ("16-bit", "w8a16") and r["dtype"] != "fp32":
            assert "HGMMA" in r["mma_kind"] and r["mma"] > 0, r
            # bf16 operands reach the MMA (no fp32 upcast left in GPU code; for W8A16 the
            # fp8 weight tile is upcast to bf16 in registers, not to fp32).
            assert r["ptx_mma"] and all(".bf16.bf16" in p for p in r["ptx_mma"]), r


def test_sm80_sm89_use_tensor_cores(audit_rows):
    for r in audit_rows:
        if r["arch"] in ("sm_80", "sm_89") and r["base"] in ("16-bit", "w8a16") and r["dtype"] != "fp32":
            assert r["mma_kind"] == "HMMA" and r["mma"] > 0, r


def test_w8a8_gemm_uses_fp8_tensor_cores(audit_rows):
    """QGMMA on sm_90 and QMMA on sm_89 for the fp8 x fp8 main loop (e4m3 operands in the
    PTX); the bf16 LoRA expand in the epilogue adds HGMMA / HMMA beside it."""
    rows = {r["arch"]: r for r in audit_rows if r["kernel"] == "w8a8_gemm_expand" and r["dtype"] != "fp32"}
    assert set(rows) == {"sm_89", "sm_90"}
    assert "QGMMA" in rows["sm_90"]["mma_kind"] and "HGMMA" in rows["sm_90"]["mma_kind"]
    assert "QMMA" in rows["sm_89"]["mma_kind"] and "HMMA" in rows["sm_89"]["mma_kind"]
    for r in rows.values():
        assert any(".e4m3.e4m3" in p for p in r["ptx_mma"]), r


def test_w8a16_upcasts_in_registers_and_sm80_converts_bytes(audit_rows):
    for r in audit_rows:
        if r["base"] != "w8a16":
            continue
        if r["arch"] == "sm_80":
            # fp8e4nv pointers are refused below sm_89: uint8 loads and integer conversion.
            assert r["ptx_cvt"] == [], r
        else:
            assert "cvt.rn.f16x2.e4m3x2" in r["ptx_cvt"], r


def test_w8a8_quantize_pass_rounds_to_nearest_even_and_saturates(audit_rows):
    rows = [r for r in audit_rows if r["kernel"] == "w8a8_quant_shrink"]
    assert {r["arch"] for r in rows} == {"sm_89", "sm_90"}
    for r in rows:
        assert r["ptx_cvt"] == ["cvt.rn.satfinite.e4m3x2.f32"], r
        assert r["mma_kind"] == "HMMA" and r["mma"] > 0, r  # T from the unquantized x, 16-bit MMA


def test_shared_memory_within_arch_limit_and_no_spills(audit_rows):
    for r in audit_rows:
        limit = SHARED_MEMORY_LIMIT[int(r["arch"][3:])]
        assert 0 < r["smem"] <= limit, r
        assert r["spills"] == 0, r
        assert r["ok"], r
