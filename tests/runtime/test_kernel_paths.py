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
    shapes = h.kernel_shapes(100)
    units = [m for m in model.modules() if isinstance(m, vidlora.runtime.unit.LoRALinear)]
    assert {(s.n, s.k) for s in shapes} == {(u.out_features, u.in_features) for u in units}
    assert all(s.m == 100 and s.r == 0 and s.dtype == torch.float32 and s.fp8 is None for s in shapes)
    h.add(lora, name="a")
    after = {(s.n, s.k, s.r) for s in h.kernel_shapes(100)}
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
