"""Model families: inventories of tiny and real (meta-device) models, block layout,
real configs, and rank-1 LoRA files at real widths accepted by the right model and
refused, both sides named, by the wrong one."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.format_cases import tiny
from helpers.writers import random_truth, write_lora
from vidlora.errors import LoRAMismatchError, SourceError
from vidlora.model import HUB_MODEL_IDS, REAL_CONFIGS, spec_for_arch, block_index, block_linear_paths, describe, family_label, inventory, meta_transformer, module_kind
from vidlora.app.model_configs import transformer_config_from
from vidlora.lora import match_lora, read_lora

# name -> (family, width, task, version, n_double, n_blocks, (ffn in -> out))
REAL = {
    "wan2.1-t2v-1.3b": ("wan-1.3b", 1536, "t2v", "2.1", 30, 30, (1536, 8960)),
    "wan2.1-t2v-14b": ("wan-14b", 5120, "t2v", None, 40, 40, (5120, 13824)),
    "wan2.1-i2v-14b-480p": ("wan-14b", 5120, "i2v", "2.1", 40, 40, (5120, 13824)),
    "wan2.2-ti2v-5b": ("wan-5b", 3072, None, "2.2", 30, 30, (3072, 14336)),
    "wan2.2-t2v-a14b": ("wan-14b", 5120, "t2v", None, 40, 40, (5120, 13824)),
    "wan2.2-i2v-a14b": ("wan-14b", 5120, "i2v", "2.2", 40, 40, (5120, 13824)),
    "hunyuan-video-t2v": ("hunyuan-video", 3072, "t2v", None, 20, 60, (3072, 12288)),
    "hunyuan-video-i2v": ("hunyuan-video", 3072, "i2v", None, 20, 60, (3072, 12288)),
    "hunyuan-video-i2v-33ch": ("hunyuan-video", 3072, "i2v", None, 20, 60, (3072, 12288)),
}


@pytest.fixture(scope="module")
def real_models():
    return {name: meta_transformer(name) for name in REAL}


@pytest.fixture(scope="module")
def real_inventories(real_models):
    return {name: inventory(m) for name, m in real_models.items()}


def test_real_configs_cover_the_contract():
    assert set(REAL) <= set(REAL_CONFIGS)
    assert set(HUB_MODEL_IDS.values()) <= set(REAL_CONFIGS)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_inventory(real_models, real_inventories, name):
    family, width, task, version, n_double, n_blocks, ffn = REAL[name]
    inv = real_inventories[name]
    assert next(real_models[name].parameters()).device.type == "meta"
    assert (inv.family, inv.width, inv.task, inv.version, inv.n_double, inv.n_blocks) == (
        family, width, task, version, n_double, n_blocks,
    )
    if inv.arch == "wan":
        lin = inv.linears["blocks.0.ffn.net.0.proj"]
        assert (lin.in_features, lin.out_features) == ffn
        has_image = "blocks.0.attn2.add_k_proj" in inv.linears
        assert has_image == (name == "wan2.1-i2v-14b-480p")
        assert len(block_linear_paths(inv)) == n_blocks * (12 if has_image else 10)
    else:
        lin = inv.linears["single_transformer_blocks.0.proj_mlp"]
        assert (lin.in_features, lin.out_features) == ffn
        assert inv.linears["single_transformer_blocks.39.proj_out"].in_features == 3072 + 12288
        assert len(block_linear_paths(inv)) == 20 * 14 + 40 * 6  # incl. the adaLN modulation Linears
    assert describe(inv) == f"{family_label(family)} (width {width})"


def test_describe_names():
    assert family_label("wan-1.3b") == "Wan 1.3B" and family_label("wan-5b") == "Wan 5B"
    assert family_label("wan-14b") == "Wan 14B" and family_label("hunyuan-video") == "HunyuanVideo"
    assert describe(inventory(tiny("wan-t2v"))) == "Wan (width 24)"
    assert describe(inventory(tiny("hunyuan-t2v"))) == "HunyuanVideo (width 20)"


def test_tiny_inventories():
    t2v, i2v, hy = (inventory(tiny(k)) for k in ("wan-t2v", "wan-i2v", "hunyuan-t2v"))
    assert (t2v.arch, t2v.family, t2v.width, t2v.task, t2v.version) == ("wan", "wan (width 24)", 24, "t2v", None)
    assert (i2v.task, i2v.version) == ("i2v", "2.1")  # image_dim set: Wan 2.1's CLIP branch
    assert (hy.arch, hy.family, hy.width, hy.task, hy.n_double, hy.n_blocks) == (
        "hunyuan-video", "hunyuan-video (width 20)", 20, "t2v", 2, 4,
    )
    lin = i2v.linears["blocks.1.attn2.add_k_proj"]
    assert (lin.in_features, lin.out_features, lin.has_bias) == (24, 24, True)
    assert i2v.params["blocks.0.scale_shift_table"] == (1, 6, 24)
    assert len(block_linear_paths(t2v)) == 30 and len(block_linear_paths(i2v)) == 36
    assert len(block_linear_paths(hy)) == 2 * 14 + 2 * 6
    assert "transformer_blocks.0.norm1.linear" in block_linear_paths(hy)  # modulation: FP8 with the rest


def test_block_index():
    hy = inventory(tiny("hunyuan-t2v"))
    assert block_index(hy, "transformer_blocks.1.attn.to_q") == 1
    assert block_index(hy, "single_transformer_blocks.1.proj_out") == 3
    assert block_index(hy, "proj_out") is None
    assert block_index(hy, "context_embedder.token_refiner.refiner_blocks.0.attn.to_q") is None
    wan = inventory(tiny("wan-t2v"))
    assert block_index(wan, "blocks.2.attn1.to_q") == 2 and block_index(wan, "blocks.0.scale_shift_table") == 0
    assert block_index(wan, "scale_shift_table") is None


def test_module_kinds():
    assert module_kind("wan", "blocks.3.attn1.to_q") == "self-attn"
    assert module_kind("wan", "blocks.3.attn2.to_k") == "cross-attn"
    assert module_kind("wan", "blocks.3.attn2.add_v_proj") == "image cross-attn"
    assert module_kind("wan", "condition_embedder.image_embedder.ff.net.0.proj") == "image cross-attn"
    assert module_kind("wan", "blocks.3.ffn.net.2") == "ffn"
    assert module_kind("wan", "blocks.3.scale_shift_table") == "other"
    assert module_kind("hunyuan-video", "single_transformer_blocks.0.attn.to_k") == "self-attn"
    assert module_kind("hunyuan-video", "transformer_blocks.0.ff_context.net.2") == "ffn"
    assert module_kind("hunyuan-video", "single_transformer_blocks.0.proj_mlp") == "ffn"
    assert module_kind("hunyuan-video", "norm_out.linear") == "other"


def test_inventory_refuses_other_models():
    with pytest.raises(LoRAMismatchError, match="Linear is not supported"):
        inventory(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------ real-width files
_FILES = {  # file -> (config it is made for, scheme, expected family)
    "wan-1.3b": ("wan2.1-t2v-1.3b", "W2", "wan-1.3b"),
    "wan-14b-t2v": ("wan2.1-t2v-14b", "W3", "wan-14b"),
    "wan-14b-i2v": ("wan2.1-i2v-14b-480p", "W1", "wan-14b"),
    "wan-5b": ("wan2.2-ti2v-5b", "W4", "wan-5b"),
    "hunyuan": ("hunyuan-video-t2v", "H2", "hunyuan-video"),
}


@pytest.fixture(scope="module")
def real_files(tmp_path_factory, real_models):
    tmp = tmp_path_factory.mktemp("real")
    out = {}
    for name, (config, scheme, _) in _FILES.items():
        model = real_models[config]
        inv = inventory(model)
        last = inv.n_double - 1
        paths = [p for p in block_linear_paths(inv) if p.split(".")[1] in ("0", str(last))]
        truth = random_truth(model, seed=1, paths=paths, rank=1, alpha=1.0, share_fused_down=True)
        out[name] = read_lora(write_lora(tmp / f"{name}.safetensors", truth, scheme, dtype=torch.bfloat16))
    return out


@pytest.mark.parametrize("file", sorted(_FILES))
def test_real_width_family_detection(real_files, file):
    config, _, family = _FILES[file]
    lora = real_files[file]
    assert lora.family == family and lora.rank == 1
    assert lora.width == REAL[config][1]
    if file == "hunyuan":  # linear1 split at the real width: 3072 / 3072 / 3072 / 12288
        assert lora.modules["single_transformer_blocks.0.proj_mlp"].up.shape == (12288, 1)
        assert lora.modules["single_transformer_blocks.0.attn.to_v"].up.shape == (3072, 1)
    if file == "wan-14b-i2v":
        assert lora.variant.task == "i2v"


@pytest.mark.parametrize("model_name", sorted(REAL))
@pytest.mark.parametrize("file", sorted(_FILES))
def test_real_width_accept_or_refuse(real_files, real_inventories, file, model_name):
    lora, inv = real_files[file], real_inventories[model_name]
    if (lora.arch, lora.width) == (inv.arch, inv.width):
        report = match_lora(lora, inv)
        image_skips = [s for s in report.skipped if "no image branch" in s[1]]
        if file == "wan-14b-i2v" and "blocks.0.attn2.add_k_proj" not in inv.linears:
            assert len(image_skips) == 4  # k_img and v_img of blocks 0 and 39
        else:
            assert not image_skips
        assert len(report.linears) == len(lora.modules) - len(image_skips)
    elif spec_for_arch(lora.arch).lineage == inv.spec.lineage:  # same naming, another size
        with pytest.raises(LoRAMismatchError) as err:
            match_lora(lora, inv)
        assert (
            f"LoRA targets {family_label(lora.family)} (in_features {lora.width}); "
            f"the model is {family_label(inv.family)} ({inv.width})" in str(err.value)
        )
    else:  # another family: both named, the LoRA's with what tells it apart
        with pytest.raises(LoRAMismatchError) as err:
            match_lora(lora, inv)
        assert (
            f"LoRA targets {family_label(lora.family)} (width {lora.width}, {spec_for_arch(lora.arch).fingerprint}); "
            f"the model is {family_label(inv.family)} ({inv.width})" in str(err.value)
        )


# ------------------------------------------------------------------ configs
def test_config_from_local_folder(tmp_path):
    (tmp_path / "transformer").mkdir()
    config = dict(REAL_CONFIGS["wan2.1-t2v-1.3b"], num_layers=2)
    (tmp_path / "transformer" / "config.json").write_text(json.dumps(config))
    got = transformer_config_from(str(tmp_path))
    assert got["num_layers"] == 2
    assert inventory(meta_transformer(got)).n_blocks == 2
    assert transformer_config_from(str(tmp_path / "transformer"))["num_layers"] == 2


@pytest.fixture
def offline_hub(monkeypatch):
    import huggingface_hub

    calls = []

    def offline(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    return calls


def test_config_from_hub_only_fetches_the_config(monkeypatch, tmp_path):
    import huggingface_hub

    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(dict(REAL_CONFIGS["wan2.1-t2v-1.3b"], num_layers=7)))
    asked = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name, **kw: asked.append(name) or str(config_file))
    assert transformer_config_from("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")["num_layers"] == 7  # the Hub's, not built in
    assert asked == ["transformer/config.json"]


def test_config_from_known_ids_offline_falls_back(offline_hub):
    assert transformer_config_from("Wan-AI/Wan2.2-TI2V-5B-Diffusers") == REAL_CONFIGS["wan2.2-ti2v-5b"]
    assert offline_hub == [("Wan-AI/Wan2.2-TI2V-5B-Diffusers", "transformer/config.json")]
    assert transformer_config_from("hunyuan-video-t2v") == REAL_CONFIGS["hunyuan-video-t2v"]


def test_config_from_hub_unavailable(offline_hub):
    with pytest.raises(SourceError, match="cannot fetch transformer/config.json of 'someone/some-model'"):
        transformer_config_from("someone/some-model")


def test_config_errors(tmp_path):
    with pytest.raises(SourceError, match="no transformer/config.json"):
        transformer_config_from(str(tmp_path))
    with pytest.raises(SourceError, match="neither a local folder nor a Hub model id"):
        transformer_config_from("not-a-model")
    with pytest.raises(SourceError, match="unknown model config"):
        meta_transformer("wan9-t2v")
    with pytest.raises(LoRAMismatchError, match="FluxTransformer2DModel is not supported"):
        meta_transformer({"_class_name": "FluxTransformer2DModel"})
