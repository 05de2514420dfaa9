"""The first-use path choice (kernels/selection.py), on CPU through the code path CUDA uses.

Only the timer is injected (a fake that returns set times, so the test decides which is
"fastest"); the candidates are real: the Triton kernels under the interpreter and the
torch path, plus two defined here, a genuinely wrong kernel (the real GEMM reading B
through transposed strides) and one that fails to compile.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import warnings

import pytest
import torch
import triton
import triton.language as tl

from vidlora.kernels import path_cache, selection
from vidlora.kernels.errors import KernelMismatchError
from vidlora.kernels.launching import INTERPRETED
from vidlora.kernels.lora_gemm import lora_linear_triton
from vidlora.kernels.reference import lora_linear_reference
from vidlora.kernels.selection import Candidate, KernelExcludedWarning, PathChooser

pytestmark = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 before import (conftest.py)")


def _args(m=40, n=24, k=32, r=8, dtype=torch.float16, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(dtype)
    w = (torch.randn(n, k, generator=g) * k**-0.5).to(dtype)
    b = torch.randn(n, generator=g).to(dtype) if bias else None
    a = (torch.randn(r, k, generator=g) * k**-0.5).to(dtype)
    bb = torch.randn(n, r, generator=g).to(dtype)
    c = torch.rand(r, generator=g) * 0.01  # a small LoRA term: the check must still see a wrong one
    return (x, w, b, a, bb, c)


def _b_transposed(x, w, b, a, bb, c):
    # The real kernel with a real indexing bug: B [N, R] read with B^T's strides.
    return lora_linear_triton(x, w, b, a, torch.as_strided(bb, bb.shape, (1, bb.shape[0])), c)


@triton.jit
def _broken_kernel(x_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    v = tl.load(x_ptr + offs)
    tl.store(x_ptr + offs, tl.dot(v, v))  # a 1-D dot does not compile


def _broken(x, *rest):
    _broken_kernel[(1,)](x.reshape(-1), BLOCK=16)
    return x


def _extra(op, args):
    return [Candidate("test.b_transposed", "triton", _b_transposed), Candidate("test.broken", "triton", _broken)]


class FakeTimer:
    """Returns set times; the wrong and broken kernels would be "fastest"."""

    def __init__(self, times=None):
        self.times = {"test.b_transposed": 0.1, "test.broken": 0.1, "torch": 5.0, **(times or {})}
        self.calls = []

    def __call__(self, name, fn):
        fn()
        self.calls.append(name)
        return self.times.get(name, 1.0 + len(self.calls) * 0.01)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("VIDLORA_BACKEND", raising=False)
    monkeypatch.delenv(selection.CHOICE_ENV, raising=False)
    return tmp_path / "cache"


def test_wrong_and_broken_kernels_are_excluded_with_one_warning_and_the_fastest_correct_wins(cache_dir):
    timer = FakeTimer({"triton.classic.shrink_expand": 2.0, "triton.classic.fused": 0.5,
                       "triton.persistent.shrink_expand": 3.0, "triton.persistent.fused": 4.0})
    chooser = PathChooser(timer, cache_dir=cache_dir, extra_candidates=_extra)
    args = _args()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = chooser.run("lora_linear", args)
        y2 = chooser.run("lora_linear", args)  # reused: no second measurement, no second warning
    excluded = [w for w in caught if issubclass(w.category, KernelExcludedWarning)]
    assert len(excluded) == 1
    text = str(excluded[0].message)
    for needle in ("test.b_transposed", "test.broken", "N=24 K=32", "R<=16", "VIDLORA_BACKEND", "float16"):
        assert needle in text, (needle, text)
    assert "outside the rounding bound" in text  # the wrong one: by the reference check
    (choice,) = chooser.choices()
    assert choice["chosen"] == "triton.classic.fused" and choice["source"] == "measured"
    assert set(choice["excluded"]) == {"test.b_transposed", "test.broken"}
    # Only correct candidates are timed, each once.
    assert sorted(timer.calls) == ["torch", "triton.classic.fused", "triton.classic.shrink_expand",
                                   "triton.persistent.fused", "triton.persistent.shrink_expand"]
    assert choice["timings_ms"] == {"triton.classic.fused": 0.5, "triton.classic.shrink_expand": 2.0, "torch": 5.0,
                                    "triton.persistent.fused": 4.0, "triton.persistent.shrink_expand": 3.0}
    ref = lora_linear_reference(*(t.float() if t is not None and t.dtype != torch.float32 else t for t in args))
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=1e-2)
    assert torch.equal(y, y2)


def test_the_torch_path_wins_when_it_is_fastest_and_at_rank_zero_it_is_plain_cublas(cache_dir):
    timer = FakeTimer({"torch": 0.2})
    chooser = PathChooser(timer, cache_dir=cache_dir)
    x, w, b, a, bb, c = _args(r=0)
    y = chooser.run("lora_linear", (x, w, b, a, bb, c))
    (choice,) = chooser.choices()
    assert choice["chosen"] == "torch"
    assert {"triton.classic.plain", "triton.persistent.plain"} <= set(choice["timings_ms"])
    assert torch.equal(y, torch.addmm(b, x, w.t()))  # R = 0: the torch path is F.linear's addmm


def test_choice_is_cached_on_disk_and_reused_by_a_new_process_state(cache_dir):
    args = _args(seed=3)
    PathChooser(FakeTimer({"torch": 0.3}), cache_dir=cache_dir).run("lora_linear", args)
    files = list(cache_dir.glob("choices-*.json"))
    assert len(files) == 1 and files[0].name == "choices-cpu.json"
    data = json.loads(files[0].read_text())
    assert data["versions"] == path_cache.current_versions()
    (entry,) = data["entries"].values()
    assert entry["chosen"] == "torch"
    timer = FakeTimer()
    again = PathChooser(timer, cache_dir=cache_dir)
    again.run("lora_linear", args)
    assert timer.calls == [] and again.choices()[0]["source"] == "disk"
    # Another shape class is measured and merged into the same file.
    again.run("lora_linear", _args(n=40, seed=4))
    assert len(json.loads(files[0].read_text())["entries"]) == 2


def test_a_version_change_invalidates_the_disk_cache(cache_dir, monkeypatch):
    args = _args(seed=5)
    PathChooser(FakeTimer(), cache_dir=cache_dir).run("lora_linear", args)
    real = path_cache.current_versions()
    monkeypatch.setattr(path_cache, "current_versions", lambda: {**real, "triton": "0.0.1"})
    timer = FakeTimer()
    chooser = PathChooser(timer, cache_dir=cache_dir)
    chooser.run("lora_linear", args)
    assert timer.calls and chooser.choices()[0]["source"] == "measured"
    data = json.loads(next(cache_dir.glob("choices-*.json")).read_text())
    assert data["versions"]["triton"] == "0.0.1" and len(data["entries"]) == 1  # stale entries dropped


def test_forced_triton_turns_a_wrong_kernel_into_an_error(cache_dir, monkeypatch):
    chooser = PathChooser(FakeTimer(), cache_dir=cache_dir, extra_candidates=_extra)
    with pytest.raises(KernelMismatchError, match="VIDLORA_BACKEND=triton.*test.b_transposed"):
        chooser.run("lora_linear", _args(seed=6), forced=True)


def test_no_timing_while_tracing_or_when_switched_off(cache_dir, monkeypatch):
    timer = FakeTimer()
    chooser = PathChooser(timer, cache_dir=cache_dir)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    y = chooser.run("lora_linear", _args(seed=7))
    assert timer.calls == [] and chooser.choices() == [] and y.shape == (40, 24)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    monkeypatch.setenv(selection.CHOICE_ENV, "off")
    chooser.run("lora_linear", _args(seed=7))
    assert timer.calls == [] and chooser.choices() == []


def test_fp8_ops_choose_among_their_candidates(cache_dir):
    from vidlora.kernels.fp8_format import quantize_weight

    x, w, b, a, bb, c = _args(m=33, n=24, k=64, seed=8)
    w8, ws = quantize_weight(w.float())
    timer = FakeTimer({"triton.dequant": 0.4})
    chooser = PathChooser(timer, cache_dir=cache_dir)
    chooser.run("lora_linear_fp8.w8a16", (x, w8, ws, b, a, bb, c))
    chooser.run("lora_linear_fp8.w8a8", (x, w8, ws, b, a, bb, c))
    w8a16, w8a8 = chooser.choices()
    assert w8a16["chosen"] == "triton.dequant" and w8a16["excluded"] == {}
    assert set(w8a16["timings_ms"]) == {"triton.classic", "triton.dequant", "torch"}
    assert set(w8a8["timings_ms"]) == {"triton.persistent", "triton.classic", "torch"} and w8a8["excluded"] == {}


def test_cache_location_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDLORA_CACHE", str(tmp_path / "v"))
    assert path_cache.cache_dir() == tmp_path / "v" / "kernels"
    monkeypatch.delenv("VIDLORA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert path_cache.cache_dir() == tmp_path / "x" / "vidlora" / "kernels"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert path_cache.cache_dir() == tmp_path / "h" / ".cache" / "vidlora" / "kernels"


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    cache = path_cache.ChoiceCache(tmp_path / "choices-x.json")
    assert cache.store({"a": {"chosen": "torch"}})
    before = (tmp_path / "choices-x.json").read_text()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(path_cache.os, "replace", boom)
    with pytest.warns(UserWarning, match="cannot write the kernel choice cache"):
        assert not cache.store({"b": {"chosen": "torch"}})
    assert (tmp_path / "choices-x.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def _writer(path: str, worker: int) -> None:
    cache = path_cache.ChoiceCache(path_cache.Path(path), {"format": 1})
    for i in range(20):
        cache.store({f"w{worker}-{i}": {"chosen": "torch", "pad": "x" * 2000}})


def test_concurrent_writers_never_corrupt_or_lose_entries(tmp_path):
    """torchrun ranks / Ray workers storing choices into one file at the same time."""
    path = tmp_path / "choices-gpu.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = json.loads(path.read_text())
    assert len(data["entries"]) == 80
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_warm_up_measures_ahead_and_path_choices_reports_it(cache_dir, monkeypatch):
    """The explicit warm-up (what ``vidlora tune`` runs) fills the same choices the ops use."""
    import vidlora.kernels as kernels

    monkeypatch.setattr(selection, "_DEFAULT", PathChooser(FakeTimer({"torch": 0.1}), cache_dir=cache_dir))
    records = kernels.warm_up([kernels.ShapeCase(40, 24, 32, 8, torch.float16),
                               kernels.ShapeCase(40, 24, 64, 0, torch.bfloat16, bias=False),
                               kernels.ShapeCase(40, 24, 64, 16, torch.float16, fp8="w8a16")], device="cpu")  # fmt: skip
    assert [r["chosen"] for r in records] == ["torch", "torch", "torch"]
    assert [r["op"] for r in records] == ["lora_linear", "lora_linear", "lora_linear_fp8.w8a16"]
    choices = kernels.path_choices()
    assert len(choices) == 3 and all(c["timings_ms"] and c["source"] == "measured" for c in choices)
    assert {c["r_bucket"] for c in choices} == {16, 0} and {c["bias"] for c in choices} == {True, False}
