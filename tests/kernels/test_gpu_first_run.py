"""The first-GPU-run script in its quick dry run, through the wheel recipe of benchmarks/README.md.

The wheel is built from this checkout (``pip wheel --no-deps``), installed with ``pip install
--no-index --no-deps --target SITE``, and run from another folder with ``PYTHONPATH=SITE``,
as on the lent machine (at the repository root the source ``vidlora/`` would shadow it).
A first run is killed right after its env phase: the lines it left are whole JSON rows;
a second run with the same ``--out`` resumes (env not run again) and finishes every phase.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("env", "compile", "correctness", "timing", "sweep", "step")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    whl = tmp_path_factory.mktemp("whl")
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(whl)], check=True, cwd=whl, timeout=300)  # fmt: skip
    wheels = sorted(whl.glob("vidlora-*.whl"))
    assert len(wheels) == 1, wheels
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site),
                    *map(str, wheels)], check=True, timeout=300)  # fmt: skip
    return site


def _env(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    return env


def _rows(out: Path) -> list[dict]:
    lines = (out / "first.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]  # every line must be a whole JSON row


def test_killed_after_env_then_resumed_through_the_wheel(site, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vidlora.benchmarks.gpu_first_run", "--out", str(out), "--dry-run", "--quick"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(site), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            rows_file = out / "first.jsonl"
            if rows_file.is_file() and '"env.done"' in rows_file.read_text():
                break
            assert proc.poll() is None, "the run ended before its env phase was recorded"
            time.sleep(0.2)
        else:
            pytest.fail("env phase not recorded within 240 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = _rows(out)
    assert first and all({"phase", "ok", "case"} <= r.keys() for r in first)
    env_rows = [r for r in first if r["case"] == "env.device"]
    assert len(env_rows) == 1 and env_rows[0]["ok"] is True
    # The installed wheel ran, not this checkout's source folders.
    assert Path(env_rows[0]["vidlora_path"]).resolve().is_relative_to(site.resolve()), env_rows[0]["vidlora_path"]
    assert not any(r["case"] == "step.done" for r in first)

    done = subprocess.run(cmd, cwd=tmp_path, env=_env(site), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "env: done in an earlier run, skipped" in done.stdout
    rows = _rows(out)
    cases = [r["case"] for r in rows]
    assert len(cases) == len(set(cases)), "a case was recorded twice"
    assert sum(r["case"] == "env.device" for r in rows) == 1
    for phase in PHASES:
        (fin,) = [r for r in rows if r["case"] == f"{phase}.done"]
        assert fin["phase"] == phase
        if phase == "step" and fin.get("skipped"):
            continue  # no diffusers in this environment
        assert fin["ok"] is True, fin
    assert all(r["phase"] in PHASES and isinstance(r["ok"], bool) for r in rows)
    # Correctness of every candidate before timing; the dry run's kernels are all right.
    correct = [r for r in rows if r["phase"] == "correctness" and r["case"] != "correctness.done"]
    assert correct and all(r["ok"] for r in correct), [r for r in correct if not r["ok"]]
    assert {r["kernel"] for r in correct} >= {"torch", "triton.classic.shrink_expand", "triton.classic.fused"}
    compiled = [r for r in rows if r["phase"] == "compile" and r["case"] != "compile.done"]
    assert compiled and all(r["ok"] and r["arch"] == "sm_90" for r in compiled)
    timed = [r for r in rows if r["phase"] == "timing" and "ms" in r]
    assert timed and all(r["ms"] > 0 for r in timed)
    assert len(list(out.iterdir())) <= 8
