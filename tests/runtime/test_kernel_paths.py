"""The runtime's view of the kernels' first-use path choice: the shape classes a model
uses, the choices that concern it in ``h.report()``, and warm-up refusing a CPU model."""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.app.tiny import tiny_transformer
from vidlora.errors import VidloraError
from vidlora.kernels import ShapeCase
from vidlora.model import inventory

from helpers.models import linear_paths, random_lora


def test_kernel_shapes_follow_the_units_and_their_stacks():
    model = tiny_transformer("wan-t2v")
    lora = random_lora(model, 1, inventory(model).family, rank=5, paths=linear_paths(model))
    h = vidlora.attach(model)
    shapes = h.kernel_shapes(100, context_tokens=7)
    units = [m for m in model.modules() if isinstance(m, vidlora.runtime.unit.LoRALinear)]
    assert {(s.n, s.k) for s in shapes} == {(u.out_features, u.in_features) for u in units}
    assert all(s.r == 0 and s.dtype == torch.float32 and s.fp8 is None for s in shapes)
    # each Linear at the rows it sees: cross-attention k/v read the text tokens
    kv = model.blocks[0].attn2.to_kv
    assert {s.m for s in shapes if (s.n, s.k) == (kv.out_features, kv.in_features)} == {7}
    assert {s.m for s in shapes if (s.n, s.k) != (kv.out_features, kv.in_features)} == {100}
    assert {(s.n, s.k) for s in h.kernel_shapes(100)} == {(s.n, s.k) for s in shapes if s.m == 100}  # no context count: left out
    assert {s.r for s in h.kernel_shapes(100, 7, ranks=(0, 8))} == {0, 16, 32}  # 8 per part: 24 on q/k/v -> 32
    h.add(lora, name="a")
    after = {(s.n, s.k, s.r) for s in h.kernel_shapes(100, context_tokens=7)}
    # the stored (bucketed to 16) rank is what the kernel sees: 5 per projection, 15 on q/k/v
    assert after == {(u.out_features, u.in_features, u.stack.stored_rank) for u in units}
    assert {r for _, _, r in after} <= {16, 32} and all(r > 0 for _, _, r in after)
    assert all(isinstance(s, ShapeCase) for s in shapes)


def test_report_lists_only_this_models_kernel_choices(monkeypatch):
    model = tiny_transformer("wan-t2v")
    h = vidlora.attach(model)
    unit = next(m for m in model.modules() if isinstance(m, vidlora.runtime.unit.LoRALinear))
    ours = {"op": "lora_linear", "n": unit.out_features, "k": unit.in_features, "m_bucket": 128, "r_bucket": 16,
            "chosen": "triton.classic.shrink_expand", "timings_ms": {"triton.classic.shrink_expand": 0.5, "torch": 0.7},
            "excluded": {"triton.persistent.fused": "wrong result"}, "source": "measured"}
    other = dict(ours, n=5120, k=5120)
    monkeypatch.setattr("vidlora.kernels.path_choices", lambda: [ours, other])
    monkeypatch.setattr("vidlora.runtime.kernel_paths.on_cuda", lambda patched: True)
    report = h.report()
    assert report["kernel_paths"] == [ours]
    text = str(report)
    assert "triton.classic.shrink_expand 0.500 ms (measured, 1 excluded)" in text
    monkeypatch.setattr("vidlora.runtime.kernel_paths.on_cuda", lambda patched: False)
    assert h.report()["kernel_paths"] == []  # CPU models run the torch reference: nothing chosen


def test_warm_up_needs_a_gpu():
    h = vidlora.attach(tiny_transformer("wan-t2v"))
    with pytest.raises(VidloraError, match="warm_up measures GPU kernel paths"):
        h.warm_up(64)


def test_the_specs_say_which_rows_each_linear_reads():
    from vidlora.model import spec_for_arch

    wan, hy = spec_for_arch("wan"), spec_for_arch("hunyuan-video")
    assert [wan.input_rows(f"blocks.3.{p}") for p in ("attn1.to_q", "attn2.to_q", "attn2.to_k", "attn2.add_v_proj",
                                                         "ffn.net.2")] == ["video", "video", "context", "context", "video"]  # fmt: skip
    assert [hy.input_rows(p) for p in ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.add_k_proj",
                                       "transformer_blocks.0.ff_context.net.2", "transformer_blocks.0.norm1.linear",
                                       "single_transformer_blocks.2.norm.linear", "single_transformer_blocks.2.proj_mlp",
                                       "proj_out")] == ["video", "context", "context", "one", "one", "video", "video"]  # fmt: skip
