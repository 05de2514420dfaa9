"""First-use path choice: never slower than cuBLAS on the user's GPU, never a wrong result.

The first time a shape class is seen on a CUDA device, every candidate path of the op
(candidates.py: the Triton kernels that apply there, and the torch path, i.e. cuBLAS plus
the two low-rank matmuls, or plain cuBLAS at R = 0) runs once on the call's own tensors with
a per-rank scale that makes the LoRA term as large as the base (result_check.check_scale),
is compared on sampled rows with an fp32 torch reference on that device, and the correct
ones are timed. The fastest correct one serves every later call of the class; the choice,
all timings and every exclusion are kept in memory (:func:`path_choices`) and on disk
(path_cache.py: per GPU name and software versions, atomic writes).

Shape class (the cache key): op, GPU name and compute capability, dtype, N, K, M rounded
up to a power of two, R rounded up to a multiple of 16, bias or not, and whether x meets
TMA's 16-byte rules ("tma") or not ("ptr").

A candidate that raises (fails to compile: the user's Triton may be older than ours; runs
out of shared memory) or disagrees with the reference is excluded, with ONE warning per
shape class naming each excluded kernel, the shape class, the error and VIDLORA_BACKEND.
With ``VIDLORA_BACKEND=triton`` (forced) only Triton candidates compete, and a Triton
candidate that gives a wrong result, or no Triton candidate running at all, raises instead.

Nothing is timed while a CUDA graph is being captured or torch.compile traces (the op's
fake implementation never gets here): an unmeasured class then runs the default candidate
(the heuristic Triton kernel) without recording a choice. ``VIDLORA_PATH_CHOICE=off`` does
the same everywhere (benchmarks of one kernel, debugging). Out of memory while measuring:
the default candidate, nothing recorded, measured again at the next call.

On CPU (the interpreter) the op does not come here, but :class:`PathChooser` runs the same
way there with an injected timer: that is how tests/kernels/test_selection.py checks it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from .backend import ENV_VAR
from .candidates import Candidate, candidates_for
from .errors import BackendUnavailableError, KernelMismatchError
from .path_cache import ChoiceCache, cache_path
from .result_check import check_lora_linear, check_lora_linear_fp8, check_scale, sample_rows

__all__ = ["CHOICE_ENV", "OPS", "Candidate", "PathChooser", "ShapeCase", "KernelExcludedWarning", "default_chooser",
           "run_chosen", "path_choices", "warm_up", "shape_key"]  # fmt: skip

CHOICE_ENV = "VIDLORA_PATH_CHOICE"
OPS = ("lora_linear", "lora_linear_fp8.w8a16", "lora_linear_fp8.w8a8")
Timer = Callable[[str, Callable[[], Any]], float]


class KernelExcludedWarning(UserWarning):
    """A candidate kernel was left out of the first-use choice (wrong or failed)."""


class _Unmeasurable(Exception):
    """Measuring is impossible right now (out of memory): use the default, record nothing."""


def _m_bucket(m: int) -> int:
    return max(16, 1 << max(0, m - 1).bit_length())


def _tma_ok(t: torch.Tensor) -> bool:
    e = t.element_size()
    return t.data_ptr() % 16 == 0 and t.stride(-1) == 1 and all((s * e) % 16 == 0 for s in t.stride()[:-1])


_DEVICE_NAMES: dict = {}


def _device_label(device: torch.device) -> tuple[str, str]:
    if device.type != "cuda":
        return device.type, "none"
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _DEVICE_NAMES:
        cap = torch.cuda.get_device_capability(index)
        _DEVICE_NAMES[index] = (torch.cuda.get_device_name(index), f"sm_{cap[0]}{cap[1]}")
    return _DEVICE_NAMES[index]


def shape_key(op: str, args: tuple) -> tuple[str, dict]:
    """(key string, fields) of the shape class of one call (module doc)."""
    x, weight = args[0], args[1]
    n, k = weight.shape
    r = args[-3].shape[0]  # lora_a
    bias = args[-4] is not None
    name, arch = _device_label(x.device)
    fields = {"op": op, "device": name, "arch": arch, "dtype": str(x.dtype).removeprefix("torch."), "n": int(n),
              "k": int(k), "m_bucket": _m_bucket(x.numel() // max(1, k)), "r_bucket": -(-r // 16) * 16,
              "bias": bias, "layout": "tma" if _tma_ok(x) else "ptr"}  # fmt: skip
    return "|".join(f"{v}" for v in fields.values()), fields


def _check(op: str, y: torch.Tensor, args: tuple, rows: torch.Tensor) -> str | None:
    if op == "lora_linear":
        return check_lora_linear(y, args, rows)
    return check_lora_linear_fp8(y, args, op.endswith("w8a8"), rows)


def _check_args(op: str, args: tuple, rows: torch.Tensor) -> tuple:
    """The call's tensors with a LoRA scale as large as the base (result_check.check_scale)."""
    x, weight, lora_a, lora_b = args[0], args[1], args[-3], args[-2]
    if lora_a.shape[0] == 0:
        return args
    w_scale = args[2] if op != "lora_linear" else None
    c = check_scale(x.reshape(-1, x.shape[-1]), weight, lora_a, lora_b, rows, w_scale)
    return (*args[:-1], c)


