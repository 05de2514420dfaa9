"""extract_lora on tiny models: TUNED = BASE + a known low-rank delta. At rank >= r the
delta is recovered (error ~ rounding); below r the reported error is the true one (and
the Eckart-Young optimum); diffs, fp8-scaled and pipeline folders; a larger synthetic pair
in a subprocess under an RLIMIT_DATA below one checkpoint's size."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import vidlora
from helpers.checkpoints import dequantized, fp8_scaled, original_state_dict, save, save_pipeline, with_low_rank_delta
from helpers.format_cases import tiny
from helpers.models import run
from helpers.paths import REPO_ROOT
from vidlora.app.tiny import tiny_transformer_inputs
from vidlora.errors import VidloraError
from vidlora.lora import read_lora
from vidlora.lora.tools.extract import extract_lora
from vidlora.model import meta_transformer

R = 3


def _state(kind):
    return {k: v.detach().clone() for k, v in tiny(kind).state_dict().items()}


def _pair(tmp_path, kind, layout, seed=0):
    base = _state(kind)
    tuned, truth = with_low_rank_delta(base, R, seed)
    arch = "wan" if kind.startswith("wan") else "hunyuan-video"
    if layout == "diffusers":
        return save(tmp_path / "base.safetensors", base), save(tmp_path / "tuned.safetensors", tuned), truth
    if layout == "original":
        return (save(tmp_path / "base.safetensors", original_state_dict(base, arch)),
                save(tmp_path / "tuned.safetensors", original_state_dict(tuned, arch)), truth)  # fmt: skip
    # mixed: a diffusers base against an original-names tuned file
    return save(tmp_path / "base.safetensors", base), save(tmp_path / "tuned.safetensors", original_state_dict(tuned, arch)), truth


def _lora_delta(lora, module):
    low = lora.modules[module]
    return low.scale * (low.up.double() @ low.down.double())


@pytest.mark.parametrize("layout", ["diffusers", "original", "mixed"])
@pytest.mark.parametrize("kind", ["wan-i2v", "hunyuan-t2v"])
def test_recovers_a_known_low_rank_delta(tmp_path, kind, layout):
    base, tuned, truth = _pair(tmp_path, kind, layout)
    # a Tencent checkpoint's fused qkv / linear1 is one Linear holding 3 / 4 pieces, each
    # with its own rank-R delta: rank 4R there
    fused = kind.startswith("hunyuan") and layout != "diffusers"
    for rank in (4 * R, 4 * R + 2) if fused else (R, R + 2):
        out = tmp_path / f"r{rank}.safetensors"
        report = extract_lora(base, tuned, out, rank=rank, dtype=torch.float32, progress=False)
        lora = read_lora(out)
        linears = {k[: -len(".weight")] for k, v in truth.items() if v.ndim == 2}
        assert set(lora.modules) == linears and set(report.errors) == linears
        for m in linears:
            d = truth[m + ".weight"].double()
            assert float((_lora_delta(lora, m) - d).norm() / d.norm()) < 2e-5, m
            assert report.errors[m] < 2e-5
            assert lora.modules[m].alpha == lora.modules[m].rank and lora.modules[m].scale == 1.0
        assert report.unchanged  # the Linears outside the blocks are identical: skipped
    if fused:  # one A for the pieces, and the comfyui file keeps the module fused
        assert lora.modules["transformer_blocks.0.attn.to_q"].down.data_ptr() == lora.modules[
            "transformer_blocks.0.attn.to_k"].down.data_ptr() or torch.equal(
            lora.modules["transformer_blocks.0.attn.to_q"].down, lora.modules["transformer_blocks.0.attn.to_k"].down)
        assert not report.notes


def test_lower_rank_reports_the_true_error(tmp_path):
    base, tuned, truth = _pair(tmp_path, "wan-t2v", "original", seed=1)
    report = extract_lora(base, tuned, tmp_path / "r2.safetensors", rank=2, dtype=torch.float32, progress=False)
    lora = read_lora(tmp_path / "r2.safetensors")
    for m, err in report.errors.items():
        d = truth[m + ".weight"].double()
        true = float((_lora_delta(lora, m) - d).norm() / d.norm())
        s = torch.linalg.svdvals(d)
        optimum = float(s[2:].norm() / s.norm())
        assert err == pytest.approx(true, rel=1e-5, abs=1e-7), m
        assert optimum - 1e-6 <= true <= optimum * 1.001 + 1e-6, m  # the randomized SVD finds the best rank-2
        assert true > 0.05
    assert report.errors and "worst" in str(report)
    # bf16 factors: the reported error is that of the stored factors, rounding included
    report16 = extract_lora(base, tuned, tmp_path / "b.safetensors", rank=2, progress=False)
    lora16 = read_lora(tmp_path / "b.safetensors")
    assert lora16.dtype == torch.bfloat16
    m = next(iter(report16.errors))
    d = truth[m + ".weight"].double()
    assert report16.errors[m] == pytest.approx(float((_lora_delta(lora16, m) - d).norm() / d.norm()), rel=1e-4)


def test_include_diff_reproduces_the_tuned_model(tmp_path):
    """Full rank-r recovery plus exact diffs: the base with the LoRA (through vidlora) runs
    like the tuned checkpoint."""
    kind = "wan-i2v"
    base, tuned, truth = _pair(tmp_path, kind, "original", seed=2)
    out = tmp_path / "l.safetensors"
    report = extract_lora(base, tuned, out, rank=R, include_diff=True, dtype=torch.float32, progress=False)
    assert report.diffs == 2
    model = tiny(kind)
    tuned_model = tiny(kind)
    tuned_model.load_state_dict({k: v + truth.get(k, 0) for k, v in model.state_dict().items()})
    h = vidlora.attach(model)
    h.add(str(out))
    inputs = tiny_transformer_inputs(kind)
    want = run(tuned_model, inputs)
    assert (want - run(tiny(kind), inputs)).abs().max() > 0.01
    torch.testing.assert_close(run(model, inputs), want, atol=2e-5, rtol=1e-5)


def test_fp8_scaled_checkpoints_are_dequantized(tmp_path):
    base_state = _state("wan-t2v")
    tuned_state, _ = with_low_rank_delta(base_state, R, seed=3, scale=0.2)
    b8, t8 = fp8_scaled(base_state), fp8_scaled(tuned_state)
    base = save(tmp_path / "b.safetensors", original_state_dict(b8, "wan") | {"scaled_fp8": b8["scaled_fp8"]})
    tuned = save(tmp_path / "t.safetensors", original_state_dict(t8, "wan") | {"scaled_fp8": t8["scaled_fp8"]})
    report = extract_lora(base, tuned, tmp_path / "l.safetensors", rank=64, dtype=torch.float32, progress=False)
    lora = read_lora(tmp_path / "l.safetensors")
    want_b, want_t = dequantized(b8), dequantized(t8)
    for m in report.errors:
        d = (want_t[m + ".weight"] - want_b[m + ".weight"]).double()
        assert float((_lora_delta(lora, m) - d).norm() / d.norm()) < 1e-5, m  # full rank: the exact fp8 difference


def test_wan22_pipeline_folders_give_both_experts(tmp_path):
    config = {"_class_name": "WanTransformer3DModel"}
    high, low = _state("wan-t2v"), tiny("wan-t2v").state_dict()
    low = {k: v + 0.01 for k, v in low.items()}
    high_t, high_truth = with_low_rank_delta(high, R, seed=4)
    low_t, low_truth = with_low_rank_delta(low, R, seed=5)
    base = save_pipeline(tmp_path / "base", {"transformer": high, "transformer_2": low}, config)
    tuned = save_pipeline(tmp_path / "tuned", {"transformer": high_t, "transformer_2": low_t}, config)
    report = extract_lora(base, tuned, tmp_path / "l.safetensors", rank=R, to="original", dtype=torch.float32,
                          progress=False)  # fmt: skip
    lora = read_lora(report.outputs[0])
    assert set(lora.experts) == {"high", "low"}
    for expert, truth in (("high", high_truth), ("low", low_truth)):
        m = "blocks.1.ffn.net.0.proj"
        d = truth[m + ".weight"].double()
        assert float((_lora_delta(lora.experts[expert], m) - d).norm() / d.norm()) < 2e-5
    split = extract_lora(base, tuned, tmp_path / "s.safetensors", rank=R, experts="split", progress=False)
    assert [read_lora(p).variant.expert for p in split.outputs] == ["high", "low"]


def test_refusals_and_projection(tmp_path):
    base, tuned, _ = _pair(tmp_path, "wan-t2v", "diffusers")
    with pytest.raises(VidloraError, match="identical"):
        extract_lora(base, base, tmp_path / "x.safetensors", progress=False)
    other = save(tmp_path / "hy.safetensors", _state("hunyuan-t2v"))
    with pytest.raises(VidloraError, match="one family"):
        extract_lora(base, other, tmp_path / "x.safetensors", progress=False)
    report = extract_lora(base, tuned, tmp_path / "l.safetensors", rank=4, progress=False)
    rate = report.seconds_per_element()
    assert rate > 0
    # no Linear of the tiny model has a 14B shape: every one is projected by its size
    weights_14b = sum(m.in_features * m.out_features for m in meta_transformer("wan2.1-t2v-14b").modules()
                      if isinstance(m, torch.nn.Linear))  # fmt: skip
    assert report.projected_seconds("wan2.1-t2v-14b") == pytest.approx(rate * weights_14b, rel=1e-9)
    with pytest.raises(VidloraError, match="exists"):
        extract_lora(base, tuned, tmp_path / "l.safetensors", rank=4, progress=False)
    with pytest.raises(VidloraError, match="include_diff needs a naming with diff keys"):
        extract_lora(base, tuned, tmp_path / "d.safetensors", to="diffusers", include_diff=True, progress=False)


_CHILD = textwrap.dedent("""
    import resource, sys
    headroom, size = int(sys.argv[3]), int(sys.argv[5])
    import torch
    from vidlora.lora.tools.extract import extract_lora
    # RLIMIT_DATA counts what is allocated already (~230 MB: the interpreter, torch, and a fresh
    # checkout's bytecode compiled on import): the limit is that plus the headroom, and stays
    # below one checkpoint's size
    used = int(open("/proc/self/status").read().split("VmData:")[1].split("kB")[0]) * 1024
    limit = used + headroom
    print("limit", limit, flush=True)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    report = extract_lora(sys.argv[1], sys.argv[2], sys.argv[4], rank=8, progress=False)
    print("worst", max(report.errors.values()), "modules", len(report.errors))
    try:  # the control, after the run (a failed huge allocation leaves glibc's heap poorer)
        torch.empty(size, dtype=torch.uint8)
        print("control-fits")
    except RuntimeError:
        print("control-refused")
