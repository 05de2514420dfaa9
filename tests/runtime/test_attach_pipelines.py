"""attach on whole tiny diffusers pipelines: Wan 2.2 expert routing, and strength schedules
driven by a real denoising loop (with classifier-free guidance: two transformer calls per
step) against the same weights changed by hand between steps."""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.errors import LoRAMismatchError, VidloraError
from vidlora.model import inventory
from vidlora.runtime.unit import LoRALinear
from vidlora.lora.lora_file import LoRAFile, Variant
from vidlora.app.tiny import build_tiny_pipeline

from helpers.models import random_lora


@pytest.fixture(scope="module")
def pipe22():
    return build_tiny_pipeline("wan2.2-t2v-a14b")


@pytest.fixture(scope="module")
def pipe_t2v():
    return build_tiny_pipeline("wan-t2v")


def _lora_for(model, seed, name, expert=None):
    lora = random_lora(model, seed, inventory(model).family, name=name, deltas=["blocks.0.scale_shift_table"])
    if expert:
        lora.variant = Variant(expert=expert, evidence=[f"file name says {expert}_noise"])
    return lora


def _slots(model, name):
    return sum(1 for m in model.modules() if isinstance(m, LoRALinear) and m.stack.slot(name) is not None)


def test_wan22_experts_routing(pipe22):
    t1, t2 = pipe22.transformer, pipe22.transformer_2
    loras = {n: _lora_for(t1, s, n) for s, n in enumerate(["hi", "lo", "both", "auto_hi"], 1)}
    loras["auto_hi"].variant = Variant(expert="high", evidence=["modelspec.timestep_range 875,1000"])
    h = vidlora.attach(pipe22)
    try:
        h.add(loras["hi"], expert="high")
        h.add(loras["lo"], expert="low")
        h.add(loras["both"])
        h.add(loras["auto_hi"])
        assert _slots(t1, "hi") > 0 and _slots(t2, "hi") == 0
        assert _slots(t1, "lo") == 0 and _slots(t2, "lo") > 0
        assert _slots(t1, "both") > 0 and _slots(t2, "both") > 0
        assert _slots(t1, "auto_hi") > 0 and _slots(t2, "auto_hi") == 0
        rep = {a["name"]: a for a in h.report()["adapters"]}
        assert rep["auto_hi"]["models"] == ["transformer"] and "timestep_range" in rep["auto_hi"]["expert"]
        assert rep["both"]["models"] == ["transformer", "transformer_2"] and "no expert signal" in rep["both"]["expert"]
        with pytest.raises(VidloraError, match="expert="):
            h.add(loras["hi"], name="x", expert="middle")
    finally:
        h.detach()


def test_combo_file_splits_over_experts(pipe22):
    t1 = pipe22.transformer
    high, low = _lora_for(t1, 7, "c"), _lora_for(t1, 8, "c")
    combo = LoRAFile(path="/virtual/combo.safetensors", scheme="W6", arch="wan", family=high.family,
                     width=high.width, experts={"high": high, "low": low})
    h = vidlora.attach(pipe22)
    try:
        h.add(combo)
        unit1 = pipe22.transformer.blocks[0].ffn.net[2]
        unit2 = pipe22.transformer_2.blocks[0].ffn.net[2]
        path = "blocks.0.ffn.net.2"
        assert torch.equal(unit1.lora_a[: high.modules[path].rank], high.modules[path].down)
        assert torch.equal(unit2.lora_a[: low.modules[path].rank], low.modules[path].down)
        h.remove("combo")
        h.add(combo, expert="low")
        assert _slots(pipe22.transformer, "combo") == 0 and _slots(pipe22.transformer_2, "combo") > 0
    finally:
        h.detach()


def test_expert_on_single_transformer_is_an_error(pipe_t2v):
    lora = _lora_for(pipe_t2v.transformer, 1, "a")
    h = vidlora.attach(pipe_t2v)
    try:
        with pytest.raises(VidloraError, match="one transformer"):
            h.add(lora, expert="low")
        combo = LoRAFile(path="/virtual/combo.safetensors", scheme="W6", arch="wan", family=lora.family,
                         width=lora.width, experts={"high": lora, "low": lora})
        with pytest.raises(LoRAMismatchError, match="both Wan 2.2 A14B experts"):
            h.add(combo)
    finally:
        h.detach()


def _generate(pipe, callback=None, steps=3):
    kwargs = {}
    if callback is not None:
        kwargs = dict(callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"])
    out = pipe(
        prompt="a red fox", negative_prompt="blur", num_frames=5, height=32, width=32,
        num_inference_steps=steps, guidance_scale=4.0, output_type="latent",
        generator=torch.Generator().manual_seed(0), **kwargs,
    )
    return out.frames


@pytest.mark.parametrize("kind", ["wan-t2v", "wan2.2-t2v-a14b"])
def test_schedule_in_a_pipeline_run_equals_weights_changed_by_hand(kind, pipe_t2v, pipe22):
    pipe = pipe_t2v if kind == "wan-t2v" else pipe22
    lora = _lora_for(pipe.transformer, 3, "m")
    values = [1.2, 0.4, -0.6]
    h = vidlora.attach(pipe)
    try:
        h.add(lora, weight=values)
        scheduled = _generate(pipe)
        h.set_weight("m", lambda step, n: values[step])
        scheduled_callable = _generate(pipe)

        # by hand: constant weight, changed after each step by the user's own callback
        h.set_weight("m", values[0])

        def by_hand(p, step, t, kw):
            if step + 1 < len(values):
                h.set_weight("m", values[step + 1])
            return kw

        manual = _generate(pipe, by_hand)
        h.set_weight("m", 1.2)
        constant = _generate(pipe)
    finally:
        h.detach()
    torch.testing.assert_close(scheduled, manual, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(scheduled_callable, manual, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(scheduled, constant, atol=1e-4)  # the schedule did something
