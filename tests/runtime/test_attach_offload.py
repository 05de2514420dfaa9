"""Patched units under diffusers' / accelerate's CPU offloading (on CPU: the hooks must
find and move every tensor of the units, and deltas must reach the offloaded copies)."""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.errors import VidloraError
from vidlora.model import inventory
from vidlora.runtime.unit import LoRALinear
from vidlora.app.tiny import tiny_transformer, tiny_transformer_inputs

from helpers.models import random_lora, run
from helpers.merged import merged_stack

KIND = "wan-i2v"
DELTAS = ["blocks.0.norm2.weight", "blocks.0.attn1.to_q.bias", "blocks.1.scale_shift_table"]


def _setup():
    model = tiny_transformer(KIND, seed=0)
    a = random_lora(model, 1, inventory(model).family, deltas=DELTAS, name="a")
    b = random_lora(model, 2, inventory(model).family, deltas=DELTAS[:1], name="b", rank=9)
    return model, a, b, tiny_transformer_inputs(KIND)


def test_sequential_offload_moves_units_and_deltas_reach_the_offloaded_copies():
    accelerate = pytest.importorskip("accelerate")
    model, a, b, inputs = _setup()
    ref = tiny_transformer(KIND, seed=0)
    h = vidlora.attach(model)
    h.add(a, weight=0.5)
    accelerate.cpu_offload(model, execution_device=torch.device("cpu"))
    unit = model.blocks[0].attn1.to_qkv
    assert unit.weight.device.type == "meta"  # offloaded between forwards: the hook manages it
    torch.testing.assert_close(run(model, inputs), run(merged_stack(ref, [(a, 0.5)]), inputs), atol=2e-5, rtol=1e-4)
    # re-weight and add after offloading: the deltas are written into the hooks' weights_map
    h.set_weight("a", 0.25)
    h.add(b, weight=-1.0)
    torch.testing.assert_close(
        run(model, inputs), run(merged_stack(ref, [(a, 0.25), (b, -1.0)]), inputs), atol=2e-5, rtol=1e-4
    )


def test_model_offload_moves_stack_buffers_with_the_module():
    """enable_model_cpu_offload moves the transformer with .to(): the stacks must follow."""
    model, a, _, _ = _setup()
    h = vidlora.attach(model)
    h.add(a)
    model.to("meta")  # what the offload hook does, with a device that exists here
    for m in model.modules():
        if isinstance(m, LoRALinear):
            assert {t.device.type for t in (m.weight, m.lora_a, m.lora_b, m.lora_scale)} == {"meta"}


def test_group_offloading_tracks_the_stack_buffers():
    from diffusers.hooks import apply_group_offloading

    model, a, b, inputs = _setup()
    ref = tiny_transformer(KIND, seed=0)
    h = vidlora.attach(model)
    h.add(a, weight=0.5)
    apply_group_offloading(model, onload_device=torch.device("cpu"), offload_device=torch.device("cpu"),
                           offload_type="block_level", num_blocks_per_group=1)
    group_tensors = set()
    for m in model.modules():
        registry = getattr(m, "_diffusers_hook", None)
        hook = registry.get_hook("group_offloading") if registry is not None else None
        if hook is not None:
            for mod in hook.group.modules:
                group_tensors |= {id(t) for t in mod.parameters()} | {id(t) for t in mod.buffers()}
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear) and name.startswith("blocks."):
            for t in (m.weight, m.lora_a, m.lora_b, m.lora_scale):
                assert id(t) in group_tensors, name
    torch.testing.assert_close(run(model, inputs), run(merged_stack(ref, [(a, 0.5)]), inputs), atol=2e-5, rtol=1e-4)
    h.add(b, weight=0.3)  # grows stacks in place: same buffer objects, still tracked
    torch.testing.assert_close(
        run(model, inputs), run(merged_stack(ref, [(a, 0.5), (b, 0.3)]), inputs), atol=2e-5, rtol=1e-4
    )


def test_attach_after_offloading_is_refused():
    from diffusers.hooks import apply_group_offloading

    model, *_ = _setup()
    apply_group_offloading(model, onload_device=torch.device("cpu"), offload_device=torch.device("cpu"),
                           offload_type="leaf_level")
    with pytest.raises(VidloraError, match="before enabling offloading"):
        vidlora.attach(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
