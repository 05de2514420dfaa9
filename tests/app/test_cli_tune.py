"""``vidlora tune``: the shape classes it would measure (--list works on a CPU, from the
configs alone), and a clear refusal to measure where there is no CUDA device."""

from __future__ import annotations

import json

import pytest
import torch

from vidlora.app.cli import main


def _listed(capsys, *argv):
    assert main(["tune", *argv, "--list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_tiny_wan_shapes_at_the_rows_each_linear_sees(capsys):
    got = _listed(capsys, "--model", "tiny", "--size", "64x64", "--frames", "9", "--rank", "8", "--context-tokens", "20")
    # 9 frames -> 3 latent frames; 64 px / 16 (VAE 8 x patch 2) = 4: 3 x 4 x 4 video tokens
    assert got["tokens"] == 48 and "3 x 4 x 4" in got["tokens_from"]
    shapes = {(s["m"], s["n"], s["k"], s["r"]) for s in got["shapes"]}
    width = 24  # the tiny Wan
    assert {(48, 3 * width, width, 0), (48, 3 * width, width, 32)} <= shapes  # fused q/k/v: 3 x 8 -> 32
    assert {(20, 2 * width, width, 0), (20, 2 * width, width, 16)} <= shapes  # cross k/v on the text tokens
    assert {m for m, *_ in shapes} == {48, 20}
    assert all(s["dtype"] == "bfloat16" and s["fp8"] is None for s in got["shapes"])


def test_a_real_config_needs_tokens_and_lists_the_14b_shapes(capsys):
    assert main(["tune", "--model", "wan2.1-t2v-14b", "--list"]) == 2
    assert "give --tokens N" in capsys.readouterr().err
    got = _listed(capsys, "--model", "wan2.1-t2v-14b", "--tokens", "32760", "--fp8", "w8a8")
    shapes = {(s["m"], s["n"], s["k"], s["r"], s["fp8"]) for s in got["shapes"]}
    assert (32760, 15360, 5120, 96, "w8a8") in shapes and (512, 10240, 5120, 64, "w8a8") in shapes
    assert (32760, 5120, 13824, 32, "w8a8") in shapes and len(shapes) == 10


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_measuring_without_cuda_is_refused_in_one_line(capsys):
    assert main(["tune", "--model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "--list" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, words", [(["--rank", "0"], "positive integer"), (["--size", "64"], "WIDTHxHEIGHT"),
                                         (["--dtype", "fp32"], "invalid choice")])  # fmt: skip
def test_bad_arguments(capsys, argv, words):
    assert main(["tune", "--model", "tiny", *argv]) == 2
    assert words in capsys.readouterr().err