def _cuda_timer(name: str, fn: Callable[[], Any], budget_ms: float = 25.0) -> float:
    """Median of CUDA-event timings of ``fn``: 3 to 50 runs within ~``budget_ms``."""
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    runs = int(max(3, min(50, budget_ms / max(start.elapsed_time(end), 1e-3))))
    times = []
    for _ in range(runs):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def _wall_timer(name: str, fn: Callable[[], Any]) -> float:
    fn()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[1]


def _first_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def _busy() -> bool:
    """True while timing is not allowed: CUDA graph capture or torch.compile tracing."""
    if torch.compiler.is_compiling():
        return True
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


class PathChooser:
    """Measures, remembers and serves the path of each shape class (module doc).

    ``timer(name, fn) -> ms`` (default: CUDA events on CUDA, wall clock elsewhere);
    ``extra_candidates``: appended to the op's own (tests: a wrong and a broken kernel);
    ``cache_dir``: the disk cache's folder (default path_cache.cache_dir(); None with
    ``use_disk=False``: memory only).
    """

    def __init__(self, timer: Timer | None = None, *, cache_dir: Path | None = None, use_disk: bool = True,
                 extra_candidates: Callable[[str, tuple], Iterable[Candidate]] | None = None) -> None:  # fmt: skip
        self._timer = timer
        self._cache_dir = cache_dir
        self._use_disk = use_disk
        self._extra = extra_candidates
        self._choices: dict[str, dict] = {}
        self._resolved: dict[str, Candidate] = {}
        self._disk: dict[str, ChoiceCache] = {}
        self._warned: set[str] = set()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ public
    def run(self, op: str, args: tuple, *, forced: bool = False) -> torch.Tensor:
        """The op's result through the chosen path of its shape class (measured on first use)."""
        key, fields = shape_key(op, args)
        cand = self._resolved.get(key)
        if cand is None:
            cand = self._resolve(op, args, key, fields, forced)
        return cand.run(*args)

    def choose(self, op: str, args: tuple, *, forced: bool = False) -> dict:
        """Measure (or load) the choice of this call's shape class and return its record."""
        key, fields = shape_key(op, args)
        if key not in self._resolved:
            self._resolve(op, args, key, fields, forced)
        return dict(self._choices.get(key) or {"key": key, **fields, "source": "default"})

    def choices(self) -> list[dict]:
        """Every choice made or loaded in this process: shape fields, chosen, timings, excluded."""
        with self._lock:
            return [dict(c) for c in self._choices.values()]

    def forget(self) -> None:
        """Drop the in-memory choices (the disk cache stays)."""
        with self._lock:
            self._choices.clear()
            self._resolved.clear()

    # ------------------------------------------------------------------ internals
    def _candidates(self, op: str, args: tuple) -> list[Candidate]:
        cands = list(candidates_for(op, args))
        if self._extra is not None:
            cands += list(self._extra(op, args))
        return cands

    def _cache(self, device_name: str) -> ChoiceCache | None:
        if not self._use_disk:
            return None
        if device_name not in self._disk:
            self._disk[device_name] = ChoiceCache(cache_path(device_name, self._cache_dir))
        return self._disk[device_name]

    def _resolve(self, op: str, args: tuple, key: str, fields: dict, forced: bool) -> Candidate:
        with self._lock:
            if key in self._resolved:
                return self._resolved[key]
            cands = self._candidates(op, args)
            by_name = {c.name: c for c in cands}
            default = next((c for c in cands if c.backend == "triton"), cands[0])  # the heuristic kernel
            if os.environ.get(CHOICE_ENV, "").strip().lower() in ("off", "0", "no", "false") or _busy():
                return default  # not measured, not recorded (module doc)
            cache = self._cache(fields["device"])
            entry = (cache.load() if cache is not None else {}).get(key)
            if entry is not None and entry.get("chosen") in by_name and (not forced or entry.get("forced")):
                record = {**entry, "source": "disk"}
            else:
                try:
                    record = self._measure(op, args, key, fields, cands, forced)
                except _Unmeasurable:
                    return default
                if cache is not None:
                    cache.store({key: {k: v for k, v in record.items() if k != "source"}})
            self._warn(record)
            self._choices[key] = record
            self._resolved[key] = by_name[record["chosen"]]
            return self._resolved[key]

    def _measure(self, op, args, key, fields, cands, forced) -> dict:
        x = args[0]
        rows = sample_rows(x.numel() // x.shape[-1], device=x.device)
        check_args = _check_args(op, args, rows)
        timer = self._timer or (_cuda_timer if x.device.type == "cuda" else _wall_timer)
        excluded: dict[str, str] = {}
        wrong: list[str] = []
        good: list[Candidate] = []
        for cand in cands:
            if forced and cand.backend != "triton":
                continue
            try:
                y = cand.run(*check_args)
                msg = _check(op, y, check_args, rows)
                del y
            except torch.cuda.OutOfMemoryError as err:
                raise _Unmeasurable() from err
            except Exception as err:  # fails to compile, out of resources, refuses the shape: excluded
                msg = _first_line(err)
            else:
                if msg is not None:
                    wrong.append(cand.name)
            if msg is None:
                good.append(cand)
            else:
                excluded[cand.name] = msg
        if forced and (wrong or not good):
            what = "gave a wrong result" if wrong else "ran"
            raise (KernelMismatchError if wrong else BackendUnavailableError)(
                f"{ENV_VAR}=triton, but for {op} at {_describe(fields)} "
                f"{', '.join(wrong) if wrong else 'no Triton kernel'} {what}: "
                + "; ".join(f"{k}: {v}" for k, v in excluded.items())
            )
        if not good:
            raise BackendUnavailableError(f"no path of {op} runs at {_describe(fields)}: {excluded}")
        timings = {}
        for cand in good:
            try:
                timings[cand.name] = float(timer(cand.name, lambda c=cand: c.run(*check_args)))
            except torch.cuda.OutOfMemoryError as err:
                raise _Unmeasurable() from err
        chosen = min(good, key=lambda c: timings[c.name])
        return {"key": key, **fields, "chosen": chosen.name, "chosen_backend": chosen.backend,
                "timings_ms": timings, "excluded": excluded, "forced": forced, "source": "measured",
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip

    def _warn(self, record: dict) -> None:
        if not record.get("excluded") or record["key"] in self._warned:
            return
        self._warned.add(record["key"])
        parts = "; ".join(f"{name}: {err}" for name, err in record["excluded"].items())
        warnings.warn(
            f"vidlora: {record['op']} at {_describe(record)}: excluded {parts}. Using {record['chosen']}. "
            f"{ENV_VAR}={os.environ.get(ENV_VAR) or '(unset: auto)'}; set {ENV_VAR}=torch to use the torch "
            f"path only, or {ENV_VAR}=triton to make an excluded Triton kernel an error",
            KernelExcludedWarning, stacklevel=4,
        )  # fmt: skip


def _describe(f: dict) -> str:
    return (f"{f['device']} ({f['arch']}) {f['dtype']} N={f['n']} K={f['k']} M<={f['m_bucket']} "
            f"R<={f['r_bucket']}{' bias' if f['bias'] else ''} x:{f['layout']}")  # fmt: skip


_DEFAULT: PathChooser | None = None


def default_chooser() -> PathChooser:
    """The process-wide chooser the ops use on CUDA."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PathChooser()
    return _DEFAULT


def run_chosen(op: str, args: tuple, *, forced: bool = False) -> torch.Tensor:
    """What the ops call on CUDA: the chosen path of this call's shape class."""
    return default_chooser().run(op, args, forced=forced)


def path_choices() -> list[dict]:
    """The choices of this process (for ``h.report()`` / ``vidlora bench``): one dict per shape
    class with its fields, ``chosen``, ``timings_ms`` {candidate: ms}, ``excluded`` {candidate:
    error} and ``source`` ("measured" now, or loaded from the "disk" cache)."""
    return default_chooser().choices()


@dataclasses.dataclass(frozen=True)
class ShapeCase:
    """One Linear call to measure ahead of time: M tokens, N outputs, K inputs, rank R."""

    m: int
    n: int
    k: int
    r: int
    dtype: torch.dtype = torch.bfloat16
    bias: bool = True
    fp8: str | None = None  # None (16-bit weight), "w8a16" or "w8a8"


def _case_args(case: ShapeCase, device: torch.device) -> tuple[str, tuple]:
    g = torch.Generator(device=device).manual_seed(0)

    def rnd(*shape, scale=1.0, dtype=case.dtype):
        return (torch.randn(*shape, generator=g, device=device) * scale).to(dtype)

    w = rnd(case.n, case.k, scale=case.k**-0.5, dtype=torch.float32)
    rest = (rnd(case.n) if case.bias else None, rnd(case.r, case.k, scale=case.k**-0.5),
            rnd(case.n, case.r), torch.rand(case.r, generator=g, device=device) + 0.5)  # fmt: skip
    x = rnd(case.m, case.k)
    if case.fp8 is None:
        return "lora_linear", (x, w.to(case.dtype), *rest)
    from .fp8_format import quantize_weight

    w8, ws = quantize_weight(w)
    return f"lora_linear_fp8.{case.fp8}", (x, w8, ws, *rest)


def warm_up(cases: Iterable[ShapeCase], device: torch.device | str = "cuda") -> list[dict]:
    """Measure the path choice of every case now (random inputs made on ``device``), so the
    first denoising step does not pay for it; returns the choice records. What ``vidlora
    tune`` runs for a model's Linear shapes and token counts."""
    from .backend import get_backend

    device = torch.device(device)
    out = []
    for case in cases:
        op, args = _case_args(case, device)
        out.append(default_chooser().choose(op, args, forced=get_backend() == "triton"))
        del args
    return out
