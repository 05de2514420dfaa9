"""Measure kernel configs on the current GPU and store the fastest as data.

    python -m vidlora.kernels.tuner [--models wan14b,hunyuan] [--tokens 8192,32760]
                                   [--ranks 0,16,32,64,128] [--dtype bfloat16] [--out DIR]

For every (N, K) of the chosen models, token count M and rank R it times (triton.testing
.do_bench, median) each strategy that applies and a small grid of tile configs, checks the
winner against the torch reference, and writes ``<DIR>/<gpu name>.json`` (default
kernels/configs/), which the launcher then prefers over the heuristic (tuned_configs.py). Entries
for keys it did not measure are kept from an existing file.

Why not ``@triton.autotune`` at run time: it would time every candidate on the first call
of each new shape inside a user's generation (seconds per shape, x dozens of shapes), and
results would differ between runs; measured once per GPU and shipped as data, configs are
reproducible and reviewable.

Needs a CUDA GPU; nothing here runs on CPU except candidate enumeration and selection
(tested with a fake timer).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from .heuristics import FUSED_MAX_RANK, GemmConfig, ShrinkConfig, gemm_config, pad_rank, shared_memory_limit
from .tuned_configs import CONFIG_DIR, config_path, entry_json, load_tuned

__all__ = ["MODEL_SHAPES", "gemm_candidates", "shrink_candidates", "tune_case", "main"]

# (N, K) of every Linear in the DiT blocks, fused q/k/v included.
MODEL_SHAPES = {
    "wan14b": [(5120, 5120), (15360, 5120), (10240, 5120), (13824, 5120), (5120, 13824)],
    "wan1.3b": [(1536, 1536), (4608, 1536), (3072, 1536), (8960, 1536), (1536, 8960)],
    "hunyuan": [(3072, 3072), (9216, 3072), (12288, 3072), (3072, 12288)],
}


def _smem_estimate(bm: int, bn: int, bk: int, stages: int, elem: int = 2) -> int:
    return (bm * bk + bk * bn) * elem * stages


def gemm_candidates(r: int, strategy: str, smem_limit: int) -> Iterator[GemmConfig]:
    """Tile grid for the GEMM kernel, pruned by an operand-staging shared memory estimate."""
    block_rs = [pad_rank(r)] if strategy == "fused" else [b for b in (16, 32, 64) if b <= pad_rank(r)]
    for bm, bn, bk, warps, stages, br in itertools.product(
        (64, 128), (128, 256), (32, 64), (4, 8), (3, 4), block_rs
    ):
        if bm == 64 and warps == 8 or _smem_estimate(bm, bn, bk, stages) > smem_limit:
            continue
        yield GemmConfig(bm, bn, bk, br, 8, warps, stages)


def shrink_candidates(r: int, smem_limit: int) -> Iterator[ShrinkConfig]:
    """Tile grid for the shrink kernel (the whole padded rank, up to 128, in one column)."""
    br = pad_rank(r, 128)
    for bm, bk, warps, stages in itertools.product((32, 64, 128), (64, 128), (4, 8), (3, 4)):
        if _smem_estimate(bm, br, bk, stages) <= smem_limit:
            yield ShrinkConfig(bm, bk, br, warps, stages)


def tune_case(
    m: int, n: int, k: int, r: int, capability: tuple[int, int], smem_limit: int,
    time_ms: Callable[[str, GemmConfig, ShrinkConfig | None], float],
) -> tuple[str, GemmConfig, ShrinkConfig | None, float]:
    """Fastest (strategy, gemm, shrink, ms) by ``time_ms``; inf means a candidate failed.

    Shrink+expand is tuned in two passes: shrink tiles with the heuristic GEMM, then GEMM
    tiles with the best shrink (the two kernels do not share resources).
    """
    strategies = ["plain"] if r == 0 else ["shrink_expand"] + (["fused"] if r <= FUSED_MAX_RANK else [])
    best: tuple[str, GemmConfig, ShrinkConfig | None, float] | None = None
    for strategy in strategies:
        shrink = None
        if strategy == "shrink_expand":
            g0 = gemm_config(m, n, k, r, capability, strategy)
            shrink = min(shrink_candidates(r, smem_limit), key=lambda s: time_ms(strategy, g0, s))
        for g in gemm_candidates(r, strategy, smem_limit):
            ms = time_ms(strategy, g, shrink)
            if best is None or ms < best[3]:
                best = (strategy, g, shrink, ms)
    if best is None or best[3] == float("inf"):
        raise RuntimeError(f"no candidate config ran for M={m} N={n} K={k} R={r}")
    return best


def _gpu_timer(m: int, n: int, k: int, r: int, dtype: torch.dtype):
    from triton.testing import do_bench

    from .lora_gemm import lora_linear_triton

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(m, k, device="cuda", dtype=dtype, generator=g)
    w = torch.randn(n, k, device="cuda", dtype=dtype, generator=g) * k**-0.5
    b = torch.randn(n, device="cuda", dtype=dtype, generator=g)
    a = torch.randn(r, k, device="cuda", dtype=dtype, generator=g) * k**-0.5
    bb = torch.randn(n, r, device="cuda", dtype=dtype, generator=g)
    c = torch.rand(r, device="cuda", generator=g)
    args = (x, w, b, a, bb, c)

    def run(strategy, gemm, shrink):
        return lora_linear_triton(*args, strategy=strategy, gemm=gemm, shrink=shrink)

    def time_ms(strategy, gemm, shrink) -> float:
        try:
            return float(do_bench(lambda: run(strategy, gemm, shrink), warmup=10, rep=50, return_mode="median"))
        except Exception as err:  # out of resources / registers: not a candidate here
            print(f"  skip {strategy} {gemm} {shrink}: {type(err).__name__}", file=sys.stderr)
            return float("inf")

    return args, run, time_ms


def main(argv: list[str] | None = None) -> int:
    from vidlora.kernels.reference import lora_linear_reference

    parser = argparse.ArgumentParser(prog="python -m vidlora.kernels.tuner", description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="wan14b,hunyuan", help=f"comma list of {', '.join(MODEL_SHAPES)}")
    parser.add_argument("--tokens", default="8192,32760")
    parser.add_argument("--ranks", default="0,16,32,64,128")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    parser.add_argument("--out", default=None, help="folder for the JSON (default kernels/configs/)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("vidlora.kernels.tuner needs a CUDA GPU", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    cap = torch.cuda.get_device_capability()
    smem_limit = shared_memory_limit(cap)
    name = torch.cuda.get_device_name()
    path = config_path(name, Path(args.out) if args.out else CONFIG_DIR)
    entries = {}
    if path.is_file():
        entries = {tuple(e[k] for k in ("dtype", "n", "k", "r_bucket", "m_bucket")): e
                   for e in json.loads(path.read_text())["entries"]}  # fmt: skip
    shapes = [s for model in args.models.split(",") for s in MODEL_SHAPES[model]]
    for (n, k), m, r in itertools.product(shapes, map(int, args.tokens.split(",")), map(int, args.ranks.split(","))):
        case_args, run, time_ms = _gpu_timer(m, n, k, r, dtype)
        strategy, gemm, shrink, ms = tune_case(m, n, k, r, cap, smem_limit, time_ms)
        ref = lora_linear_reference(*(t.float() for t in case_args[:5]), case_args[5])
        torch.testing.assert_close(run(strategy, gemm, shrink).float(), ref, atol=0.1, rtol=2e-2)
        e = entry_json(dtype, n, k, r, m, strategy, gemm, shrink, ms)
        entries[tuple(e[key] for key in ("dtype", "n", "k", "r_bucket", "m_bucket"))] = e
        print(f"M={m} N={n} K={k} R={r}: {strategy} {gemm} {shrink} {ms:.3f} ms", flush=True)
        del case_args, run, time_ms
        torch.cuda.empty_cache()
    data = {
        "device": name,
        "triton": __import__("triton").__version__,
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "entries": sorted(entries.values(), key=lambda e: (e["dtype"], e["n"], e["k"], e["r_bucket"], e["m_bucket"])),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    load_tuned.cache_clear()
    load_tuned(path)  # fails loudly if what was written does not parse
    print(f"wrote {len(data['entries'])} entries to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
