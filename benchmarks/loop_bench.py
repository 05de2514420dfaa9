"""The everyday loop (issue 15, points 8-9): attach + add, and a swap, against diffusers'
own loading, on the model size people iterate on.

    vidlora bench --only loop

Subject: a Wan 2.1 1.3B-shaped transformer (width 1536, 12 heads, FFN 8960), 4 of its 30
blocks, fp32, random weights; torch on 2 threads as the issue measured, then again on 1:
on a shared 2-core VM two OpenMP threads stall on each other for whole scheduler slices
(one 49k-element bf16 sum: 0.03 ms on 1 thread, 14 ms on 2 with the machine loaded), so
the 1-thread rows are the ones that show the work itself. LoRA files: rank 32 on every block
Linear, bf16, in ``diffusion_model.`` naming with the original Wan module names (as
musubi-tuner, diffusion-pipe and ai-toolkit write them), so diffusers converts the keys as
it does for real downloads. Files are read once before timing (a warm page cache).
vidlora attaches with its default fused units (q/k/v, cross k/v: one GEMM each, as on a GPU).

Cases, each timed round-robin (a shared VM drifts over seconds), 5 runs after 1 warm-up;
``value`` is the fastest wall time (interference only adds time), ``median_ms``,
``cpu_ms`` (process CPU time, both threads) beside it:

* ``attach+add``: bare model -> one LoRA. vidlora ``attach`` + ``add(file)`` vs diffusers
  ``lora_state_dict`` + ``load_lora_into_transformer`` (the baseline; ``low_cpu_mem_usage``
  as ``load_lora_weights`` sets it). ``attach`` alone and ``add`` onto an attached model
  split vidlora's time. Goal: <= 0.5x.
* ``swap {a,b}->{a,c}``: vidlora ``remove`` + ``add(file)`` (and ``add`` of a LoRAFile read
  before, and ``read_lora`` alone: the file's share) vs diffusers ``delete_adapters`` +
  ``lora_state_dict`` + ``load_lora_into_transformer`` + ``set_adapters`` (the baseline).
  Goal: <= 0.1x. Afterwards both models run one small forward: the benchmark fails if
  their outputs disagree (a method that did nothing cannot look fast).
* ``fusion copy, Wan 14B block``: what attach's q/k/v + cross k/v concatenation costs on
  one 14B-shaped block (width 5120, bf16): ``attach`` with fused units on a fresh copy
  (separate weights: copied), unfused, and fused on weights that are already adjacent
  rows of one buffer (after a detach, or vidlora's prefused load: adopted, no copy); the
  copy's cost x 40 blocks, and the peak resident memory each adds (Linux VmHWM, reset
  before each run).
* ``load fp32 checkpoint as bf16 + attach, Wan 14B block``: the Wan-AI Diffusers releases
  are fp32 and load in bf16, so diffusers converts every weight and attach then copies the
  fused ones again. diffusers ``from_pretrained`` + ``attach`` (the baseline) vs vidlora's
  prefused load (``vidlora.app.pipelines.prefused``: the fused rows converted straight
  into one buffer) + ``attach``; ``load_ms`` / ``attach_ms`` beside the total (attach
  adopts the prefused rows without a copy when ``runtime_adopts_prefused``).
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from .harness import torch_threads
from .models import block_linears, pipeline_shell, random_transformer
from .rows import RunContext, goal_row, ratio_rows

__all__ = ["BENCHMARK", "LAYERS", "run", "write_original_lora"]

BENCHMARK = "loop"
CONFIG = "wan2.1-t2v-1.3b"
BIG_CONFIG = "wan2.1-t2v-14b"
LAYERS = 4
BIG_BLOCKS = 40  # Wan 14B's block count: the one-block fusion cost is multiplied by it
RANK = 32
THREADS = (2, 1)
_FIRST, _SECOND = "first", "second"  # not "a"/"b": diffusers matches adapter names as substrings of keys
_AGREE = 0.05  # fp32 on both sides: outputs agree to rounding (a no-op differs by ~1.0)


def write_original_lora(path: str, model: torch.nn.Module, *, rank: int = RANK, seed: int = 0) -> str:
    """A random rank-``rank`` LoRA on every block Linear, ``diffusion_model.blocks.N.<original
    Wan name>.lora_A/B.weight`` keys, bf16 (A ~ N(0, 1/K), B ~ N(0, 1/r) x 0.1: non-zero)."""
    from safetensors.torch import save_file

    from vidlora.model.wan import BLOCK_INNER

    original = {v: k for k, v in BLOCK_INNER.items()}
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for module, (k, n) in block_linears(model).items():
        _, index, inner = module.split(".", 2)
        key = f"diffusion_model.blocks.{index}.{original[inner]}"
        tensors[f"{key}.lora_A.weight"] = (torch.randn(rank, k, generator=gen) * k**-0.5).to(torch.bfloat16)
        tensors[f"{key}.lora_B.weight"] = (torch.randn(n, rank, generator=gen) * 0.1 * rank**-0.5).to(torch.bfloat16)
    save_file(tensors, path)
    return path


def _time(actions: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]], repeats: int, warmup: int,
          threads: int):  # fmt: skip
    """Rotating round-robin; each action's undo runs after it, untimed."""
    names = list(actions)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for i in range(warmup + repeats):
        for name in names[i % len(names):] + names[: i % len(names)]:
            run, undo = actions[name]
            w0, c0 = time.perf_counter(), time.process_time()
            run()
            w1, c1 = time.perf_counter(), time.process_time()
            if i >= warmup:
                wall[name].append((w1 - w0) * 1e3)
                cpu[name].append((c1 - c0) * 1e3)
            if undo is not None:
                undo()
    return {n: {"ms": min(wall[n]), "median_ms": statistics.median(wall[n]), "ms_max": max(wall[n]),
                "cpu_ms": min(cpu[n]), "runs": repeats, "estimator": f"min of {repeats}",
                "clock": f"wall, {threads} thread{'s' if threads > 1 else ''}"} for n in names}  # fmt: skip


