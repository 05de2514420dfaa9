"""Every kernel compiles for sm_80, sm_89 and sm_90 and is on the tensor-core path.

Runs ``python -m vidlora.benchmarks.kernel_audit --quick --json`` in a subprocess without
TRITON_INTERPRET (the interpreter and AOT compilation cannot share a process): each of the
four kernels compiled once per architecture at a real Wan 14B shape, plus the rank-128
shrink (~30 s on 2 cores).
The full real-shape list is the CLI's default mode (results in benchmarks/results/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vidlora.kernels.aot import ARCHS, KERNEL_VARIANTS, SHARED_MEMORY_LIMIT


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
    assert got == {(v, f"sm_{a}") for v in KERNEL_VARIANTS for a in ARCHS}
    assert {r["r"] for r in audit_rows if r["kernel"] == "shrink"} == {32, 128}
    for r in audit_rows:
        assert {"kernel", "arch", "mma", "spills", "smem"} <= r.keys()


def test_sm90_uses_warpgroup_mma(audit_rows):
    for r in audit_rows:
        if r["arch"] == "sm_90":
            assert "HGMMA" in r["mma_kind"] and r["mma"] > 0, r
            # bf16 operands reach the MMA (no fp32 upcast left in GPU code).
            assert r["ptx_mma"] and all(".bf16.bf16" in p for p in r["ptx_mma"]), r


def test_sm80_sm89_use_tensor_cores(audit_rows):
    for r in audit_rows:
        if r["arch"] in ("sm_80", "sm_89"):
            assert r["mma_kind"] == "HMMA" and r["mma"] > 0, r


def test_shared_memory_within_arch_limit_and_no_spills(audit_rows):
    for r in audit_rows:
        limit = SHARED_MEMORY_LIMIT[int(r["arch"][3:])]
        assert 0 < r["smem"] <= limit, r
        assert r["spills"] == 0, r
        assert r["ok"], r
