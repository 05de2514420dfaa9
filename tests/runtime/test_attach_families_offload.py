"""Offloading on the derived families (VACE, SkyReels V2, Wan Animate, FramePack,
HunyuanVideo 1.5): attach first, offload after, as the CLI does. On CPU the hooks still
have to find and move every tensor of the units (group offloading records them at setup;
sequential offload keeps them on the meta device between forwards), and the result must
equal the merged-weights reference, before and after an add made under the hooks."""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.runtime.unit import LoRALinear

from helpers.family_models import family_inputs, family_model, pristine
from helpers.merged import merged_stack
from helpers.models import run
from helpers.writers import random_truth, write_lora

KINDS = ["wan-vace", "skyreels-v2", "wan-animate", "framepack", "hunyuan1.5"]
_BLOCKS = ("blocks.", "vace_blocks.", "transformer_blocks.", "single_transformer_blocks.")


def _scheme(kind):
    return "W4" if kind in ("wan-vace", "skyreels-v2", "wan-animate") else "H5"


def _truths(kind):
    model = pristine(kind)
    paths = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n.startswith(_BLOCKS)]
    return (random_truth(model, seed=21, paths=paths, alpha=2.0),
            random_truth(model, seed=22, paths=paths[::2], rank=3))  # fmt: skip


def _close(model, kind, stack):
    ref = run(merged_stack(pristine(kind), stack), family_inputs(kind))
    torch.testing.assert_close(run(model, family_inputs(kind)), ref, atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_group_offloading_after_attach(tmp_path, kind):
    from diffusers.hooks import apply_group_offloading

    model = family_model(kind)
    a, b = _truths(kind)
    h = vidlora.attach(model)
    h.add(write_lora(tmp_path / "a.safetensors", a, _scheme(kind)), weight=0.6)
    apply_group_offloading(model, onload_device=torch.device("cpu"), offload_device=torch.device("cpu"),
                           offload_type="block_level", num_blocks_per_group=1)  # fmt: skip
    tracked = set()
    for m in model.modules():
        registry = getattr(m, "_diffusers_hook", None)
        hook = registry.get_hook("group_offloading") if registry is not None else None
        if hook is not None:
            for mod in hook.group.modules:
                tracked |= {id(t) for t in (*mod.parameters(), *mod.buffers())}
            tracked |= {id(t) for t in (*hook.group.parameters, *hook.group.buffers)}
    units = [(n, u) for n, u in model.named_modules() if isinstance(u, LoRALinear)]
    assert units
    for name, unit in units:
        for t in (unit.weight, unit.lora_a, unit.lora_b, unit.lora_scale):
            assert id(t) in tracked, name
    _close(model, kind, [(a, 0.6)])
    h.add(write_lora(tmp_path / "b.safetensors", b, _scheme(kind)), weight=-0.4)  # grows stacks under the hooks
    _close(model, kind, [(a, 0.6), (b, -0.4)])


@pytest.mark.parametrize("kind", ["wan-vace", "hunyuan1.5"])
def test_sequential_offload_after_attach(tmp_path, kind):
    accelerate = pytest.importorskip("accelerate")
    model = family_model(kind)
    a, b = _truths(kind)
    h = vidlora.attach(model)
    h.add(write_lora(tmp_path / "a.safetensors", a, _scheme(kind)), weight=0.6)
    accelerate.cpu_offload(model, execution_device=torch.device("cpu"))
    assert all(u.weight.device.type == "meta" for u in model.modules() if isinstance(u, LoRALinear))
    _close(model, kind, [(a, 0.6)])
    h.set_weight(h.names[0], 0.3)
    h.add(write_lora(tmp_path / "b.safetensors", b, _scheme(kind)), weight=-0.4)
    _close(model, kind, [(a, 0.3), (b, -0.4)])