def _output(model: torch.nn.Module) -> torch.Tensor:
    from vidlora.model import REAL_CONFIGS

    cfg = REAL_CONFIGS[CONFIG]
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, cfg["in_channels"], 1, 8, 8, generator=gen)
    text = torch.randn(1, 8, cfg["text_dim"], generator=gen)
    with torch.no_grad():
        return model(hidden_states=x, timestep=torch.tensor([500]), encoder_hidden_states=text, return_dict=False)[0]


def run(ctx: RunContext, repeats: int = 5, warmup: int = 1, big: bool = True,
        threads: tuple[int, ...] = THREADS) -> Iterator[dict[str, Any]]:  # fmt: skip
    for n in threads:
        yield from _loop_rows(ctx, repeats, warmup, n)
    if big:
        with torch_threads(threads[0]):
            yield from _fusion_copy_rows(ctx, repeats, threads[0])
            yield from _prefused_load_rows(ctx, repeats, threads[0])


def _loop_rows(ctx: RunContext, repeats: int, warmup: int, threads: int) -> Iterator[dict[str, Any]]:
    import vidlora
    from diffusers.loaders.lora_pipeline import _LOW_CPU_MEM_USAGE_DEFAULT_LORA
    from vidlora.lora import read_lora

    _time_n = lambda acts: _time(acts, repeats, warmup, threads)  # noqa: E731
    suffix = f" ({threads} thread{'s' if threads > 1 else ''})"
    with torch_threads(threads), warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        # PEFT warns that a second adapter joins a model that has one: the measured scenario
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        base = random_transformer(CONFIG, layers=LAYERS, dtype=torch.float32)
        files = {n: write_original_lora(os.path.join(tmp, f"{n}.safetensors"), base, seed=i) for i, n in enumerate("abc")}
        for f in files.values():  # warm page cache
            with open(f, "rb") as fh:
                fh.read()
        info = dict(model=f"Wan 1.3B-shaped ({CONFIG}), {LAYERS} of 30 blocks, fp32", threads=threads,
                    lora=f"rank {RANK} on all {len(block_linears(base))} block Linears, bf16, diffusion_model. keys",
                    lora_file_mb=round(os.path.getsize(files["a"]) / 1e6, 1), fused_units=True)  # fmt: skip
        y_base = _output(base)
        ours, spare, theirs = base, copy.deepcopy(base), pipeline_shell(copy.deepcopy(base))

        def diffusers_load(path: str, name: str) -> None:
            sd = theirs.lora_state_dict(path)
            theirs.load_lora_into_transformer(sd, transformer=theirs.transformer, adapter_name=name, _pipeline=theirs,
                                              low_cpu_mem_usage=_LOW_CPU_MEM_USAGE_DEFAULT_LORA)  # fmt: skip

        def rows_for(case, times, baseline, goal, **extra):
            rows = [ctx.row(BENCHMARK, case, m, "ms", t["ms"], "ms", **t, **info, **extra) for m, t in times.items()]
            ratio_rows(rows, baseline)
            method, text, threshold = goal
            return rows + [goal_row(next(r for r in rows if r["method"] == method), text, threshold)]

        # --- attach + add -------------------------------------------------------------
        held: list = []
        attached = vidlora.attach(spare)  # its own copy: add/remove on an attached model
        acts = {
            "diffusers lora_state_dict+load_lora_into_transformer": (
                lambda: diffusers_load(files["a"], _FIRST), lambda: theirs.unload_lora_weights()),
            "vidlora attach+add": (lambda: held.append(_attach_add(vidlora, ours, files["a"])), lambda: held.pop().detach()),
            "vidlora attach (no LoRA)": (lambda: held.append(vidlora.attach(ours)), lambda: held.pop().detach()),
            "vidlora add (model attached before)": (
                lambda: attached.add(files["a"], name=_FIRST), lambda: attached.remove(_FIRST)),
        }
        yield from rows_for("attach+add" + suffix, _time_n(acts), "diffusers lora_state_dict+load_lora_into_transformer",
                            ("vidlora attach+add", "attach + add <= 0.5x diffusers' load (issue 15)" + suffix, 0.5))
        attached.detach()
        del spare, attached

        # --- swap {a, b} -> {a, c} -----------------------------------------------------
        h = vidlora.attach(ours)
        h.add(files["a"], name=_FIRST)
        h.add(files["b"], name=_SECOND)
        diffusers_load(files["a"], _FIRST)
        diffusers_load(files["b"], _SECOND)
        theirs.set_adapters([_FIRST, _SECOND], [1.0, 1.0])
        pre = {n: read_lora(files[n]) for n in "bc"}
        state = {"ours": ["b", "c"], "pre": ["b", "c"], "theirs": ["b", "c"]}

        def toggled(key, fn):
            def step():
                fn(state[key][1])
                state[key].reverse()
            return step

        def ours_swap(new):
            h.remove(_SECOND)
            h.add(files[new], name=_SECOND)

        def ours_pre(new):
            h.remove(_SECOND)
            h.add(pre[new], name=_SECOND)

        def theirs_swap(new):
            theirs.delete_adapters(_SECOND)
            diffusers_load(files[new], _SECOND)
            theirs.set_adapters([_FIRST, _SECOND], [1.0, 1.0])

        # ours and pre act on one handle: they share one state so the model always holds b or c
        state["pre"] = state["ours"]
        acts = {
            "diffusers delete_adapters+load": (toggled("theirs", theirs_swap), None),
            "vidlora remove+add": (toggled("ours", ours_swap), None),
            "vidlora remove+add (LoRAFile read before)": (toggled("pre", ours_pre), None),
            "vidlora read_lora alone": (lambda: read_lora(files["c"]), None),
        }
        times = _time_n(acts)
        if state["ours"][0] != state["theirs"][0]:  # end on the same file on both sides
            ours_swap(state["ours"][1])
            state["ours"].reverse()
        y_ours, y_theirs = _output(ours), _output(theirs.transformer)
        rel = float((y_ours - y_theirs).norm() / (y_theirs - y_base).norm().clamp_min(1e-12))
        if not rel <= _AGREE:
            raise RuntimeError(f"loop benchmark: vidlora and diffusers outputs differ by {rel:.3f} of the LoRA effect")
        yield from rows_for("swap {a,b}->{a,c}" + suffix, times, "diffusers delete_adapters+load",
                            ("vidlora remove+add", "swap <= 0.1x diffusers' delete_adapters + load (issue 15)" + suffix,
                             0.1), check_rel_diff=rel)  # fmt: skip
        h.detach()


