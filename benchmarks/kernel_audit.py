"""Kernel audit: are the LoRA kernels on the tensor-core fast path for sm_80, sm_89, sm_90?

    python -m benchmarks.kernel_audit [--json] [--quick] [--save [DIR]] [--jobs N] [--kernel PREFIX ...]
    python -m vidlora.benchmarks.kernel_audit ...        (from an install)

No GPU needed: each kernel variant is compiled ahead of time (kernels/aot.py) at real
Wan 14B / HunyuanVideo shapes with the tile config the launcher would pick on that
architecture, and its cubin is read with the cuobjdump that ships with Triton:

- ``mma``: tensor-core MMA instructions in the SASS: HGMMA (warpgroup MMA) on sm_90,
  HMMA on sm_80/sm_89; for the FP8 W8A8 GEMM QGMMA on sm_90 and QMMA on sm_89
  (``mma_kind`` says which were found, ``mma_expected`` which one must be; ``ptx_mma``
  lists the PTX MMA instructions, whose operand types show which MMA was kept).
- ``ptx_cvt``: the PTX e4m3 conversions (W8A16 upcast ``cvt.rn.f16x2.e4m3x2``; the W8A8
  quantize pass's ``cvt.rn.satfinite.e4m3x2.f32``, round to nearest even, saturating).
- ``spills``: LDL + STL instructions (local-memory traffic, usually register spills).
- ``smem``: shared memory per block (bytes), against ``smem_limit`` for the architecture.
- ``regs``: registers per thread (cuobjdump -res-usage).
- ``tma``: TMA bulk tensor instructions in the SASS (UTMALDG + UTMASTG; ``ldgsts`` counts
  cp.async loads beside them); ``persistent``: the kernel is launched as a grid of
  min(#SMs, tiles) programs each looping over tiles (persistent_gemm.py); ``pdl``: the PTX
  has ``griddepcontrol.wait`` (only the PDL variant may).
- fp32 rows compile with IEEE dots (the launcher's default): the expected "MMA" is FFMA.
``ok`` is true when the expected MMA kind is present, shared memory fits, nothing spills,
the persistent kernels issue TMA instructions and only the PDL variant waits on the grid.

FP8 bases (``base`` column): W8A16 GEMMs on every architecture (sm_80 reads the fp8
bytes as uint8 and converts them exactly in registers), W8A8 quantize pass and fp8 GEMMs
on sm_89 and sm_90 only (on sm_80 the launcher raises BackendUnavailableError: there is no
fp8 MMA to compile for).

``--quick`` compiles each of the four 16-bit kernels once per architecture at one
representative shape, plus the rank-128 shrink, the FP8 kernels a rank-32 call launches,
one fp32 and one M <= 64 row per architecture, and the sm_90 TMA kernels (what the test
suite runs: 34 compilations); the default is every real shape in kernels/aot.py with the
kernels its launch plan uses, in bf16 and fp16, for 16-bit, W8A16 and W8A8 bases, the
persistent kernels, M <= 64 shapes, and fp32 rows (556 compilations).
This is a proxy, not a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["audit_cases", "audit_one", "expected_mma", "sass_stats", "run_audit", "main"]

_MMA_KINDS = ("HGMMA", "HMMA", "QGMMA", "QMMA", "FFMA")
_EXPECTED_MMA = {80: "HMMA", 89: "HMMA", 90: "HGMMA"}
_EXPECTED_FP8_MMA = {89: "QMMA", 90: "QGMMA"}
_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# The W8A8 quantize pass must round to nearest even and saturate, as the reference does.
_SATFINITE_CVT = "cvt.rn.satfinite.e4m3x2.f32"


def expected_mma(variant: str, arch: int) -> str:
    """The tensor-core MMA a variant must issue on ``sm_<arch>``.

    16-bit and W8A16 kernels: HGMMA on sm_90, HMMA below. The W8A8 GEMMs: fp8 MMA (QGMMA
    on sm_90, QMMA on sm_89). The W8A8 quantize pass: HMMA everywhere: its 32-row tiles
    are below wgmma's 64-row minimum, and it is bound by reading x, not by its MMA.
    """
    if variant.startswith(("w8a8_gemm", "w8a8_persistent")):
        return _EXPECTED_FP8_MMA[arch]
    if variant == "w8a8_quant_shrink":
        return "HMMA"
    return _EXPECTED_MMA[arch]


def _expected(variant: str, arch: int, dtype: str) -> str:
    """fp32 runs IEEE dots (torch's default matmul precision): FMA, no tensor cores."""
    if dtype == "fp32" and not variant.startswith(("w8a8_gemm", "w8a8_persistent")):
        return "FFMA"
    return expected_mma(variant, arch)


def _base(variant: str) -> str:
    return variant.split("_", 1)[0] if variant.startswith(("w8a16_", "w8a8_")) else "16-bit"


def _cuobjdump() -> str:
    import triton

    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not path.is_file():
        raise FileNotFoundError(f"cuobjdump not found at {path} (it ships with Triton's NVIDIA backend)")
    return str(path)


def sass_stats(cubin: bytes) -> dict[str, Any]:
    """MMA / LDL / STL instruction counts and registers per thread of one cubin."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "kernel.cubin"
        path.write_bytes(cubin)
        tool = _cuobjdump()
        sass = subprocess.run([tool, "-sass", str(path)], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([tool, "-res-usage", str(path)], capture_output=True, text=True, check=True).stdout
    # Opcodes follow the "/*addr*/" column; modifiers (.F32.BF16...) are not counted apart.
    ops = Counter(re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9]*)", sass))
    regs = re.search(r"REG:(\d+)", usage)
    return {
        "mma_by_kind": {k: ops[k] for k in _MMA_KINDS if ops[k]},
        "ldl": ops["LDL"],
        "stl": ops["STL"],
        # TMA: bulk tensor loads / stores (UTMALDG / UTMASTG); cp.async loads are LDGSTS.
        "utmaldg": ops["UTMALDG"],
        "utmastg": ops["UTMASTG"],
        "ldgsts": ops["LDGSTS"],
        "regs": int(regs.group(1)) if regs else None,
    }


def audit_cases(quick: bool) -> list[tuple[str, int, str, str]]:
    """(kernel variant, arch, shape name, dtype) to compile."""
    from vidlora.kernels.aot import ARCHS, REAL_SHAPES, variant_archs
    from vidlora.kernels.aot_persistent import PERSISTENT_VARIANTS
    from vidlora.kernels.heuristics import choose_strategy, fp8_strategy

    if quick:
        # The four kernels once per arch: the 5120 projection (shrink+expand plan), the
        # 256-token one (fused plan), and the rank-128 shrink (largest staging tiles);
        # FP8: W8A16 expand and fused GEMMs, the W8A8 quantize pass and fp8 GEMM; one fp32
        # and one M <= 64 row per arch; the TMA kernels on sm_90 (16-bit, PDL, W8A8).
        picks = [("gemm_plain", "wan14b.proj", "bf16"), ("shrink", "wan14b.proj", "bf16"),
                 ("shrink", "wan14b.qkv.r128", "bf16"), ("gemm_expand", "wan14b.proj", "bf16"),
                 ("gemm_fused", "wan14b.proj.m256", "bf16"), ("w8a16_gemm_expand", "wan14b.proj", "bf16"),
                 ("w8a16_gemm_fused", "wan14b.proj.m256", "bf16"), ("w8a8_quant_shrink", "wan14b.proj", "bf16"),
                 ("w8a8_gemm_expand", "wan14b.proj", "bf16"), ("gemm_expand", "wan14b.proj", "fp32"),
                 ("gemm_fused", "wan14b.proj.m64.r64", "bf16"), ("persistent_expand", "wan14b.proj", "bf16"),
                 ("persistent_expand_pdl", "wan14b.proj", "bf16"),
                 ("w8a8_persistent_expand", "wan14b.proj", "bf16")]  # fmt: skip
        return [(v, arch, s, d) for arch in ARCHS for v, s, d in picks if arch in variant_archs(v)]
    cases: list[tuple[str, int, str, str]] = []

    def add(v, arch, shape, dtype):
        if arch in variant_archs(v) and (v, arch, shape, dtype) not in cases:
            cases.append((v, arch, shape, dtype))

    for dtype in ("bf16", "fp16"):
        for arch in ARCHS:
            cap = (arch // 10, arch % 10)
            for s in REAL_SHAPES:
                strategy = choose_strategy(s.m, s.n, s.k, s.r, 2, cap)
                kernels = {"shrink_expand": ["shrink", "gemm_expand"], "fused": ["gemm_fused"]}[strategy]
                w8a16 = {"shrink_expand": "w8a16_gemm_expand", "fused": "w8a16_gemm_fused"}[
                    fp8_strategy(s.m, s.n, s.k, s.r, 2, cap, "w8a16")]  # fmt: skip
                kernels += ["w8a16_gemm_plain", w8a16, "w8a8_quant_shrink", "w8a8_gemm_plain", "w8a8_gemm_expand"]
                persistent = {"shrink_expand": ["persistent_expand", "persistent_expand_pdl"],
                              "fused": ["persistent_fused"]}[strategy]  # fmt: skip
                kernels += ["persistent_plain", *persistent, *(v for v in PERSISTENT_VARIANTS if v.startswith("w8a8"))]
                for v in ["gemm_plain", *kernels]:
                    add(v, arch, s.name, dtype)
            for v in ("gemm_fused", "w8a16_gemm_fused", "persistent_fused"):
                # Small-M calls may pick it on every arch (at fewer rows than 256 on
                # sm_80/sm_89): audit it everywhere.
                add(v, arch, "wan14b.proj.m256", dtype)
            for shape in ("wan14b.proj.m64.r64", "wan14b.proj.m16"):  # M <= 64: one warpgroup, 64-row tiles
                for v in ("gemm_plain", "shrink", "gemm_expand", "gemm_fused", "w8a16_gemm_expand", "w8a16_gemm_fused",
                          "w8a8_gemm_expand", "persistent_expand", "persistent_fused", "w8a8_persistent_expand"):
                    add(v, arch, shape, dtype)
    for arch in ARCHS:  # fp32 (IEEE): the kernels a fp32 call can launch, at two shapes
        for v in ("gemm_plain", "shrink", "gemm_expand", "w8a16_gemm_plain", "w8a16_gemm_expand",
                  "w8a8_quant_shrink", "w8a8_gemm_expand"):
            add(v, arch, "wan14b.proj", "fp32")
        for v in ("gemm_fused", "w8a16_gemm_fused"):
            add(v, arch, "wan14b.proj.m256", "fp32")
        add("gemm_fused", arch, "wan14b.proj.m64.r64", "fp32")
    return cases


def audit_one(case: tuple[str, int, str, str]) -> dict[str, Any]:
    """Compile one case and read its machine code; returns one result row."""
    import torch

    from vidlora.kernels.aot import AUDIT_SHAPES, FP8_KERNEL_VARIANTS, KERNEL_VARIANTS, SHARED_MEMORY_LIMIT, _plan, compile_variant
    from vidlora.kernels.aot_persistent import PERSISTENT_VARIANTS, persistent_source

    variant, arch, shape_name, dtype = case
    shape = next(s for s in AUDIT_SHAPES if s.name == shape_name)
    t0 = time.perf_counter()
    compiled = compile_variant(variant, arch, shape, getattr(torch, _DTYPES[dtype]))
    compile_s = time.perf_counter() - t0
    stats = sass_stats(compiled.asm["cubin"])
    elem = 4 if dtype == "fp32" else 2
    if variant in PERSISTENT_VARIANTS:
        config = persistent_source(variant, shape.m, shape.n, shape.k, shape.r, torch.bfloat16)[3]
        strategy = PERSISTENT_VARIANTS[variant][1]
    else:
        gemm, pre = _plan(variant, arch, shape, elem)
        config = pre if variant in ("shrink", "w8a8_quant_shrink") else gemm
        strategy = FP8_KERNEL_VARIANTS[variant][1] if variant in FP8_KERNEL_VARIANTS else KERNEL_VARIANTS[variant]
    expected = _expected(variant, arch, dtype)
    if expected != "FFMA":
        stats["mma_by_kind"].pop("FFMA", None)  # FMA in address math / epilogues is not the MMA
    mma_kind = "+".join(stats["mma_by_kind"]) or "none"
    smem = int(compiled.metadata.shared)
    spills = stats["ldl"] + stats["stl"]
    ptx = compiled.asm["ptx"]
    ptx_mma = sorted(set(re.findall(r"(?:wgmma\.mma_async|mma\.sync)[\w.]*", ptx)))
    ptx_cvt = sorted(set(re.findall(r"cvt\.[\w.]*e4m3[\w.]*", ptx)))
    persistent = variant in PERSISTENT_VARIANTS
    tma = stats["utmaldg"] + stats["utmastg"]
    pdl = "griddepcontrol.wait" in ptx
    return {
        "kernel": variant,
        "base": _base(variant),
        "arch": f"sm_{arch}",
        "shape": shape.name,
        "m": shape.m,
        "n": shape.n,
        "k": shape.k,
        "r": 0 if strategy == "plain" else shape.r,
        "dtype": dtype,
        "config": {key: getattr(config, key) for key in config.__dataclass_fields__},
        "mma": sum(stats["mma_by_kind"].values()),
        "mma_kind": mma_kind,
        "mma_expected": expected,
        "spills": spills,
        "ldl": stats["ldl"],
        "stl": stats["stl"],
        "smem": smem,
        "smem_limit": SHARED_MEMORY_LIMIT[arch],
        "regs": stats["regs"],
        # TMA bulk tensor instructions in the SASS (UTMALDG + UTMASTG) and cp.async loads.
        "tma": tma,
        "utmaldg": stats["utmaldg"],
        "utmastg": stats["utmastg"],
        "ldgsts": stats["ldgsts"],
        # Launched as a grid of min(#SMs, tiles) programs each looping over tiles.
        "persistent": persistent,
        "pdl": pdl,
        "ptx_mma": ptx_mma,
        "ptx_cvt": ptx_cvt,
        "compile_s": round(compile_s, 2),
        "ok": stats["mma_by_kind"].get(expected, 0) > 0 and smem <= SHARED_MEMORY_LIMIT[arch] and spills == 0
        and (variant != "w8a8_quant_shrink" or _SATFINITE_CVT in ptx_cvt) and (not persistent or tma > 0)
        and (pdl == variant.endswith("_pdl")),
    }


def run_audit(quick: bool, jobs: int | None = None, prefixes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every case, compiled in ``jobs`` worker processes (compilation is single-threaded)."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("kernel_audit: unset TRITON_INTERPRET (interpreted kernels cannot be compiled)")
    # Triton 3.9 warns once per process that this default changes in 3.10; FMA fusion is
    # what the kernels are written for, so pin it.
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    cases = [c for c in audit_cases(quick) if not prefixes or c[0].startswith(prefixes)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(cases)))
    if jobs == 1:
        return [audit_one(c) for c in cases]
    import multiprocessing

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(audit_one, cases))


def _table(rows: list[dict[str, Any]]) -> str:
    cols = ["kernel", "arch", "shape", "dtype", "mma_kind", "mma", "spills", "regs", "smem", "smem_limit", "tma",
            "persistent", "ok"]  # fmt: skip
    if not rows:
        return "(no kernels)"
    cells = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *map(line, cells)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernel_audit", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--quick", action="store_true", help="each kernel once per arch (the CI subset)")
    parser.add_argument("--save", nargs="?", const="", metavar="DIR",
                        help="also write the rows to DIR (default benchmarks/results/)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument("--kernel", action="append", metavar="PREFIX",
                        help="only kernels whose name starts with PREFIX (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    rows = run_audit(args.quick, args.jobs, tuple(args.kernel or ()))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(_table(rows))
        bad = [r for r in rows if not r["ok"]]
        print(f"\n{len(rows)} kernels compiled, {len(bad)} not ok" + ("" if not bad else ": " + ", ".join(
            f"{r['kernel']}@{r['arch']}/{r['shape']}/{r['dtype']}" for r in bad)))  # fmt: skip
        print("FP8 W8A8 on sm_80: not built (no fp8 MMA; the launcher raises BackendUnavailableError "
              "naming sm_89). FP8 W8A16 on sm_80: compiled above (uint8 loads, exact conversion).")
    if args.save is not None:
        from .harness import environment, results_path

        env = {k: v for k, v in environment("cpu").items() if k != "device"}
        env["device"] = "none (AOT compile on CPU)"
        mode = "quick" if args.quick else "full"
        path = results_path(f"kernel_audit-{mode}", "cpu-aot", Path(args.save) if args.save else None, "json")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x") as f:
            json.dump([{"benchmark": "kernel_audit", **env, **r} for r in rows], f, indent=1)
        print(f"saved {path}", file=sys.stderr)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