""")


def _synthetic(folder, blocks, width, ffn):
    """A base and a tuned original-names Wan checkpoint of block Linears only, fp16. The
    blocks repeat one random block (cheap to make: memory copies); the tuned file adds a
    rank-4 delta to every block's ffn.0 and self_attn.q, the rest is identical."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    shapes = {"self_attn.q": (width, width), "self_attn.k": (width, width), "self_attn.v": (width, width),
              "self_attn.o": (width, width), "cross_attn.q": (width, width), "cross_attn.o": (width, width),
              "ffn.0": (ffn, width), "ffn.2": (width, ffn)}  # fmt: skip
    one = {name: torch.randn(shape, generator=gen).half() for name, shape in shapes.items()}
    base = {f"blocks.{i}.{n}.weight": t.clone() for i in range(blocks) for n, t in one.items()}
    save_file(base, folder / "base.safetensors")
    tuned = base
    for i in range(blocks):
        for n in ("ffn.0", "self_attn.q"):
            t = one[n].float()
            d = torch.randn(t.shape[0], 4, generator=gen) @ torch.randn(4, t.shape[1], generator=gen)
            tuned[f"blocks.{i}.{n}.weight"] = (t + 0.05 * d).half()
    save_file(tuned, folder / "tuned.safetensors")
    return folder / "base.safetensors", folder / "tuned.safetensors"


