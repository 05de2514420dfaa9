"""Where diffusers reads the scheme (Wan VACE, SkyReels V2, Wan Animate, FramePack), two
stacked files through vidlora equal diffusers + PEFT (``load_lora_weights`` +
``set_adapters``) on the same files. (HunyuanVideo 1.5 has no diffusers LoRA loader.)"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

import vidlora

from helpers.family_models import family_inputs, family_model, pristine
from helpers.format_cases import load_with_diffusers
from helpers.models import run
from helpers.writers import random_truth, write_lora


def _linears(model, *prefixes):
    return [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n.startswith(prefixes)]


# kind -> ((scheme, LoRA module prefixes) per file): diffusers' converters read the blocks of
# original / kohya files; its diffusers-named ones may carry the families' own groups
CASES = {
    "wan-vace": (("W4", ("blocks.", "vace_blocks.")), ("W2", ("blocks.",))),
    "skyreels-v2": (("W4", ("blocks.", "fps_projection.")), ("W2", ("blocks.",))),
    "wan-animate": (("W4", ("blocks.", "face_adapter.")), ("W1", ("blocks.",))),
    "framepack": (("H5", ("transformer_blocks.", "image_projection.")), ("H5", ("single_transformer_blocks.",))),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_two_stacked_files_equal_diffusers_peft(tmp_path, kind):
    model = family_model(kind)
    inputs = family_inputs(kind)
    files = {}
    for i, (scheme, prefixes) in enumerate(CASES[kind]):
        truth = random_truth(pristine(kind), seed=20 + i, paths=_linears(model, *prefixes), rank=3 + i,
                             alpha=None if scheme in ("W4", "H5") else 2.0)  # fmt: skip
        files[f"a{i}"] = write_lora(tmp_path / f"a{i}.safetensors", truth, scheme)
    weights = {"a0": 0.8, "a1": -0.6}
    theirs = run(load_with_diffusers(pristine(kind), files, weights), inputs)
    base = run(model, inputs)
    h = vidlora.attach(model)
    for name, path in files.items():
        h.add(path, weight=weights[name])
    ours = run(model, inputs)
    assert (ours - base).abs().max() > 1e-2
    torch.testing.assert_close(ours, theirs, atol=3e-5, rtol=1e-4)
