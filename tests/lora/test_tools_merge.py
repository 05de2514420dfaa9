"""merge_loras: the exact merge applied at strength 1 equals the stack (through vidlora on
the tiny Wan and Hunyuan models); re-ranking reports the error an independent dense SVD
computes; experts, schedules and mixed families."""

from __future__ import annotations

import pytest
import torch

import vidlora
from helpers.format_cases import hunyuan_truth_spec, tiny, wan_truth_spec
from helpers.merged import assert_same_params, merged_stack, param_deltas_of
from helpers.models import run
from helpers.writers import Truth, random_truth, write_lora
from vidlora.app.tiny import tiny_transformer_inputs
from vidlora.errors import VidloraError
from vidlora.lora import read_lora
from vidlora.lora.tools.merge import merge_loras

STRENGTHS = (0.8, -0.5, 1.3)


def _inputs(tmp_path, kind, runtime_safe: bool = False):
    """Three files of different schemes, ranks, alphas and strengths. ``runtime_safe``
    leaves out the dense delta on a Linear that also has a LoRA (norm_out.linear.weight):
    the runtime mis-applies two adapters that both carry one on the same Linear (a bug
    outside the tools, reported; the merge itself is checked against merged_stack)."""
    model = tiny(kind)
    files = []
    schemes = ("W3", "W2", "W1") if kind.startswith("wan") else ("H2", "H4", "H1")
    for i, scheme in enumerate(schemes):
        spec = wan_truth_spec if kind.startswith("wan") else hunyuan_truth_spec
        paths, deltas = spec(model, scheme)
        paths = [p for p in paths if p not in ("patch_embedding", "x_embedder.proj")]
        if runtime_safe:
            deltas = [d for d in deltas if d != "norm_out.linear.weight"]
        truth = random_truth(model, seed=30 + i, paths=paths, deltas=deltas, rank=3 + i,
                             alpha=(1.0, 4.0, None)[i], share_fused_down=i != 1)  # fmt: skip
        files.append(write_lora(tmp_path / f"in{i}.safetensors", truth, scheme))
    return model, files


def _output(kind, files_and_weights):
    model = tiny(kind)
    h = vidlora.attach(model)
    for f, w in files_and_weights:
        h.add(str(f), weight=w)
    return run(model, tiny_transformer_inputs(kind))


@pytest.mark.parametrize("kind", ["wan-i2v", "hunyuan-t2v"])
def test_exact_merge_equals_the_stack(tmp_path, kind):
    model, files = _inputs(tmp_path, kind)
    stack = list(zip(files, STRENGTHS))
    report = merge_loras(stack, tmp_path / "all.safetensors")
    assert report.rank is None and set(report.errors.values()) == {0.0}
    assert_same_params(merged_stack(model, [(read_lora(tmp_path / "all.safetensors"), 1.0)]),
                       merged_stack(model, [(read_lora(f), w) for f, w in stack]), atol=2e-6)  # fmt: skip
    model, files = _inputs(tmp_path, kind, runtime_safe=True)
    merge_loras(list(zip(files, STRENGTHS)), tmp_path / "m.safetensors")
    want = _output(kind, list(zip(files, STRENGTHS)))
    assert (want - run(model, tiny_transformer_inputs(kind))).abs().max() > 0.05
    torch.testing.assert_close(_output(kind, [(tmp_path / "m.safetensors", 1.0)]), want, atol=2e-5, rtol=1e-5)
    merged = read_lora(tmp_path / "m.safetensors")
    assert merged.scheme.startswith("W3 " if kind.startswith("wan") else "H2 ")  # the first input's naming
    first = read_lora(files[0]).modules
    some = next(iter(first))
    assert merged.modules[some].rank == sum(read_lora(f).modules[some].rank for f in files)


def _low_rank_delta(lora, path):
    low = lora.modules.get(path)
    return 0 if low is None else low.scale * (low.up.double() @ low.down.double())


def _dense(loras_and_weights, path):
    """The stack's low-rank delta on one module, dense, fp64 (full-tensor deltas are not
    re-ranked: they sum as they are)."""
    return sum(w * _low_rank_delta(lora, path) for lora, w in loras_and_weights)


