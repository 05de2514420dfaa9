"""``vidlora convert | merge | extract | loras``: the same files as the Python API, one
line and exit 2 for a bad input, ``--lora-dir`` names."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers.format_cases import tiny, wan_truth_spec
from helpers.writers import random_truth, write_lora
from vidlora.app.cli import main
from vidlora.lora import lora_dirs, read_lora
from vidlora.lora.tools import convert_lora, merge_loras


@pytest.fixture
def files(tmp_path, monkeypatch):
    model = tiny("wan-t2v")
    paths, deltas = wan_truth_spec(model, "W2")
    (tmp_path / "loras" / "wan").mkdir(parents=True)
    motion = write_lora(tmp_path / "loras" / "wan" / "motion.safetensors",
                        random_truth(model, 1, paths[:6], deltas[:2], alpha=2.0), "W3",
                        metadata={"modelspec.trigger_phrase": "zoom"})  # fmt: skip
    style = write_lora(tmp_path / "style.safetensors", random_truth(model, 2, paths[:8]), "W1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(lora_dirs.LORA_DIRS_ENV, raising=False)
    yield {"motion": motion, "style": style, "model": model}
    lora_dirs.use_lora_dirs([])


def _same_tensors(a, b):
    ta, tb = load_file(a), load_file(b)
    assert ta.keys() == tb.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_convert_and_merge_match_the_api(files, tmp_path, capsys):
    assert main(["convert", "motion", "c.safetensors", "--to", "comfyui", "--lora-dir", "loras"]) == 0
    assert "wrote c.safetensors (W2" in capsys.readouterr().out
    convert_lora(files["motion"], tmp_path / "api.safetensors", to="comfyui")
    _same_tensors(tmp_path / "c.safetensors", tmp_path / "api.safetensors")

    assert main(["merge", "style.safetensors:0.5", f"{files['motion']}:-1", "--out", "m.safetensors", "--rank", "3"]) == 0
    out = capsys.readouterr().out
    assert "re-ranked to 3" in out and "worst" in out
    merge_loras([(files["style"], 0.5), (files["motion"], -1.0)], tmp_path / "mapi.safetensors", rank=3)
    _same_tensors(tmp_path / "m.safetensors", tmp_path / "mapi.safetensors")

    assert main(["convert", "style.safetensors", "d.safetensors", "--to", "diffusers", "--dtype", "bf16"]) == 0
    assert read_lora(tmp_path / "d.safetensors").dtype == torch.bfloat16


def test_extract_prints_errors_and_a_projection(files, tmp_path, capsys):
    state = {k: v.contiguous() for k, v in files["model"].state_dict().items()}
    save_file(state, tmp_path / "base.safetensors")
    tuned = dict(state)
    tuned["blocks.0.ffn.net.0.proj.weight"] = state["blocks.0.ffn.net.0.proj.weight"] + 0.1 * torch.outer(
        torch.ones(state["blocks.0.ffn.net.0.proj.weight"].shape[0]), torch.ones(24))
    save_file(tuned, tmp_path / "tuned.safetensors")
    rc = main(["extract", "base.safetensors", "tuned.safetensors", "--rank", "2", "--out", "e.safetensors", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "1 modules at rank 2" in out and "projected for a Wan 14B pair (wan2.1-t2v-14b)" in out
    assert list(read_lora(tmp_path / "e.safetensors").modules) == ["blocks.0.ffn.net.0.proj"]


def test_loras_lists_the_folder(files, capsys):
    assert main(["loras", "loras", "--json", "--hash"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["scheme"], r["trigger_words"]) for r in rows] == [("wan/motion", "W3", ["zoom"])]
    assert len(rows[0]["sha256"]) == 64
    assert main(["loras", "--lora-dir", "loras"]) == 0
    assert "wan/motion  Wan (width 24)  -  LoRA rank 4-6" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["convert", "style.safetensors", "style.safetensors", "--to", "musubi", "--overwrite"], "also an input"),
    (["merge", "style.safetensors:0.9,0.5", "--out", "x.safetensors"], "schedules cannot be merged"),
    (["convert", "nothing-here", "x.safetensors", "--to", "musubi"], "is not an existing file"),
    (["convert", "style.safetensors", "x.safetensors", "--to", "kohya"], "invalid choice"),
    (["merge", "style.safetensors", "--out", "x.safetensors", "--rank", "0"], "positive integer"),
    (["loras", "missing-folder"], "does not exist"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(files, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_existing_output_needs_overwrite(files, capsys):
    assert main(["convert", "style.safetensors", "o.safetensors", "--to", "musubi"]) == 0
    assert main(["convert", "style.safetensors", "o.safetensors", "--to", "musubi"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["convert", "style.safetensors", "o.safetensors", "--to", "original", "--overwrite"]) == 0


def test_convert_checks_against_a_model(files, tmp_path, capsys):
    """--model: the LoRA is matched against the model's config first (one line naming both
    sides when it does not fit); a fitting one converts."""
    assert main(["convert", "style.safetensors", "ok.safetensors", "--to", "comfyui", "--model", "tiny:wan-t2v"]) == 0
    assert main(["convert", "style.safetensors", "no.safetensors", "--to", "comfyui", "--model", "wan2.1-t2v-14b"]) == 2
    err = capsys.readouterr().err
    assert "Wan 14B" in err and err.count("\n") == 1, err
    assert not (tmp_path / "no.safetensors").exists()
