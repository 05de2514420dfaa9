"""Roofline projection arithmetic: the bound each launch hits, and the method ordering."""

from __future__ import annotations

import pytest

from vidlora.benchmarks.roofline import DEVICES, Launch, Peak, method_launches, project_ms

H100 = DEVICES["H100 SXM"]


def test_each_launch_costs_its_binding_resource():
    peak = Peak(bf16=100e12, fp8=200e12, bandwidth=1e12, source="test")
    compute_bound = Launch("gemm", flops_bf16=2e12, flops_fp8=0, bytes=1e9)  # 20 ms of math, 1 ms of bytes
    memory_bound = Launch("add", flops_bf16=0, flops_fp8=0, bytes=3e9)  # 3 ms of bytes
    assert project_ms([compute_bound], peak) == pytest.approx(20.0)
    assert project_ms([memory_bound], peak) == pytest.approx(3.0)
    assert project_ms([compute_bound, memory_bound], peak) == pytest.approx(23.0)  # launches do not overlap
    fp8 = Launch("fp8 gemm", flops_bf16=1e12, flops_fp8=2e12, bytes=0)
    assert project_ms([fp8], peak) == pytest.approx(10.0 + 10.0)
    assert project_ms([fp8], Peak(100e12, None, 1e12, "no fp8")) is None


def test_base_gemm_at_wan_14b_shape_is_2mnk_over_peak():
    m, n, k = 32760, 5120, 5120
    assert project_ms(method_launches("base", m, n, k, 32), H100) == pytest.approx(2 * m * n * k / H100.bf16 * 1e3)


@pytest.mark.parametrize("device", sorted(DEVICES))
@pytest.mark.parametrize("m", [1024, 32760])
def test_method_order(device, m):
    peak = DEVICES[device]
    t = {meth: project_ms(method_launches(meth, m, 5120, 5120, 32), peak)
         for meth in ("base", "vidlora", "peft", "vidlora fp8 w8a16", "vidlora fp8 w8a8")}  # fmt: skip
    assert t["base"] < t["vidlora"] < t["peft"]
    # the LoRA FLOPs are 2MR(K+N) = 1.25% of the GEMM's here; the shrink pass re-reads x
    assert t["vidlora"] / t["base"] < 1.07
    assert t["vidlora fp8 w8a16"] <= t["vidlora"]
    if peak.fp8 is None:
        assert t["vidlora fp8 w8a8"] is None
    else:
        assert t["vidlora fp8 w8a8"] < 0.65 * t["base"]


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method"):
        method_launches("lora-magic", 1, 1, 1, 1)
