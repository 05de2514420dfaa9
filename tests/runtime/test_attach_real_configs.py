"""attach on the real model configs, built on the meta device (no weights): the number and
kind of patched units per family, and a rank-1 LoRA at real width reaching every unit."""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.errors import LoRAMismatchError
from vidlora.model import REAL_CONFIGS, meta_transformer
from vidlora.runtime.unit import FusedAway, LoRALinear
from vidlora.lora.lora_file import LoRAFile, LowRank

# name -> (blocks, Linears per block, units per block, fused units per block)
EXPECTED = {
    # Wan T2V block: attn1 q/k/v/out, attn2 q/k/v/out, ffn up/down = 10 Linears;
    # units: to_qkv, attn1.to_out, attn2.to_q, to_kv, attn2.to_out, ffn x2 = 7 (2 fused)
    "wan2.1-t2v-1.3b": (30, 10, 7, 2),
    "wan2.1-t2v-14b": (40, 10, 7, 2),
    # Wan 2.1 I2V adds the image k/v (add_k_proj/add_v_proj): one more fused unit
    "wan2.1-i2v-14b-480p": (40, 12, 8, 3),
    "wan2.2-ti2v-5b": (30, 10, 7, 2),
    "wan2.2-t2v-a14b": (40, 10, 7, 2),
    "wan2.2-i2v-a14b": (40, 10, 7, 2),  # Wan 2.2 I2V dropped the CLIP image branch
}
HUNYUAN = {"hunyuan-video-t2v", "hunyuan-video-i2v"}


@pytest.mark.parametrize("name", sorted(EXPECTED) + sorted(HUNYUAN))
def test_patched_units_match_the_config(name):
    model = meta_transformer(name)
    h = vidlora.attach(model)
    units = [m for m in model.modules() if isinstance(m, LoRALinear)]
    linears = sum(len(u.parts) for u in units)
    fused = sum(1 for u in units if len(u.parts) > 1)
    if name in HUNYUAN:
        # 20 double blocks x (12 + 2 adaLN modulation) + 40 single blocks x (5 + 1), not fused
        assert (len(units), linears, fused) == (20 * 14 + 40 * 6, 520, 0)
    else:
        blocks, per_block, units_per_block, fused_per_block = EXPECTED[name]
        assert linears == blocks * per_block
        assert len(units) == blocks * units_per_block
        assert fused == blocks * fused_per_block
        # every projection folded into a fused unit leaves a parameter-free marker
        markers = sum(isinstance(m, FusedAway) for m in model.modules())
        assert markers == sum(len(u.parts) for u in units if len(u.parts) > 1)
    rep = h.report()["models"]["transformer"]
    assert rep["patched_linears"] == linears
    h.detach()
    assert not any(isinstance(m, (LoRALinear, FusedAway)) for m in model.modules())


def _rank1(model_name: str, width: int, family: str) -> LoRAFile:
    cfg = REAL_CONFIGS[model_name]
    ffn = cfg["ffn_dim"]
    mods = {}
    for b in (0, 5):
        for path, (n_in, n_out) in {
            f"blocks.{b}.attn1.to_q": (width, width),
            f"blocks.{b}.attn2.to_v": (width, width),
            f"blocks.{b}.ffn.net.0.proj": (width, ffn),
            f"blocks.{b}.ffn.net.2": (ffn, width),
        }.items():
            mods[path] = LowRank(down=torch.randn(1, n_in), up=torch.randn(n_out, 1), alpha=None, scale=1.0)
    return LoRAFile(path=f"/virtual/{model_name}.safetensors", scheme="test", arch="wan", family=family,
                    width=width, modules=mods)


def test_rank1_lora_at_real_width_lands_on_meta_units():
    model = meta_transformer("wan2.1-t2v-14b")
    h = vidlora.attach(model)
    h.add(_rank1("wan2.1-t2v-14b", 5120, "wan-14b"), weight=0.5)
    qkv = model.blocks[5].attn1.to_qkv
    assert qkv.lora_a.device.type == "meta"
    assert tuple(qkv.lora_a.shape) == (16, 5120) and tuple(qkv.lora_b.shape) == (3 * 5120, 16)
    assert qkv.stack.used_rank == 1
    up = model.blocks[0].ffn.net[0].proj
    assert tuple(up.lora_b.shape) == (13824, 16)


def test_wrong_size_is_refused_naming_both_sides():
    model = meta_transformer("wan2.1-t2v-1.3b")
    h = vidlora.attach(model)
    with pytest.raises(LoRAMismatchError) as e:
        h.add(_rank1("wan2.1-t2v-14b", 5120, "wan-14b"))
    msg = str(e.value)
    assert "14B" in msg and "1.3B" in msg and "5120" in msg and "1536" in msg
    assert h.names == ()
