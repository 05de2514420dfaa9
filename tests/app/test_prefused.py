"""The prefused transformer loader: the same model diffusers loads (every parameter and
buffer bit for bit, same dtypes, same output), with each fusion group's weights adjacent
rows of one tensor, and a fallback to diffusers for folders it does not handle."""

from __future__ import annotations

import json

import pytest
import torch

from vidlora.app.pipelines.prefused import fusion_groups, load_prefused_transformer
from vidlora.app.tiny import tiny_pipeline_dir, tiny_transformer_inputs


def _diffusers(folder, dtype):
    import diffusers

    cls = getattr(diffusers, json.loads((folder / "config.json").read_text())["_class_name"])
    return cls.from_pretrained(folder, dtype=dtype)


def _same_state(a, b):
    sa, sb = dict(a.named_parameters()), dict(b.named_parameters())
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and sa[k].device == sb[k].device, k
        assert torch.equal(sa[k], sb[k]), k
        assert sa[k].requires_grad == sb[k].requires_grad, k
    ba, bb = dict(a.named_buffers()), dict(b.named_buffers())
    assert ba.keys() == bb.keys() and all(torch.equal(ba[k], bb[k]) and ba[k].dtype == bb[k].dtype for k in ba)


def _adjacent(tensors) -> bool:
    first = tensors[0]
    step, rows = (first.stride(0) if first.dim() > 1 else 1), 0
    for t in tensors:
        if t.untyped_storage().data_ptr() != first.untyped_storage().data_ptr():
            return False
        if t.storage_offset() != first.storage_offset() + rows * step:
            return False
        rows += t.shape[0]
    return True


@pytest.mark.parametrize("kind,dtype", [("wan-i2v", torch.float32), ("wan-i2v", torch.bfloat16),
                                        ("hunyuan-t2v", torch.bfloat16)])  # fmt: skip
def test_same_model_as_diffusers_with_groups_in_one_buffer(kind, dtype):
    folder = tiny_pipeline_dir(kind) / "transformer"
    ours, theirs = load_prefused_transformer(folder, dtype), _diffusers(folder, dtype)
    assert type(ours) is type(theirs)
    assert {k: v for k, v in ours.config.items() if k != "_name_or_path"} == {
        k: v for k, v in theirs.config.items() if k != "_name_or_path"}
    assert str(ours.config._name_or_path) == str(theirs.config._name_or_path)
    _same_state(ours, theirs)
    groups = fusion_groups(ours)
    if kind.startswith("wan"):  # q/k/v, cross k/v, image k/v in each of 3 blocks
        assert sorted(len(g) for g in groups) == [2] * 6 + [3] * 3
    for paths in groups:
        lins = [ours.get_submodule(p) for p in paths]
        assert _adjacent([lin.weight for lin in lins]) and _adjacent([lin.bias for lin in lins]), paths
    inputs = tiny_transformer_inputs("wan-i2v" if kind.startswith("wan") else kind, dtype=dtype)
    with torch.no_grad():
        assert torch.equal(ours(**inputs, return_dict=False)[0], theirs(**inputs, return_dict=False)[0])


def test_attach_on_a_prefused_model_matches_and_detaches_exactly(tmp_path):
    import vidlora
    from vidlora.app.tiny import write_demo_assets

    folder = tiny_pipeline_dir("wan-i2v") / "transformer"
    ours, theirs = load_prefused_transformer(folder, torch.float32), _diffusers(folder, torch.float32)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    files = write_demo_assets(tmp_path)
    inputs = tiny_transformer_inputs("wan-i2v")
    outs = []
    for model in (ours, theirs):
        h = vidlora.attach(model)
        h.add(str(files["motion"]), weight=0.8)
        with torch.no_grad():
            outs.append(model(**inputs, return_dict=False)[0])
        h.detach()
    assert torch.equal(outs[0], outs[1])
    after = ours.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_folders_it_does_not_handle_fall_back(tmp_path):
    import shutil

    src = tiny_pipeline_dir("wan-t2v") / "transformer"
    extra = tmp_path / "extra-key"
    shutil.copytree(src, extra)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(extra / "diffusion_pytorch_model.safetensors"))
    save_file({**tensors, "blocks.0.unknown.weight": torch.zeros(1)}, str(extra / "diffusion_pytorch_model.safetensors"))
    assert load_prefused_transformer(extra, torch.float32) is None  # diffusers decides what to do with it
    (tmp_path / "no-weights").mkdir()
    shutil.copy(src / "config.json", tmp_path / "no-weights" / "config.json")
    assert load_prefused_transformer(tmp_path / "no-weights", torch.float32) is None


def test_load_pipeline_with_prefuse_generates_the_same_video():
    from vidlora.app.pipelines import generate, load_pipeline
    from vidlora.app.pipelines.loading import runtime_adopts_prefused

    pipe, info = load_pipeline("tiny:wan-t2v", "t2v", prefuse=True)
    q, k, v = (getattr(pipe.transformer.blocks[0].attn1, n).weight for n in ("to_q", "to_k", "to_v"))
    assert _adjacent([q, k, v])
    plain, _ = load_pipeline("tiny:wan-t2v", "t2v", prefuse=False)
    assert not _adjacent([getattr(plain.transformer.blocks[0].attn1, n).weight for n in ("to_q", "to_k", "to_v")])
    kwargs = dict(prompt="x", frames=5, width=32, height=32, steps=2, guidance=5.0, progress=False)
    assert (generate(pipe, info, **kwargs) == generate(plain, info, **kwargs)).all()
    assert isinstance(runtime_adopts_prefused(), bool)
