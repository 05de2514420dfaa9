"""The derived families' specs: inventories of every released config on the meta device,
block numbering, module kinds, and ``inspect`` of a LoRA written with each released model's
real key names and shapes (rank 1, every block) fitting that model's real config; LoRAs of
another family refused naming both sides at real widths."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from helpers.paths import REPO_ROOT
from helpers.writers import random_truth, write_lora
from vidlora.app.inspect_report import build_report, model_inventory
from vidlora.errors import LoRAMismatchError
from vidlora.lora import match_lora, read_lora
from vidlora.model import (
    HUB_MODEL_IDS, REAL_CONFIGS, block_index, block_linear_paths, family_label, inventory, meta_transformer, module_kind,
    spec_for_arch,
)  # fmt: skip

# name -> (arch, family, width, task, version, counted blocks, patched Linears)
REAL = {
    "wan2.1-vace-1.3b": ("wan-vace", "wan-vace-1.3b", 1536, None, "2.1", 30 + 15, 30 * 10 + 15 * 11 + 1),
    "wan2.1-vace-14b": ("wan-vace", "wan-vace-14b", 5120, None, None, 40 + 8, 40 * 10 + 8 * 11 + 1),
    "wan2.2-vace-fun-a14b": ("wan-vace", "wan-vace-14b", 5120, None, None, 48, 489),
    "skyreels-v2-df-1.3b-540p": ("skyreels-v2", "skyreels-v2-1.3b", 1536, "t2v", None, 30, 300),
    "skyreels-v2-df-14b-540p": ("skyreels-v2", "skyreels-v2-14b", 5120, "t2v", None, 40, 400),
    "skyreels-v2-df-14b-720p": ("skyreels-v2", "skyreels-v2-14b", 5120, "t2v", None, 40, 400),
    "skyreels-v2-t2v-14b-540p": ("skyreels-v2", "skyreels-v2-14b", 5120, "t2v", None, 40, 400),
    "skyreels-v2-t2v-14b-720p": ("skyreels-v2", "skyreels-v2-14b", 5120, "t2v", None, 40, 400),
    "skyreels-v2-i2v-1.3b-540p": ("skyreels-v2", "skyreels-v2-1.3b", 1536, "i2v", None, 30, 360),
    "skyreels-v2-i2v-14b-540p": ("skyreels-v2", "skyreels-v2-14b", 5120, "i2v", None, 40, 480),
    "skyreels-v2-i2v-14b-720p": ("skyreels-v2", "skyreels-v2-14b", 5120, "i2v", None, 40, 480),
    "skyreels-v2-flf2v-1.3b-540p": ("skyreels-v2", "skyreels-v2-1.3b", 1536, "i2v", None, 30, 360),
    "skyreels-v2-flf2v-14b-540p": ("skyreels-v2", "skyreels-v2-14b", 5120, "i2v", None, 40, 480),
    "skyreels-v2-flf2v-14b-720p": ("skyreels-v2", "skyreels-v2-14b", 5120, "i2v", None, 40, 480),
    "wan2.2-animate-14b": ("wan-animate", "wan-animate-14b", 5120, None, None, 40, 40 * 12 + 8 * 4),
    "framepack-i2v-hy": ("framepack", "framepack", 3072, "i2v", None, 60, 20 * 14 + 40 * 6),
    "framepack-f1-i2v-hy": ("framepack", "framepack", 3072, "i2v", None, 60, 520),
    **{f"hunyuan-video-1.5-{v}": ("hunyuan-video-1.5", "hunyuan-video-1.5", 2048, v.split("-")[1], "1.5", 54, 54 * 14)
       for v in ("480p-t2v", "480p-i2v", "720p-t2v", "720p-i2v", "480p-t2v-distilled", "480p-i2v-distilled",
                 "720p-i2v-distilled")},
}  # fmt: skip


@pytest.fixture(scope="module")
def metas():
    return {name: meta_transformer(name) for name in REAL}


def test_every_released_config_is_covered():
    assert set(REAL) <= set(REAL_CONFIGS)
    for hub_id in ("Wan-AI/Wan2.1-VACE-14B-diffusers", "Skywork/SkyReels-V2-DF-14B-720P-Diffusers",
                   "Wan-AI/Wan2.2-Animate-14B-Diffusers", "lllyasviel/FramePackI2V_HY",
                   "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_i2v"):  # fmt: skip
        assert HUB_MODEL_IDS[hub_id] in REAL


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_inventory(metas, name):
    arch, family, width, task, version, n_blocks, n_patched = REAL[name]
    model = metas[name]
    assert next(model.parameters()).device.type == "meta"
    inv = inventory(model)
    assert (inv.arch, inv.family, inv.width, inv.task, inv.version, inv.n_blocks) == (
        arch, family, width, task, version, n_blocks,
    )  # fmt: skip
    assert len(block_linear_paths(inv)) == n_patched


def test_block_numbering_and_kinds(metas):
    vace = inventory(metas["wan2.1-vace-14b"])
    assert block_index(vace, "blocks.39.attn1.to_q") == 39 and block_index(vace, "vace_blocks.0.proj_in") == 40
    assert block_index(vace, "vace_blocks.7.ffn.net.2") == 47
    small = inventory(metas["wan2.1-vace-1.3b"])
    assert block_index(small, "vace_blocks.0.attn2.to_k") == 30 and small.n_blocks == 45
    animate = inventory(metas["wan2.2-animate-14b"])
    assert block_index(animate, "face_adapter.3.to_q") is None  # outside blocks= numbering
    hv15 = inventory(metas["hunyuan-video-1.5-480p-t2v"])
    assert block_index(hv15, "transformer_blocks.53.attn.add_q_proj") == 53
    assert module_kind("wan-vace", "vace_blocks.2.attn2.to_v") == "cross-attn"
    assert module_kind("wan-animate", "face_adapter.1.to_k") == "cross-attn"
    assert module_kind("hunyuan-video-1.5", "transformer_blocks.0.ff_context.net.2") == "ffn"
    assert family_label("wan-vace-14b") == "Wan VACE 14B" and family_label("hunyuan-video-1.5") == "HunyuanVideo 1.5"
    assert family_label("skyreels-v2-1.3b") == "SkyReels V2 1.3B" and family_label("framepack") == "FramePack (HunyuanVideo)"


# one real-shaped LoRA per distinct shape set, in the producers' own schemes (cycled per family)
_SCHEMES = {"wan-vace": ("W2", "W3"), "skyreels-v2": ("W3", "W2", "W1", "W4"), "wan-animate": ("W-peft",),
            "framepack": ("FP-musubi", "H2"), "hunyuan-video-1.5": ("HV15-musubi", "HV15-tencent")}  # fmt: skip


def _shape_key(model):
    return tuple(sorted((n, tuple(p.shape)) for n, p in model.named_parameters()))


@pytest.fixture(scope="module")
def real_files(tmp_path_factory, metas):
    out, used = {}, {}
    for name in REAL:
        model = metas[name]
        key = _shape_key(model)
        if key in out:
            continue
        arch = REAL[name][0]
        schemes = _SCHEMES[arch]
        scheme = schemes[used.get(arch, 0) % len(schemes)]
        used[arch] = used.get(arch, 0) + 1
        paths = block_linear_paths(inventory(model))
        truth = random_truth(model, seed=1, paths=paths, rank=1, alpha=1.0, share_fused_down=True)
        folder = tmp_path_factory.mktemp(name)
        file = "adapter_model" if scheme == "W-peft" else name
        out[key] = (name, len(paths), write_lora(folder / f"{file}.safetensors", truth, scheme, dtype=torch.bfloat16))
    return out


@pytest.mark.parametrize("name", sorted(REAL))
def test_inspect_real_shaped_lora_fits_its_real_config(metas, real_files, name):
    written_for, n_paths, path = real_files[_shape_key(metas[name])]
    lora = read_lora(path)
    report = build_report(lora, model_inventory(name))
    compat = report["compatibility"]
    assert compat["ok"] and compat["error"] is None and compat["skipped"] == [], compat
    assert compat["patched_block_linears"] == n_paths
    # a file whose names all exist in the base family reads as that family (plain Wan, HunyuanVideo)
    assert spec_for_arch(lora.arch).lineage == spec_for_arch(REAL[name][0]).lineage
    assert report["family"] == REAL[name][1] or lora.arch != REAL[name][0], report["family"]
    assert report["rank"] == 1


def test_other_family_refused_at_real_widths(real_files, metas):
    hv15 = read_lora(real_files[_shape_key(metas["hunyuan-video-1.5-480p-t2v"])][2])
    assert hv15.arch == "hunyuan-video-1.5" and hv15.width == 2048
    with pytest.raises(LoRAMismatchError) as err:
        match_lora(hv15, model_inventory("hunyuan-video-t2v"))
    assert ("LoRA targets HunyuanVideo 1.5 (width 2048, separate img_attn_q/k/v, double-stream blocks only); "
            "the model is HunyuanVideo (3072)") in str(err.value)  # fmt: skip
    vace = read_lora(real_files[_shape_key(metas["wan2.1-vace-14b"])][2])
    with pytest.raises(LoRAMismatchError, match=r"LoRA carries 89 vace_blocks entries \(Wan VACE\); the model is "
                       r"Wan 14B \(width 5120\) without them"):  # fmt: skip
        match_lora(vace, model_inventory("wan2.1-t2v-14b"))
    report = match_lora(vace, model_inventory("wan2.1-t2v-14b"), strict=False)
    assert len(report.warnings) == 1 and "skipped 89, applied 400" in report.warnings[0]


def test_inspect_cli_knows_the_new_configs(real_files, metas):
    path = real_files[_shape_key(metas["hunyuan-video-1.5-720p-i2v"])][2]
    proc = subprocess.run([sys.executable, "-m", "vidlora", "inspect", str(path), "--model",
                           "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_i2v", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(REPO_ROOT)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["scheme"].startswith("HunyuanVideo 1.5 ") and report["compatibility"]["ok"]
    assert report["compatibility"]["patched_block_linears"] == 54 * 14
