"""Micro-benchmark of one LoRA linear: base, PEFT-style unfused, merged, and vidlora.

    python -m benchmarks.kernel_bench [--device cpu|cuda] [--part all|lora|fp8] [--save [DIR]] [--quick]

On a CUDA GPU (times: triton.testing.do_bench median, L2 flushed), at Wan 2.1 14B and
HunyuanVideo shapes, M in {8192, 32760}, R in {4, 8, 16, 32, 64, 128 (four stacked
rank-32 adapters)}:
- ``base``: cuBLAS ``F.linear`` (the baseline every ratio divides by, same run);
- ``triton_r0``: the vidlora Triton kernel with R = 0 (goal: <= 1.05x base);
- ``peft``: PEFT's LoRA layer arithmetic: base, then x@A^T, @B^T, * scale, add;
- ``merged``: ``F.linear`` with W + B diag(c) A precomputed (merge time not counted);
- ``vidlora``: ``vidlora.kernels.lora_linear`` (the op: launcher picks the strategy).
Each vidlora time is printed next to its roofline floor
    floor = base * (1 + LoRA FLOPs / base FLOPs) + extra bytes / bandwidth
(extra bytes: one more read of x, T written and read, A and B; the bandwidth is measured
in the same run with a device-to-device copy) and with the achieved TFLOP/s.

FP8 bases (GPU only; issue 5), Wan 14B shapes, rank 32, M in {256, 1024, 8192, 32760},
bf16 compute, W quantized per output channel to e4m3:
- ``w8a16``: ``lora_linear_fp8`` (fp8 W upcast in registers, bf16 MMA), judged against
  ``vidlora`` (the bf16 fused kernel; goals: <= 1.15x at M = 32760, faster at M <= 1024);
- ``w8a8``: ``lora_linear_fp8(..., act_quant=True)``, quantize pass included, judged
  against ``base`` (cuBLAS bf16; goal: >= 1.5x faster at M = 32760); sm_89+ only;
- ``w8a8_quant``: the quantize pass alone (x8, x_s and T in one read of x);
- ``fp8_scaled_mm``: context, ``torch._scaled_mm`` with the same row/column scales on a
  pre-quantized x (cuBLASLt's fp8 GEMM, no bias, no LoRA, no quantization; M padded to a
  multiple of 16), when the torch build supports row-wise scales.
Their floors (:func:`fp8_floor_ms`) are rooflines in the rates of the same run: 16-bit MMA
at the bf16 cuBLAS rate measured at the shape's largest M, fp8 MMA at twice that (the
dense-peak ratio of sm_89/sm_90), bytes at the measured copy bandwidth.

Without a GPU (``--device cpu``, the default when CUDA is absent) it times the torch
paths (vidlora's CPU path is the torch reference) at small shapes in fp32 and bf16,
on one thread timed by its CPU clock, median of 9 runs taken round-robin across the
methods, and labels every row a CPU run. It includes the goal "CPU reference
path: LoRA overhead at most half of PEFT-style overhead" at M 4096, K = N = 1536, R 32.
No GPU number is ever produced by the CPU path.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .harness import (
    LinearCase,
    environment,
    make_linear_case,
    result_row,
    results_path,
    time_cpu_interleaved,
    time_gpu,
    write_rows,
)

__all__ = [
    "peft_style",
    "merged_weight",
    "lora_flops",
    "roofline_floor_ms",
    "fp8_floor_ms",
    "run_cpu",
    "run_gpu",
    "run_gpu_fp8",
    "main",
]

# (name, N, K): Wan 2.1 14B width 5120, FFN 13824, fused q/k/v 3 x 5120; HunyuanVideo 3072.
GPU_SHAPES = (
    ("wan14b.proj", 5120, 5120),
    ("wan14b.qkv", 15360, 5120),
    ("wan14b.ffn_up", 13824, 5120),
    ("wan14b.ffn_down", 5120, 13824),
    ("hunyuan.proj", 3072, 3072),
    ("hunyuan.ffn_up", 12288, 3072),
)
GPU_TOKENS = (8192, 32760)  # 32,760 = Wan 480x832, 81 frames
GPU_RANKS = (4, 8, 16, 32, 64, 128)
CPU_SHAPES = (("small.proj", 384, 384), ("small.ffn_up", 1024, 384))
CPU_TOKENS = (512,)
CPU_RANKS = (4, 32, 128)
CPU_GOAL = ("cpu.goal", 4096, 1536, 1536, 32)  # name, M, N, K, R
FP8_SHAPES = GPU_SHAPES[:4]  # Wan 14B
FP8_TOKENS = (256, 1024, 8192, 32760)
FP8_RANK = 32
FP8_METHODS = ("w8a16", "w8a8", "w8a8_quant", "fp8_scaled_mm")


def peft_style(case: LinearCase) -> Callable[[], torch.Tensor]:
    """PEFT LoRA layer arithmetic: result = base(x) + lora_B(lora_A(x)) * scaling."""
    x, w, b, a, bb = case.x, case.weight, case.bias, case.lora_a, case.lora_b
    scaling = float(case.lora_scale[0]) if case.r else 0.0  # one adapter: one scalar

    def run() -> torch.Tensor:
        return F.linear(x, w, b) + F.linear(F.linear(x, a), bb) * scaling

    return run


def merged_weight(case: LinearCase) -> torch.Tensor:
    """W + B diag(c) A in fp32, rounded once to the weight dtype."""
    delta = (case.lora_b.float() * case.lora_scale) @ case.lora_a.float()
    return (case.weight.float() + delta).to(case.weight.dtype)


def lora_flops(m: int, n: int, k: int, r: int) -> tuple[float, float]:
    """(base, LoRA) FLOPs: 2MNK and 2MR(K + N)."""
    return 2.0 * m * n * k, 2.0 * m * r * (k + n)


def roofline_floor_ms(base_ms: float, m: int, n: int, k: int, r: int, elem: int, bandwidth: float) -> float:
    """base x (1 + extra FLOP fraction) + extra bytes / bandwidth (module doc)."""
    base, extra = lora_flops(m, n, k, r)
    extra_bytes = (m * k + 2 * m * r + r * (k + n)) * elem if r else 0
    return base_ms * (1 + extra / base) + extra_bytes / bandwidth * 1e3


def fp8_floor_ms(method: str, m: int, n: int, k: int, r: int, flops16: float, bandwidth: float) -> float:
    """Roofline floor (ms) of an FP8 method; ``flops16``: the bf16 MMA rate (FLOP/s) of this run.

    w8a16: the shrink pass (x read, T written: memory) when R > 0, then the GEMM at
    max(bf16 MMA time of base + expand, its bytes: W8 1 byte/weight, x, y, T, B).
    w8a8: the quantize pass (x read once, x8 and T written: memory), then the GEMM at
    max(fp8 MMA at 2 x flops16 + bf16 expand, its bytes: W8, x8, y, T, B).
    """
    lora_bytes = 2 * (2 * m * r + r * (k + n))  # T written and read, A and B (bf16)
    expand = 2.0 * m * n * r
    if method == "w8a16":
        pre = (2 * m * k + 2 * m * r) / bandwidth if r else 0.0
        mma = (2.0 * m * n * k + expand) / flops16
        gemm_bytes = n * k + 2 * m * k + 2 * m * n + lora_bytes
    elif method == "w8a8":
        pre = (2 * m * k + m * k + 2 * m * r) / bandwidth
        mma = 2.0 * m * n * k / (2 * flops16) + expand / flops16
        gemm_bytes = n * k + m * k + 2 * m * n + lora_bytes
    else:
        raise ValueError(f"no FP8 floor for method {method!r}; expected w8a16 or w8a8")
    return (pre + max(mma, gemm_bytes / bandwidth)) * 1e3


def _methods(case: LinearCase, device: str) -> dict[str, Callable[[], Any]]:
    from vidlora.kernels import lora_linear

    args = case.args()
    w_merged = merged_weight(case)
    methods = {
        "base": lambda: F.linear(case.x, case.weight, case.bias),
        "peft": peft_style(case),
        "merged": lambda: F.linear(case.x, w_merged, case.bias),
        "vidlora": lambda: lora_linear(*args),
    }
    if device == "cuda":
        from vidlora.kernels.lora_gemm import lora_linear_triton

        empty_a, empty_b = case.lora_a[:0], case.lora_b[:, :0]
        methods["triton_r0"] = lambda: lora_linear_triton(
            case.x, case.weight, case.bias, empty_a, empty_b, case.lora_scale[:0]
        )
    return methods


def _measure(
    name: str, m: int, n: int, k: int, r: int, dtype: torch.dtype, device: str, env: dict, timer, extra: dict
) -> list[dict[str, Any]]:
    """Time every method on one case; ``timer`` maps {method: fn} to {method: timing}."""
    case = make_linear_case(m, n, k, r, dtype, device)
    times = timer(_methods(case, device))
    base_ms = times["base"]["ms"]
    base_flops, extra_flops = lora_flops(m, n, k, r)
    rows = []
    for meth, t in times.items():
        flops = base_flops + (0 if meth in ("base", "merged", "triton_r0") else extra_flops)
        row = result_row(
            "kernel_bench", env, shape=name, m=m, n=n, k=k, r=r, dtype=str(dtype)[6:], method=meth,
            **t, ratio_vs_base=t["ms"] / base_ms, overhead_vs_base=t["ms"] / base_ms - 1,
            tflops=flops / (t["ms"] * 1e-3) / 1e12, **extra,
        )  # fmt: skip
        if meth == "vidlora" and "bandwidth" in extra:
            floor = roofline_floor_ms(base_ms, m, n, k, r, case.x.element_size(), extra["bandwidth"])
            row["floor_ms"] = floor
            row["ratio_vs_floor"] = t["ms"] / floor
        rows.append(row)
    return rows


_CPU_FIELDS = {"run": "cpu", "threads": 1, "clock": "thread_time"}


def run_cpu(quick: bool = False) -> list[dict[str, Any]]:
    """The torch paths at small shapes, plus the CPU overhead goal; every row says 'cpu'."""
    # One thread, timed by its own CPU clock: on a shared 2-core VM two OpenMP threads
    # stall on each other for whole 16 ms scheduler slices (seen here: identical GEMMs at
    # 0.6 ms and 16 ms), and wall time counts other processes' turns.
    torch.set_num_threads(1)
    env = environment("cpu")
    repeats = 5 if quick else 9
    timer = lambda fns: time_cpu_interleaved(fns, repeats=repeats, clock=time.thread_time)  # noqa: E731
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for name, n, k in CPU_SHAPES[:1] if quick else CPU_SHAPES:
            for m in CPU_TOKENS:
                for r in CPU_RANKS[1:2] if quick else CPU_RANKS:
                    rows += _measure(name, m, n, k, r, dtype, "cpu", env, timer, _CPU_FIELDS)
        name, m, n, k, r = CPU_GOAL
        rows += _measure(name, m, n, k, r, dtype, "cpu", env, timer, _CPU_FIELDS)
    return rows


def _bandwidth(device: str) -> float:
    """Device memory bandwidth in bytes/s, from a 1 GiB copy timed in this run."""
    src = torch.empty(1 << 29, dtype=torch.float16, device=device)
    dst = torch.empty_like(src)
    ms = time_gpu(lambda: dst.copy_(src))["ms"]
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def _time_each_gpu(fns: dict[str, Callable[[], Any]]) -> dict[str, dict[str, float]]:
    return {name: time_gpu(fn) for name, fn in fns.items()}


def run_gpu(quick: bool = False) -> list[dict[str, Any]]:
    """Real shapes on the current CUDA GPU (see module doc)."""
    env = environment("cuda")
    extra = {"run": "cuda", "bandwidth": _bandwidth("cuda")}
    rows = []
    shapes = GPU_SHAPES[:2] if quick else GPU_SHAPES
    for name, n, k in shapes:
        for m in GPU_TOKENS[-1:] if quick else GPU_TOKENS:
            for r in (32, 128) if quick else GPU_RANKS:
                rows += _measure(name, m, n, k, r, torch.bfloat16, "cuda", env, _time_each_gpu, extra)
    return rows


def _fp8_methods(case: LinearCase) -> dict[str, Callable[[], Any]]:
    """base, the bf16 fused kernel and the FP8 paths this GPU runs (W8A8: sm_89+)."""
    from vidlora.kernels.fp8_format import quantize_weight
    from vidlora.kernels import lora_linear, lora_linear_fp8
    from vidlora.kernels.fp8_gemm import W8A8_MIN_CAPABILITY, quantize_shrink_triton
    from vidlora.kernels.fp8_reference import quantize_rows_e4m3

    w8, ws = quantize_weight(case.weight)
    args8 = (case.x, w8, ws, case.bias, case.lora_a, case.lora_b, case.lora_scale)
    methods = {
        "base": lambda: F.linear(case.x, case.weight, case.bias),
        "vidlora": lambda: lora_linear(*case.args()),
        "w8a16": lambda: lora_linear_fp8(*args8, False),
    }
    if torch.cuda.get_device_capability(case.x.device) >= W8A8_MIN_CAPABILITY:
        methods["w8a8"] = lambda: lora_linear_fp8(*args8, True)
        methods["w8a8_quant"] = lambda: quantize_shrink_triton(case.x, case.lora_a, case.lora_scale)
        # cuBLASLt's fp8 GEMM needs M % 16 == 0 (32,760 is not): pad with 8 zero rows at most.
        m_pad = -(-case.m // 16) * 16
        x8, xs = quantize_rows_e4m3(F.pad(case.x, (0, 0, 0, m_pad - case.m)))
        scaled = lambda: torch._scaled_mm(  # noqa: E731
            x8, w8.t(), scale_a=xs[:, None], scale_b=ws[None, :], out_dtype=case.x.dtype
        )
        try:
            scaled()
            methods["fp8_scaled_mm"] = scaled
        except (RuntimeError, AttributeError, TypeError) as err:  # row-wise scales need a recent torch build
            print(f"kernel_bench: fp8_scaled_mm skipped ({type(err).__name__}: {err})"[:200], file=sys.stderr)
    return methods


def _measure_fp8(
    name: str, m: int, n: int, k: int, r: int, env: dict, extra: dict, flops16: float | None
) -> list[dict[str, Any]]:
    """Time the FP8 methods on one case; floors use ``flops16`` (or this case's base rate)."""
    case = make_linear_case(m, n, k, r, torch.bfloat16, "cuda")
    times = _time_each_gpu(_fp8_methods(case))
    base_ms, fused_ms = times["base"]["ms"], times["vidlora"]["ms"]
    base_flops, extra_flops = lora_flops(m, n, k, r)
    flops16 = flops16 or base_flops / (base_ms * 1e-3)
    rows = []
    for meth, t in times.items():
        flops = {"base": base_flops, "fp8_scaled_mm": base_flops, "w8a8_quant": 2.0 * m * k * r}.get(
            meth, base_flops + extra_flops)  # fmt: skip
        row = result_row(
            "kernel_bench", env, section="fp8", shape=name, m=m, n=n, k=k, r=r, dtype="bfloat16", method=meth,
            **t, ratio_vs_base=t["ms"] / base_ms, speedup_vs_base=base_ms / t["ms"],
            ratio_vs_bf16_fused=t["ms"] / fused_ms, tflops=flops / (t["ms"] * 1e-3) / 1e12,
            bf16_tflops_for_floor=flops16 / 1e12, **extra,
        )  # fmt: skip
        if meth in ("w8a16", "w8a8"):
            row["floor_ms"] = fp8_floor_ms(meth, m, n, k, r, flops16, extra["bandwidth"])
            row["ratio_vs_floor"] = t["ms"] / row["floor_ms"]
        rows.append(row)
    return rows


def run_gpu_fp8(quick: bool = False) -> list[dict[str, Any]]:
    """FP8-base rows on the current CUDA GPU (see module doc); every row has section "fp8"."""
    env = environment("cuda")
    extra = {"run": "cuda", "bandwidth": _bandwidth("cuda")}
    rows = []
    for name, n, k in FP8_SHAPES[:2] if quick else FP8_SHAPES:
        flops16 = None  # the bf16 rate at the largest M (measured first), for every floor of the shape
        for m in sorted((1024, 32760) if quick else FP8_TOKENS, reverse=True):
            shape_rows = _measure_fp8(name, m, n, k, FP8_RANK, env, extra, flops16)
            flops16 = flops16 or shape_rows[0]["bf16_tflops_for_floor"] * 1e12
            rows += shape_rows
    return rows


def _fp8_goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 5's GPU goals, from ratios measured in the same run."""
    lines = []
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    for name, _, _ in FP8_SHAPES:
        w8a8 = _by(rows, section="fp8", shape=name, m=32760, method="w8a8")
        label = f"W8A8 fused (quantize pass included) >= 1.5x faster than cuBLAS bf16, {name}, M 32760"
        lines.append(f"goal ({label}): " + (
            f"{w8a8['speedup_vs_base']:.2f}x: {verdict(w8a8['speedup_vs_base'] >= 1.5)}" if w8a8
            else "not measured in this run"))  # fmt: skip
        for m in FP8_TOKENS:
            w8a16 = _by(rows, section="fp8", shape=name, m=m, method="w8a16")
            if m == 32760:
                label, ok = f"W8A16 <= 1.15x the bf16 fused kernel, {name}, M {m}", lambda x: x <= 1.15
            elif m <= 1024:
                label, ok = f"W8A16 faster than the bf16 fused kernel, {name}, M {m}", lambda x: x < 1.0
            else:
                continue
            lines.append(f"goal ({label}): " + (
                f"{w8a16['ratio_vs_bf16_fused']:.3f}x: {verdict(ok(w8a16['ratio_vs_bf16_fused']))}" if w8a16
                else "not measured in this run"))  # fmt: skip
    return lines


def _fp8_report(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["", "FP8 bases (bf16 compute, rank 32; x base = time / cuBLAS bf16, x fused = time / bf16 fused kernel)",
             f"{'shape':16} {'M':>6} {'method':14} {'ms':>9} {'x base':>7} {'x fused':>7} {'TFLOP/s':>8} "
             f"{'floor ms':>9} {'x floor':>7}"]  # fmt: skip
    for r in rows:
        floor = f" {r['floor_ms']:>9.3f} {r['ratio_vs_floor']:>7.3f}" if "floor_ms" in r else ""
        lines.append(f"{r['shape']:16} {r['m']:>6} {r['method']:14} {r['ms']:>9.3f} {r['ratio_vs_base']:>7.3f} "
                     f"{r['ratio_vs_bf16_fused']:>7.3f} {r['tflops']:>8.1f}{floor}")  # fmt: skip
    return lines + _fp8_goal_lines(rows)


def _by(rows: list[dict], **match: Any) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


# Issue 2's H100 goals: (label, shape, M, R, method, limit on time / base time).
_GPU_GOALS = (
    ("Triton R = 0 within 1.05x cuBLAS", "wan14b.proj", 32760, 32, "triton_r0", 1.05),
    ("rank 32, fused q/k/v <= 1.04x base", "wan14b.qkv", 32760, 32, "vidlora", 1.04),
    ("rank 32, FFN up <= 1.04x base", "wan14b.ffn_up", 32760, 32, "vidlora", 1.04),
    ("rank 32, 5120 x 5120 projection <= 1.07x base", "wan14b.proj", 32760, 32, "vidlora", 1.07),
    ("four stacked adapters (R 128), fused q/k/v <= 1.10x base", "wan14b.qkv", 32760, 128, "vidlora", 1.10),
)


def _gpu_goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for label, shape, m, r, method, limit in _GPU_GOALS:
        row = _by(rows, shape=shape, m=m, r=r, method=method)
        if row is None:
            lines.append(f"goal ({label}): not measured in this run")
            continue
        ok = row["ratio_vs_base"] <= limit
        lines.append(f"goal ({label}): {row['ratio_vs_base']:.3f}x: {'met' if ok else 'NOT met'}")
    for m in GPU_TOKENS:
        r32 = _by(rows, shape="wan14b.qkv", m=m, r=32, method="vidlora")
        for r in (4, 8):
            small = _by(rows, shape="wan14b.qkv", m=m, r=r, method="vidlora")
            if r32 and small:
                ok = small["ms"] <= r32["ms"]
                lines.append(
                    f"goal (rank {r} no slower than 32, fused q/k/v, M {m}): {small['ms']:.3f} vs "
                    f"{r32['ms']:.3f} ms: {'met' if ok else 'NOT met'}"
                )
    return lines


def _report(rows: list[dict[str, Any]]) -> str:
    fp8_rows = [r for r in rows if r.get("section") == "fp8"]
    rows = [r for r in rows if r.get("section") != "fp8"]
    if fp8_rows and not rows:
        return "\n".join([f"kernel_bench: CUDA run on {fp8_rows[0]['device']}", *_fp8_report(fp8_rows)])
    lines = []
    run = rows[0]["run"] if rows else "?"
    lines.append(f"kernel_bench: {'CPU run (torch paths only; no GPU numbers)' if run == 'cpu' else 'CUDA run'}"
                 f" on {rows[0]['device'] if rows else '?'}")  # fmt: skip
    head = f"{'shape':16} {'dtype':9} {'M':>6} {'N':>6} {'K':>6} {'R':>4}  {'method':9} {'ms':>9} {'x base':>7} {'TFLOP/s':>8}"
    if run == "cuda":
        head += f" {'floor ms':>9} {'x floor':>7}"
    lines.append(head)
    for r in rows:
        line = (f"{r['shape']:16} {r['dtype']:9} {r['m']:>6} {r['n']:>6} {r['k']:>6} {r['r']:>4}  {r['method']:9} "
                f"{r['ms']:>9.3f} {r['ratio_vs_base']:>7.3f} {r['tflops']:>8.2f}")  # fmt: skip
        if "floor_ms" in r:
            line += f" {r['floor_ms']:>9.3f} {r['ratio_vs_floor']:>7.3f}"
        lines.append(line)
    if run == "cuda":
        lines += _gpu_goal_lines(rows)
    if fp8_rows:
        lines += _fp8_report(fp8_rows)
    if run == "cpu":
        for dtype in ("float32", "bfloat16"):
            ref = _by(rows, shape=CPU_GOAL[0], dtype=dtype, method="vidlora")
            peft = _by(rows, shape=CPU_GOAL[0], dtype=dtype, method="peft")
            if ref and peft:
                ok = ref["overhead_vs_base"] <= 0.5 * peft["overhead_vs_base"]
                lines.append(
                    f"goal (CPU reference LoRA overhead <= 1/2 PEFT-style), {dtype}: vidlora "
                    f"{ref['overhead_vs_base']:+.1%} vs PEFT-style {peft['overhead_vs_base']:+.1%} over base: "
                    f"{'met' if ok else 'NOT met'}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernel_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="fewer shapes and ranks")
    parser.add_argument("--part", choices=("all", "lora", "fp8"), default="all",
                        help="GPU only: the LoRA rows, the FP8-base rows, or both (default)")  # fmt: skip
    parser.add_argument("--save", nargs="?", const="", metavar="DIR",
                        help="write the rows as JSON lines to DIR (default benchmarks/results/)")  # fmt: skip
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("kernel_bench: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    if device == "cuda":
        rows = (run_gpu(args.quick) if args.part != "fp8" else []) + (run_gpu_fp8(args.quick) if args.part != "lora" else [])
    elif args.part == "fp8":
        print("kernel_bench: the FP8 rows need a CUDA GPU (the FP8 kernels' CPU path is the torch "
              "reference; its error is in benchmarks/fp8_lora_error.py)", file=sys.stderr)  # fmt: skip
        return 2
    else:
        rows = run_cpu(args.quick)
    print(_report(rows))
    if args.save is not None:
        path = write_rows(rows, results_path("kernel_bench", device, Path(args.save) if args.save else None))
        print(f"saved {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
