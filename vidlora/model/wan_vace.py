"""Wan VACE (``WanVACETransformer3DModel``): Wan 2.1 VACE 1.3B / 14B and Wan2.2-VACE-Fun-A14B
(two experts, ``transformer`` high noise and ``transformer_2`` low noise, as Wan 2.2 A14B).

``blocks.N`` are Wan T2V blocks, names and shapes identical, so every Wan LoRA scheme
applies as is. The control branch adds ``vace_blocks.K`` (8 at 14B, layers 0, 5, ... 35;
15 at 1.3B, layers 0, 2, ... 28): the same 10 Linears plus ``proj_out`` (``after_proj`` in
the original checkpoint) and, on K = 0, ``proj_in`` (``before_proj``). Some VACE LoRAs
carry ``vace_blocks`` keys in diffusers or original naming (diffusers' own converter drops
the original / kohya ones with a leftover-key error); they read here like the blocks.

``blocks=`` counts the ``blocks`` first, then the ``vace_blocks``: on VACE 14B, 0-39 are
``blocks.0``-``blocks.39`` and 40-47 are ``vace_blocks.0``-``vace_blocks.7`` (1.3B: 0-29,
then 30-44). ``blocks=range(40)`` therefore keeps a LoRA off the control branch.

Fused q/k/v and k/v work as for Wan: both block kinds use ``WanAttnProcessor``.
"""

from __future__ import annotations

from typing import Any

from .cp_plans import WAN_VACE_CP
from .names import NameTable
from .spec import FamilySpec
from .wan import (
    DIFFUSERS_HINT,
    ORIGINAL_HINT,
    WAN_BASE_CONFIG,
    WAN_TOP,
    WAN_TOP_FACTS,
    WAN_TOP_PARAMS,
    wan_block_group,
    wan_block_layout,
    wan_lora_signals,
    wan_scheme_label,
)

__all__ = ["WAN_VACE"]

# vace_blocks: Wan's inner names plus the control branch's input / output projections
_VACE_EXTRA = {"before_proj": "proj_in", "after_proj": "proj_out"}
_VACE_ALIASES = {"proj_in": "proj_in", "proj_out": "proj_out"}

VACE_NAMES = NameTable(
    groups=(wan_block_group("blocks"), wan_block_group("vace_blocks", _VACE_EXTRA, _VACE_ALIASES)),
    top={**WAN_TOP, "vace_patch_embedding": "vace_patch_embedding"},
    top_params=WAN_TOP_PARAMS,
    top_owner_params={"head": "scale_shift_table"},
)

_VACE_ORIGINAL = r"^(vace_blocks\.\d+\.(self_attn|cross_attn|ffn\.[02]($|\.)|modulation|before_proj|after_proj)|vace_blocks\.\d+$)"
_VACE_DIFFUSERS = r"^vace_blocks\.\d+\.(attn1|attn2|ffn\.net|scale_shift_table|proj_in|proj_out)"


def _task_version(config: Any, width: int) -> tuple[str | None, str | None]:
    # VACE does T2V, R2V, V2V and inpainting with one model: no task; only Wan 2.1 has a 1.3B
    return None, ("2.1" if width == 1536 else None)


def _vace_layers(step: int, n: int) -> list[int]:
    return list(range(0, n, step))


_1_3B = dict(WAN_BASE_CONFIG, _class_name="WanVACETransformer3DModel", num_attention_heads=12, num_layers=30,
             ffn_dim=8960, vace_layers=_vace_layers(2, 30), vace_in_channels=96)  # fmt: skip
_14B = dict(WAN_BASE_CONFIG, _class_name="WanVACETransformer3DModel", num_attention_heads=40, num_layers=40,
            ffn_dim=13824, vace_layers=_vace_layers(5, 40), vace_in_channels=96)  # fmt: skip

WAN_VACE = FamilySpec(
    name="wan-vace",
    label="Wan VACE",
    classes=("WanVACETransformer3DModel",),
    names=VACE_NAMES,
    groups=(
        wan_block_layout("blocks"),
        wan_block_layout("vace_blocks", patched=("proj_in", "proj_out"), width_in=("proj_in", "proj_out")),
    ),
    sizes={1536: ("wan-vace-1.3b", "Wan VACE 1.3B"), 5120: ("wan-vace-14b", "Wan VACE 14B")},
    **WAN_TOP_FACTS,
    fused_processors=("WanAttnProcessor", "WanAttnProcessor2_0"),
    real_configs={
        "wan2.1-vace-1.3b": _1_3B,
        "wan2.1-vace-14b": _14B,
        # transformer (high noise) and transformer_2 (low noise) share this config
        "wan2.2-vace-fun-a14b": dict(_14B),
    },
    hub_ids={
        "Wan-AI/Wan2.1-VACE-1.3B-diffusers": "wan2.1-vace-1.3b",
        "Wan-AI/Wan2.1-VACE-14B-diffusers": "wan2.1-vace-14b",
        "alibaba-pai/Wan2.2-VACE-Fun-A14B": "wan2.2-vace-fun-a14b",
        "linoyts/Wan2.2-VACE-Fun-14B-diffusers": "wan2.2-vace-fun-a14b",
    },
    task_version=_task_version,
    lora_signals=wan_lora_signals,
    expert_families=("wan-vace-14b",),
    original_hint=f"{ORIGINAL_HINT}|{_VACE_ORIGINAL}",
    diffusers_hint=f"{DIFFUSERS_HINT}|{_VACE_DIFFUSERS}",
    scheme_label=wan_scheme_label,
    lineage="wan",
    fingerprint="Wan blocks plus the vace_blocks control branch",
    cp_plans={"WanVACETransformer3DModel": WAN_VACE_CP},
)
