"""``vidlora t2v ... --gpus N``: the command runs itself again under torch.distributed.run
(here ``--device cpu``: 2 gloo processes), or runs under a torchrun launch of the user's;
the MP4 rank 0 writes holds the very frames of the one-process run, its settings the
layout; the split's errors come before anything is launched."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from vidlora.app.cli import main
from vidlora.app.tiny import write_demo_assets

from helpers.paths import REPO_ROOT

_SHIM = REPO_ROOT / "tests" / "helpers" / "accelerator_shim"  # sitecustomize: see its docstring


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_demo_assets(tmp_path_factory.mktemp("assets"))


def _args(assets, out, *extra):
    return ["t2v", "--model", "tiny", "--prompt", "a ball, bouncing", "--lora", f"{assets['motion']}:0.8",
            "--lora", f"{assets['style']}:1.0,0.5", "--frames", "5", "--size", "32x32", "--steps", "2",
            "--device", "cpu", "--out", str(out), *extra]  # fmt: skip


def _spawn(cmd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_SHIM), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def one_process(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "one.mp4"
    assert main(_args(assets, out)) == 0
    return out


def _same_video(out, one_process, layout):
    frames, expected = iio.imread(out), iio.imread(one_process)
    assert frames.shape == expected.shape == (5, 32, 32, 3)
    assert np.array_equal(frames, expected), f"max |diff| {np.abs(frames.astype(int) - expected).max()}"
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    one = json.loads(one_process.with_name(one_process.name + ".json").read_text())
    assert meta.pop("parallel") == layout and "parallel" not in one
    assert meta == one  # every other setting as in the one-process run


def test_gpus_2_relaunches_itself_and_writes_the_one_process_video(assets, one_process, tmp_path):
    out = tmp_path / "two.mp4"
    run = _spawn([sys.executable, "-m", "vidlora", *_args(assets, out, "--gpus", "2")])
    assert run.returncode == 0, run.stderr[-3000:]
    _same_video(out, one_process, {"gpus": 2, "ulysses": 2, "ring": 1, "backend": "gloo"})
    err = run.stderr
    assert err.count("wrote ") == 1 and err.count("note: --model tiny") == 1, err  # rank 0 alone speaks
    assert "ulysses 2 x ring 1" in err


def test_under_torchrun_with_ring(assets, one_process, tmp_path):
    out = tmp_path / "ring.mp4"
    run = _spawn([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "vidlora",
                  *_args(assets, out, "--ring", "2")])  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    _same_video(out, one_process, {"gpus": 2, "ulysses": 1, "ring": 2, "backend": "gloo"})


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--gpus", "2", "--frames", "1", "--size", "48x48"], ["1 x 3 x 3 = 9 video tokens", "divide by --gpus 2"]),
        (["--gpus", "4"], ["2 attention heads", "--ulysses 4", "--ulysses 2 --ring 2"]),
        (["--gpus", "2", "--ulysses", "3"], ["--ulysses 3 x --ring 1 = 3", "--gpus is 2"]),
        (["--ring", "2"], ["give --gpus N too"]),
    ],
)
def test_split_errors_come_before_any_launch(assets, tmp_path, capsys, extra, words):
    assert main(_args(assets, tmp_path / "x.mp4", *extra)) == 2  # a later --frames/--size wins
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("vidlora: error")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "x.mp4").exists()


def test_fewer_gpus_than_asked(assets, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    args = [a for a in _args(assets, tmp_path / "x.mp4", "--gpus", "2") if a not in ("--device", "cpu")]
    assert main(args) == 2
    assert "--gpus 2: torch sees 0 CUDA GPUs" in capsys.readouterr().err


def test_cpu_processes_on_a_torch_without_accelerator_are_refused_before_launch(assets, tmp_path, capsys,
                                                                                 monkeypatch):  # fmt: skip
    monkeypatch.setattr(torch.accelerator, "device_count", lambda: 0)
    assert main(_args(assets, tmp_path / "x.mp4", "--gpus", "2")) == 2
    assert "sees no accelerator (0)" in capsys.readouterr().err
