"""``WorkerSession`` (what a sweep worker and a serve replica keep), without Ray: job after
job on one loaded pipeline, a strength change is no swap, a failed swap puts the previous
adapters back, and a set swapped out and in again gives the same frames."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from helpers.scale import decoded, scale_loras
from vidlora.app.cli.console import Messages
from vidlora.app.cli.plan import GenerateRequest, LoraRequest, plan_generation
from vidlora.app.workers.session import WorkerSession
from vidlora.errors import LoRAMismatchError


def _lora(path, weight):
    from vidlora.lora.sources import resolve_source

    r = resolve_source(str(path))
    return LoraRequest(spec=str(path), source=str(path), weight=weight, expert=None, path=str(r.path), sha256=r.sha256,
                       origin=r.origin, resolved=True)  # fmt: skip


def test_jobs_on_one_session(tmp_path):
    loras = scale_loras(tmp_path / "loras")
    req = GenerateRequest(task="t2v", prompt="a fox", model="tiny", frames=5, steps=2, size=(32, 32), seed=4,
                          out=str(tmp_path / "a.mp4"), overwrite=True, quiet=True)  # fmt: skip
    plan = plan_generation(req, Messages())
    session = WorkerSession(plan)  # threads=None: this process keeps its torch threads

    def job(name, *items):
        p = dataclasses.replace(plan, loras=[_lora(loras[k], w) for k, w in items], out=tmp_path / f"{name}.mp4")
        path, swapped = session.run(p)
        return decoded(path), swapped

    motion, swapped = job("m1", ("motion", 0.8))
    assert swapped and session.active == ("motion",)
    weaker, swapped = job("m2", ("motion", 0.3))
    assert not swapped and not np.array_equal(weaker, motion)  # strengths are free, and they matter
    with pytest.raises(LoRAMismatchError, match="HunyuanVideo"):
        job("bad", ("motion_b", 0.5), ("hunyuan", 1.0))
    assert session.active == ("motion",)  # the failed swap put the previous set back
    again, swapped = job("m3", ("motion", 0.8))
    assert not swapped and np.array_equal(again, motion)
    job("b", ("motion_b", 0.5))
    assert session.active == ("motion_b",)  # only the job's own adapters are in the stacks
    back, swapped = job("m4", ("motion", 0.8))
    assert swapped and np.array_equal(back, motion) and session.swaps == 3
    none, swapped = job("none")
    assert swapped and session.active == () and not np.array_equal(none, motion)