@pytest.mark.slow
def test_extract_under_a_data_limit_below_the_model_size(tmp_path):
    """RSS would count the mmapped file pages; RLIMIT_DATA counts what the process
    allocates. One checkpoint is ~470 MB; the child may allocate 160 MB beyond what it holds
    after its imports (~230 MB), ~390 MB in all."""
    width, ffn, blocks = 1024, 4096, 16
    base, tuned = _synthetic(tmp_path, blocks, width, ffn)
    size = os.path.getsize(base)
    headroom = 160 << 20  # a few layers: one FFN Linear is 16 MB in fp32 here
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    args = [sys.executable, "-c", _CHILD, str(base), str(tuned), str(headroom), str(tmp_path / "l.safetensors"), str(size)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = {line.partition(" ")[0]: line.partition(" ")[2] for line in out.stdout.splitlines()}
    assert int(lines["limit"]) < size  # the whole process may hold less than one checkpoint
    assert "control-refused" in out.stdout  # the limit bites: one checkpoint's bytes do not fit
    worst = float(lines["worst"].split()[0])
    assert worst < 0.1  # rank-4 deltas in fp16 weights: recovered up to the fp16 rounding of the checkpoints
    assert len(read_lora(tmp_path / "l.safetensors").modules) == blocks * 2