def _attach_add(vidlora, model, path: str):
    h = vidlora.attach(model)
    h.add(path, name=_FIRST)
    return h


def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (the resident high-water mark) to the current RSS
        return True
    except OSError:
        return False


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _fusion_copy_rows(ctx: RunContext, repeats: int, threads: int) -> Iterator[dict[str, Any]]:
    import vidlora

    block = random_transformer(BIG_CONFIG, layers=1, dtype=torch.bfloat16)
    width = block.config.num_attention_heads * block.config.attention_head_dim
    fused_bytes = 5 * width * width * 2 + 5 * width * 2  # q/k/v + cross k/v weights and biases, bf16
    case = "fusion copy, Wan 14B block"
    info = dict(model=f"one Wan 14B-shaped block ({BIG_CONFIG}), bf16", threads=threads, fused_bytes=fused_bytes,
                blocks_projected=BIG_BLOCKS)  # fmt: skip
    measured: dict[str, dict[str, Any]] = {}
    # Each run attaches a fresh copy whose q/k/v are separate allocations (a detach leaves
    # them as adjacent rows of one buffer, which the next attach adopts without a copy:
    # the third case). The copy is made before the clock starts.
    adjacent = copy.deepcopy(block)
    vidlora.attach(adjacent).detach()
    q = adjacent.blocks[0].attn1.to_q.weight.data_ptr()
    cases = {"vidlora attach, fused units (separate weights: copied)": (True, None),
             "vidlora attach, unfused": (False, None),
             "vidlora attach, fused units (adjacent rows: adopted)": (True, adjacent)}  # fmt: skip
    for _ in range(max(2, repeats)):
        for name, (fuse, model) in cases.items():
            subject = model if model is not None else copy.deepcopy(block)
            have_hwm = _peak_rss_reset()
            rss0 = _rss_kb("VmRSS")
            t0, c0 = time.perf_counter(), time.process_time()
            h = vidlora.attach(subject, fuse=fuse)
            t1, c1 = time.perf_counter(), time.process_time()
            peak = (_rss_kb("VmHWM") - rss0) * 1024 if have_hwm else None
            if model is adjacent and adjacent.blocks[0].attn1.to_qkv.weight.data_ptr() != q:
                raise RuntimeError("loop benchmark: the adjacent-rows case copied instead of adopting the rows")
            h.detach()
            del subject
            m = measured.setdefault(name, {"ms": [], "cpu": [], "peak": []})
            m["ms"].append((t1 - t0) * 1e3)
            m["cpu"].append((c1 - c0) * 1e3)
            m["peak"].append(peak)
    rows = []
    for name, m in measured.items():
        peaks = [p for p in m["peak"] if p is not None]
        rows.append(ctx.row(BENCHMARK, case, name, "ms", min(m["ms"]), "ms", median_ms=statistics.median(m["ms"]),
                            cpu_ms=min(m["cpu"]), runs=len(m["ms"]), estimator=f"min of {len(m['ms'])}",
                            peak_rss_added_bytes=min(peaks) if peaks else None,
                            peak_rss_added_max_bytes=max(peaks) if peaks else None, **info))  # fmt: skip
    ratio_rows(rows, "vidlora attach, unfused")
    yield from rows
    fused, unfused = (next(r for r in rows if r["method"] == n) for n in list(cases)[:2])
    copy_ms = fused["value"] - unfused["value"]
    yield ctx.row(BENCHMARK, case, f"fusion copy x {BIG_BLOCKS} blocks (projected)", "ms", copy_ms * BIG_BLOCKS, "ms",
                  per_block_ms=copy_ms, per_block_bytes=fused_bytes, gb_per_s=fused_bytes / max(copy_ms, 1e-9) / 1e6,
                  peak_rss_added_bytes=fused["peak_rss_added_bytes"], **info)  # fmt: skip