@pytest.mark.parametrize("to", ["diffusers", "original"])
def test_reranked_error_matches_an_independent_svd(tmp_path, to):
    """Each module's reported error is ||dW - dW_file|| / ||dW|| computed from the dense
    deltas; where a module is re-ranked on its own it is also the Eckart-Young optimum."""
    _, files = _inputs(tmp_path, "hunyuan-t2v")
    stack = list(zip(files, STRENGTHS))
    report = merge_loras(stack, tmp_path / "r.safetensors", rank=5, to=to, drop_unsupported=True)
    got = read_lora(tmp_path / "r.safetensors")
    loras = [(read_lora(f), w) for f, w in stack]
    for path, low in got.modules.items():  # R, or less where the Linear is narrower; fused kept at R, not 3R
        assert low.rank == min(5, low.in_features, low.out_features), path
    checked = 0
    for path, err in report.errors.items():
        dense = _dense(loras, path)
        true = float(torch.linalg.norm(dense - _low_rank_delta(got, path)) / torch.linalg.norm(dense))
        assert err == pytest.approx(true, rel=1e-4, abs=1e-6), path
        fused_piece = to == "original" and any(s in path for s in ("attn.to_", "add_", "proj_mlp"))
        if not fused_piece:
            s = torch.linalg.svdvals(dense)
            assert err == pytest.approx(float(s[5:].norm() / s.norm()), rel=1e-4, abs=1e-6), path
        checked += 1
    assert checked == len(got.modules) and report.mean_error > 0.01
    assert "worst" in str(report) and len(report.worst(10)) == 10


def test_resize_one_file(tmp_path):
    model = tiny("wan-t2v")
    paths = wan_truth_spec(model, "W1")[0][:4]
    truth = random_truth(model, seed=40, paths=paths, rank=6, alpha=3.0)
    low = truth.modules[paths[0]]
    low.up[:, 2:] = 0  # the first module is really rank 2
    src = write_lora(tmp_path / "big.safetensors", truth, "W1")
    report = merge_loras([(src, 1.0)], tmp_path / "small.safetensors", rank=2)
    small = read_lora(tmp_path / "small.safetensors")
    assert small.rank == 2 and report.errors[paths[0]] < 1e-6 and min(report.errors.values()) < 1e-6
    dense = param_deltas_of(read_lora(src))[paths[0] + ".weight"]
    torch.testing.assert_close(param_deltas_of(small)[paths[0] + ".weight"], dense, atol=1e-5, rtol=1e-5)
    # a rank at or above the file's own keeps it exact
    same = merge_loras([(src, 1.0)], tmp_path / "same.safetensors", rank=16)
    assert set(same.errors.values()) == {0.0}


def test_expert_inputs_give_both_experts(tmp_path):
    model = tiny("wan-t2v")
    paths = [p for p in wan_truth_spec(model, "W1")[0] if p.startswith("blocks.")]
    high, low = random_truth(model, seed=41, paths=paths), random_truth(model, seed=42, paths=paths[:4])
    combo = write_lora(tmp_path / "combo.safetensors", Truth(), "W6", experts={"high": high, "low": low})
    style = write_lora(tmp_path / "style.safetensors", random_truth(model, seed=43, paths=paths[:6]), "W1")
    report = merge_loras([(combo, 1.0), (style, 0.5)], tmp_path / "m.safetensors")
    merged = read_lora(report.outputs[0])
    assert set(merged.experts) == {"high", "low"}
    for expert, truth in (("high", high), ("low", low)):
        part = param_deltas_of(merged.experts[expert])
        want = {k: v for k, v in truth.param_deltas().items()}
        for k, v in random_truth(model, seed=43, paths=paths[:6]).param_deltas().items():
            want[k] = want.get(k, 0) + 0.5 * v
        assert part.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(part[k], want[k], atol=1e-6, rtol=1e-6)
    split = merge_loras([(combo, 1.0), (style, 0.5)], tmp_path / "s.safetensors", experts="split", to="comfyui")
    assert [read_lora(p).variant.expert for p in split.outputs] == ["high", "low"]


def test_refusals(tmp_path):
    wan, hy = tiny("wan-t2v"), tiny("hunyuan-t2v")
    a = write_lora(tmp_path / "a.safetensors", random_truth(wan, seed=1, paths=["blocks.0.attn1.to_q"]), "W1")
    b = write_lora(tmp_path / "b.safetensors", random_truth(hy, seed=1, paths=["proj_out"]), "H1")
    with pytest.raises(VidloraError, match="schedules cannot be merged"):
        merge_loras([(a, [1.0, 0.5])], tmp_path / "m.safetensors")
    with pytest.raises(VidloraError, match="different model families"):
        merge_loras([(a, 1.0), (b, 1.0)], tmp_path / "m.safetensors")
    with pytest.raises(VidloraError, match="positive integer"):
        merge_loras([(a, 1.0)], tmp_path / "m.safetensors", rank=0)
    assert not (tmp_path / "m.safetensors").exists()
