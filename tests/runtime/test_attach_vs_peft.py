"""Stacked adapters loaded from files through vidlora equal diffusers + PEFT with
``set_adapters(names, weights)`` on the same files (schemes diffusers reads correctly)."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("peft")

import vidlora
from vidlora.app.tiny import tiny_transformer, tiny_transformer_inputs

from helpers.format_cases import hunyuan_truth_spec, load_with_diffusers, wan_truth_spec
from helpers.writers import random_truth, write_lora
from helpers.models import run


@pytest.mark.parametrize(
    "kind,schemes",
    [("wan-i2v", ("W4", "W2", "W3")), ("hunyuan-t2v", ("H5", "H5", "H5"))],
)
def test_three_stacked_files_match_diffusers_peft(tmp_path, kind, schemes):
    model = tiny_transformer(kind, seed=0)
    inputs = tiny_transformer_inputs(kind)
    if kind.startswith("wan"):
        paths = [p for p in wan_truth_spec(model, "W4")[0] if p.startswith("blocks.")]
    else:
        paths = [p for p in hunyuan_truth_spec(model, "H5")[0] if "transformer_blocks." in p]
    files = {}
    for i, scheme in enumerate(schemes):
        alpha = None if scheme in ("W4", "H5") else 2.0
        truth = random_truth(model, seed=10 + i, paths=paths, alpha=alpha, rank=3 + i)
        files[f"a{i}"] = write_lora(tmp_path / f"a{i}.safetensors", truth, scheme)
    weights = {"a0": 0.8, "a1": -0.6, "a2": 1.3}

    base = run(model, inputs)
    theirs = run(load_with_diffusers(model, files, weights), inputs)
    fresh = copy.deepcopy(model)  # unpatched, for the second diffusers run
    h = vidlora.attach(model)
    for name, path in files.items():
        assert h.add(path, weight=weights[name]) == name
    ours = run(model, inputs)
    assert (ours - base).abs().max() > 0.05  # the adapters change the output
    torch.testing.assert_close(ours, theirs, atol=3e-5, rtol=1e-4)

    # re-weight both sides the same way
    new = {"a0": 0.25, "a1": 0.0, "a2": -1.0}
    for name, w in new.items():
        h.set_weight(name, w)
    torch.testing.assert_close(run(model, inputs), run(load_with_diffusers(fresh, files, new), inputs), atol=3e-5, rtol=1e-4)