def _prefused_load_rows(ctx: RunContext, repeats: int, threads: int) -> Iterator[dict[str, Any]]:
    import gc

    import vidlora
    from diffusers import WanTransformer3DModel

    from vidlora.app.pipelines.loading import runtime_adopts_prefused
    from vidlora.app.pipelines.prefused import load_prefused_transformer

    case = "load fp32 checkpoint as bf16 + attach, Wan 14B block"
    with tempfile.TemporaryDirectory() as tmp:
        random_transformer(BIG_CONFIG, layers=1, dtype=torch.float32).save_pretrained(tmp)
        gc.collect()
        for name in os.listdir(tmp):  # warm page cache
            with open(os.path.join(tmp, name), "rb") as fh:
                while fh.read(1 << 24):
                    pass
        loaders = {
            "diffusers from_pretrained + vidlora attach": lambda: WanTransformer3DModel.from_pretrained(tmp, dtype=torch.bfloat16),
            "vidlora prefused load + attach": lambda: load_prefused_transformer(tmp, torch.bfloat16),
        }
        times: dict[str, dict[str, list[float]]] = {n: {"total": [], "load": [], "attach": []} for n in loaders}
        for i in range(1 + repeats):
            for name, load in loaders.items():
                t0 = time.perf_counter()
                model = load()
                t1 = time.perf_counter()
                h = vidlora.attach(model)
                t2 = time.perf_counter()
                h.detach()
                del model, h
                gc.collect()
                if i:  # the first round warms up
                    for key, v in (("total", t2 - t0), ("load", t1 - t0), ("attach", t2 - t1)):
                        times[name][key].append(v * 1e3)
    rows = [ctx.row(BENCHMARK, case, name, "ms", min(t["total"]), "ms", median_ms=statistics.median(t["total"]),
                    load_ms=min(t["load"]), attach_ms=min(t["attach"]), runs=repeats, estimator=f"min of {repeats}",
                    threads=threads, runtime_adopts_prefused=runtime_adopts_prefused(),
                    model=f"one Wan 14B-shaped block ({BIG_CONFIG}), fp32 file -> bf16")
            for name, t in times.items()]  # fmt: skip
    ratio_rows(rows, "diffusers from_pretrained + vidlora attach")
    yield from rows
