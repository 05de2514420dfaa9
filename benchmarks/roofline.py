"""Roofline projection of each LoRA-linear kernel on H100, H200, RTX 4090 and A100.

    vidlora bench --only roofline

A **projection, not a measurement**: every row says ``method: ... (projection)`` and
``kind: projection``. Each kernel launch is costed at the device's datasheet peak (dense
tensor-core FLOP/s, FP32 accumulation, and DRAM bandwidth) as

    t = max(FLOPs / peak, bytes / bandwidth)

and a method's time is the sum over its launches (separate launches do not overlap).
That is a lower bound a perfect kernel would reach; real GEMMs reach 70-85% of peak at
these sizes. What the projection is for: the *ratios* between methods on one device
(the same efficiency loss hits all of them), and where each method is bound. When the
suite also measured the kernels on a GPU in the same run (kernel_bench on CUDA), the
matching measured time is put next to the projection (``measured_ms``).

Shapes: kernel_bench's GPU shapes (Wan 14B projection, fused q/k/v, FFN up/down;
HunyuanVideo projection and FFN up) at M = 32,760 tokens (Wan 832x480 x 81 frames) and
M = 1,024, rank 32. Methods, bf16 activations:

* ``base``: one GEMM y = x W^T + b (cuBLAS; the baseline of every ratio);
* ``vidlora``: shrink T = x A^T, then the GEMM with (T * c) B^T and b in its epilogue;
* ``peft``: base GEMM, x A^T, T B^T, * scale, + (five launches, y read and written again);
* ``vidlora fp8 w8a16``: the shrink, then the GEMM reading FP8 weights (bf16 MMA);
* ``vidlora fp8 w8a8``: one pass quantizing x to FP8 and computing T, then the FP8 GEMM
  (FP8 MMA) with the bf16 LoRA expand in its epilogue. Not on A100 (no FP8 tensor cores).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .rows import RunContext, ratio_rows

__all__ = ["BENCHMARK", "Peak", "DEVICES", "Launch", "method_launches", "project_ms", "run"]

BENCHMARK = "roofline"
RANK = 32
TOKENS = (32760, 1024)


@dataclass(frozen=True)
class Peak:
    """Datasheet peaks: dense tensor-core FLOP/s (FP32 accumulate) and DRAM bytes/s."""

    bf16: float
    fp8: float | None  # None: no FP8 tensor cores
    bandwidth: float
    source: str


DEVICES: dict[str, Peak] = {
    "H100 SXM": Peak(989.4e12, 1978.9e12, 3.35e12, "NVIDIA H100 datasheet (SXM5, dense)"),
    "H200 SXM": Peak(989.4e12, 1978.9e12, 4.8e12, "NVIDIA H200 datasheet (SXM, dense)"),
    "RTX 4090": Peak(165.2e12, 330.3e12, 1.008e12, "Ada whitepaper (dense, FP32 accumulate)"),
    "A100 SXM 80GB": Peak(312e12, None, 2.039e12, "NVIDIA A100 datasheet (dense)"),
}
# Substrings of torch.cuda.get_device_name that identify each projected device
_NAME_HINTS = {"H100": "H100 SXM", "H200": "H200 SXM", "4090": "RTX 4090", "A100": "A100 SXM 80GB"}


@dataclass(frozen=True)
class Launch:
    """One kernel launch: FLOPs at bf16 rate, FLOPs at FP8 rate, bytes moved."""

    name: str
    flops_bf16: float
    flops_fp8: float
    bytes: float


def method_launches(method: str, m: int, n: int, k: int, r: int) -> list[Launch]:
    """The launches of one method on one [M, K] x [N, K]^T call (bf16 = 2 bytes)."""
    gemm = 2.0 * m * n * k
    shrink = Launch("shrink x A^T", 2.0 * m * k * r, 0, 2 * (m * k + r * k + m * r))
    expand_bytes = 2 * (m * r + n * r)  # T and B read by the epilogue
    if method == "base":
        return [Launch("GEMM", gemm, 0, 2 * (m * k + n * k + m * n))]
    if method == "vidlora":
        return [shrink, Launch("GEMM + expand", gemm + 2.0 * m * n * r, 0, 2 * (m * k + n * k + m * n) + expand_bytes)]
    if method == "peft":
        return [
            Launch("GEMM", gemm, 0, 2 * (m * k + n * k + m * n)),
            shrink,
            Launch("T B^T", 2.0 * m * r * n, 0, 2 * (m * r + n * r + m * n)),
            Launch("* scale", 0, 0, 2 * (2 * m * n)),
            Launch("y + delta", 0, 0, 2 * (3 * m * n)),
        ]
    if method == "vidlora fp8 w8a16":
        w8 = n * k + 4 * n  # FP8 weight + fp32 per-channel scale
        return [shrink, Launch("FP8-weight GEMM + expand", gemm + 2.0 * m * n * r, 0, 2 * (m * k + m * n) + w8 + expand_bytes)]
    if method == "vidlora fp8 w8a8":
        quant = Launch("quantize x + shrink", 2.0 * m * k * r, 0, 2 * m * k + m * k + 4 * m + 2 * (r * k + m * r))
        w8 = n * k + 4 * n
        return [quant, Launch("FP8 GEMM + expand", 2.0 * m * n * r, gemm, m * k + 4 * m + w8 + 2 * m * n + expand_bytes)]
    raise ValueError(f"unknown method {method!r}")


def project_ms(launches: list[Launch], peak: Peak) -> float | None:
    """Sum over launches of max(compute time, memory time), in ms; None without FP8."""
    total = 0.0
    for launch in launches:
        if launch.flops_fp8 and peak.fp8 is None:
            return None
        compute = launch.flops_bf16 / peak.bf16 + (launch.flops_fp8 / peak.fp8 if launch.flops_fp8 else 0.0)
        total += max(compute, launch.bytes / peak.bandwidth)
    return total * 1e3


_METHODS = ("base", "vidlora", "peft", "vidlora fp8 w8a16", "vidlora fp8 w8a8")
# kernel_bench's method names for the measured column
_MEASURED_NAME = {"base": "base", "vidlora": "vidlora", "peft": "peft"}


def _measured(previous: list[dict[str, Any]], device: str, shape: str, m: int, r: int, method: str) -> dict | None:
    name = _MEASURED_NAME.get(method)
    for row in previous:
        if (row.get("benchmark") == "kernel_bench" and row.get("device_type") == "cuda" and row.get("kind") != "goal"
                and row.get("shape") == shape and row.get("m") == m and row.get("r") == r and row.get("method") == name
                and any(h in row["device"] and d == device for h, d in _NAME_HINTS.items())):  # fmt: skip
            return row
    return None


def run(ctx: RunContext) -> Iterator[dict[str, Any]]:
    """Projected rows for every device x shape x M x method (ratios to the projected base)."""
    from .kernel_bench import GPU_SHAPES

    for device, peak in DEVICES.items():
        for shape, n, k in GPU_SHAPES:
            for m in TOKENS:
                case = f"{device}: {shape} M={m} N={n} K={k} R={RANK}"
                rows = []
                for method in _METHODS:
                    launches = method_launches(method, m, n, k, RANK)
                    ms = project_ms(launches, peak)
                    if ms is None:
                        continue
                    flops = sum(x.flops_bf16 + x.flops_fp8 for x in launches)
                    nbytes = sum(x.bytes for x in launches)
                    row = ctx.row(
                        BENCHMARK, case, f"{method} (projection)", "projected_ms", ms, "ms", kind="projection",
                        projected_device=device, peak_source=peak.source, shape=shape, m=m, n=n, k=k, r=RANK,
                        launches=[x.name for x in launches], flops=flops, bytes=nbytes,
                        bound="compute" if flops / (peak.fp8 if "w8a8" in method else peak.bf16) > nbytes / peak.bandwidth
                        else "memory",
                    )  # fmt: skip
                    measured = _measured(ctx.rows, device, shape, m, RANK, method)
                    if measured is not None:
                        row.update(measured_ms=measured["value"], measured_device=measured["device"],
                                   measured_over_projection=measured["value"] / ms)  # fmt: skip
                    rows.append(row)
                yield from ratio_rows(rows, "base (projection)")
