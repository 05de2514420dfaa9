"""Step time of one video's transformer forward on 1, 2, 4, 8 GPUs (context parallelism).

    python -m benchmarks.context_parallel --gpus 1,2,4,8 [--scenario wan2.1-14b-480p-81f]
        [--layers L] [--ring R] [--fp8] [--lora-rank 32] [--repeats 5] [--out DIR] [--dry-run]

For a lent multi-GPU machine; there is no CPU stand-in (gloo timings say nothing about
NVLink or PCIe). Each GPU count runs in its own ``torch.distributed.run`` launch of this
module (NCCL, one GPU per rank); the 1-GPU count is the baseline of the same run, and
every row carries its speedup against it. Each launch builds the scenario's transformer
with random bf16 weights (real shapes, ``benchmarks.models``), attaches vidlora with a
rank-``--lora-rank`` LoRA on every block Linear (``--fp8``: FP8 base), turns on
``vidlora.context_parallel`` (Ulysses, or ``--ring``), and times one forward: 2 warm-ups,
then ``--repeats`` forwards, each between a barrier and a CUDA sync, the slowest rank's
time counted. It also checks the output against the 1-GPU output (saved by that launch):
``max_abs_diff`` relative to the output's scale.

Rows (results/context_parallel-cuda-<time>.jsonl): ``gpus``, ``ulysses``, ``ring``,
``tokens``, ``tokens_per_gpu``, ``ms`` (median forward), ``ms_min``, ``speedup`` (1-GPU ms /
ms), ``efficiency`` (speedup / gpus), ``peak_gb`` (largest rank), ``rel_diff``, and the
environment (GPU name, versions, commit). ``--layers`` keeps that many blocks so a 14B
scenario fits a short lease; the full model scales the same way per block.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["main", "launch_commands"]


def _args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.context_parallel", description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", default="1,2,4,8", help="GPU counts to time, comma-separated (1 is the baseline)")
    p.add_argument("--scenario", default="wan2.1-14b-480p-81f")
    p.add_argument("--layers", type=int, default=None, help="keep this many blocks (default: all)")
    p.add_argument("--ring", type=int, default=1, help="ring degree (Ulysses = gpus / ring)")
    p.add_argument("--fp8", action="store_true")
    p.add_argument("--lora-rank", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="results folder (default: benchmarks/results)")
    p.add_argument("--dry-run", action="store_true", help="print the launches, run nothing")
    p.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)  # one launch's result file
    return p.parse_args(argv)


def launch_commands(args, work: Path) -> list[tuple[int, list[str]]]:
    """(gpus, command) for every GPU count, baseline first."""
    counts = sorted({int(g) for g in str(args.gpus).split(",")} | {1})
    out = []
    for g in counts:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={g}",
               "-m", "benchmarks.context_parallel", "--worker", str(work / f"gpus{g}.json"),
               "--scenario", args.scenario, "--ring", str(args.ring if g > 1 else 1), "--lora-rank",
               str(args.lora_rank), "--repeats", str(args.repeats)]  # fmt: skip
        if args.layers is not None:
            cmd += ["--layers", str(args.layers)]
        if args.fp8:
            cmd.append("--fp8")
        out.append((g, cmd))
    return out


def main(argv=None) -> int:
    args = _args(sys.argv[1:] if argv is None else argv)
    if args.worker is not None:
        return _worker(args)
    work = Path(tempfile.mkdtemp(prefix="vidlora-cp-bench-"))
    commands = launch_commands(args, work)
    if args.dry_run:
        for g, cmd in commands:
            print(f"{g} GPU(s): {' '.join(cmd)}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("context_parallel benchmark: needs CUDA GPUs (gloo on CPU would time nothing useful)", file=sys.stderr)
        return 2
    have = torch.cuda.device_count()
    counts = [g for g, _ in commands]
    if max(counts) > have:
        print(f"context_parallel benchmark: --gpus asks for {max(counts)}, {have} visible", file=sys.stderr)
        return 2
    from .harness import environment, result_row, results_path, write_rows

    env = dict(os.environ, VIDLORA_CP_BASELINE=str(work / "baseline.pt"))
    results = {}
    for g, cmd in commands:
        print(f"[context_parallel] {g} GPU(s) ...", flush=True)
        done = subprocess.run(cmd, env=env)
        if done.returncode != 0:
            print(f"[context_parallel] {g} GPU(s) failed (exit {done.returncode})", file=sys.stderr)
            continue
        results[g] = json.loads((work / f"gpus{g}.json").read_text())
    if 1 not in results:
        print("context_parallel benchmark: the 1-GPU baseline failed; no rows written", file=sys.stderr)
        return 1
    base_ms = results[1]["ms"]
    rows = [result_row("context_parallel", environment("cuda"), **r, speedup=base_ms / r["ms"],
                       efficiency=base_ms / r["ms"] / r["gpus"]) for r in results.values()]  # fmt: skip
    path = write_rows(rows, results_path("context_parallel", "cuda", args.out))
    for r in rows:
        print(f"{r['gpus']} GPU(s) (ulysses {r['ulysses']} x ring {r['ring']}): {r['ms']:.1f} ms/forward, "
              f"x{r['speedup']:.2f}, {r['peak_gb']:.1f} GB peak, rel diff {r['rel_diff']:.2e}")  # fmt: skip
    print(f"rows: {path}")
    return 0 if len(results) == len(commands) else 1


def _worker(args) -> int:
    import time

    import torch
    import torch.distributed as dist

    import vidlora

    from .models import SCENARIOS, random_transformer, scenario_inputs, write_lora_file

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1:
        dist.init_process_group("nccl")
    scenario = SCENARIOS[args.scenario]
    model = random_transformer(scenario.config, layers=args.layers, device="cuda")
    inputs = scenario_inputs(scenario, device="cuda")
    with tempfile.TemporaryDirectory() as tmp:
        lora = vidlora.read_lora(write_lora_file(Path(tmp) / "bench.safetensors", model, rank=args.lora_rank))
    h = vidlora.attach(model, fp8=args.fp8)
    h.add(lora, weight=0.8)
    cp = None
    if world > 1:
        backend = "_native_cudnn" if args.ring > 1 else None
        cp = vidlora.context_parallel(model, ring=args.ring, attention_backend=backend)
    torch.cuda.reset_peak_memory_stats()

    def forward():
        with torch.no_grad():
            return model(**inputs)[0]

    for _ in range(2):
        out = forward()
    times = []
    for _ in range(args.repeats):
        if world > 1:
            dist.barrier()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = forward()
        torch.cuda.synchronize()
        ms = torch.tensor([(time.perf_counter() - t0) * 1e3], device="cuda")
        if world > 1:
            dist.all_reduce(ms, op=dist.ReduceOp.MAX)  # the step is as slow as its slowest rank
        times.append(ms.item())
    peak = torch.tensor([torch.cuda.max_memory_allocated() / 2**30], device="cuda")
    if world > 1:
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    baseline = Path(os.environ.get("VIDLORA_CP_BASELINE", ""))
    rel = 0.0
    if world == 1 and baseline.name:
        torch.save(out.cpu(), baseline)
    elif baseline.is_file():
        ref = torch.load(baseline)
        rel = ((out.cpu().float() - ref.float()).abs().max() / ref.float().abs().max()).item()
    if rank == 0:
        times.sort()
        row = dict(scenario=scenario.name, label=scenario.label, layers=args.layers, fp8=args.fp8,
                   lora_rank=args.lora_rank, gpus=world, ulysses=cp.ulysses if cp else 1, ring=cp.ring if cp else 1,
                   tokens=scenario.tokens, tokens_per_gpu=scenario.tokens // world, ms=times[len(times) // 2],
                   ms_min=times[0], peak_gb=peak.item(), rel_diff=rel, repeats=args.repeats)  # fmt: skip
        args.worker.write_text(json.dumps(row))
    if world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
