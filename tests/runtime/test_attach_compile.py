"""torch.compile of patched tiny transformers: no graph break, and no recompilation when a
strength changes, an adapter is disabled, or one is added within the same rank bucket.

``backend="aot_eager"`` runs Dynamo's tracing (where graph breaks and recompiles happen)
without Inductor's code generation, which takes ~30 s per graph on 2 cores."""

from __future__ import annotations

import torch
import torch._dynamo
from torch._dynamo.utils import counters

import vidlora
from vidlora.app.tiny import tiny_transformer, tiny_transformer_inputs

from helpers.models import linear_paths, random_lora, run
from helpers.merged import merged_stack



def _loras(model, family, ranks):
    paths = linear_paths(model)
    return [
        random_lora(model, seed, family, rank={p: r for p in paths}, name=f"l{seed}", deltas=["blocks.0.norm2.weight"])
        for seed, r in enumerate(ranks, 1)
    ]


def test_whole_model_fullgraph_no_recompile_on_weight_disable_add_in_bucket():
    torch._dynamo.reset()
    counters.clear()
    kind = "wan-i2v"
    model = tiny_transformer(kind, seed=0)
    inputs = tiny_transformer_inputs(kind)
    a, b = _loras(model, "wan (width 24)", [2, 2])
    ref = merged_stack(model, [(a, 0.5), (b, 0.25)])
    h = vidlora.attach(model)
    h.add(a, weight=1.0)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        compiled(**inputs, return_dict=False)
        graphs = counters["stats"]["unique_graphs"]
        assert graphs >= 1
        h.set_weight(a.name, 0.5)
        compiled(**inputs, return_dict=False)
        h.disable(a.name)
        compiled(**inputs, return_dict=False)
        h.enable(a.name)
        h.add(b, weight=0.25)  # fused q/k/v: 3 x 2 + 3 x 2 = 12 ranks, still one bucket of 16
        out = compiled(**inputs, return_dict=False)[0]
    assert counters["stats"]["unique_graphs"] == graphs, "a strength/enable/in-bucket add recompiled"
    assert not counters["graph_break"], dict(counters["graph_break"])
    torch.testing.assert_close(out, run(ref, inputs), atol=2e-5, rtol=1e-4)


def test_regional_compile_schedule_steps_do_not_recompile():
    """Wan users compile the repeated blocks; the step hook stays outside them."""
    torch._dynamo.reset()
    counters.clear()
    kind = "wan-t2v"
    model = tiny_transformer(kind, seed=0)
    inputs = tiny_transformer_inputs(kind)
    (a,) = _loras(model, "wan (width 24)", [4])
    h = vidlora.attach(model)
    h.add(a, weight=[1.0, 0.3, -0.5])
    for i, block in enumerate(model.blocks):
        model.blocks[i] = torch.compile(block, backend="aot_eager", fullgraph=True)
    outs = []
    for step in range(3):
        h.set_step(step, 3)
        outs.append(run(model, inputs))
    graphs = counters["stats"]["unique_graphs"]
    for step in range(3):
        h.set_step(step, 3)
        torch.testing.assert_close(run(model, inputs), outs[step], atol=0, rtol=0)
    assert counters["stats"]["unique_graphs"] == graphs
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert not torch.allclose(outs[0], outs[2])

