"""HunyuanVideo 1.5 (``HunyuanVideo15Transformer3DModel``; ``HunyuanVideo15Pipeline``,
``HunyuanVideo15ImageToVideoPipeline``): 480p / 720p, T2V / I2V, CFG-distilled.

Width 2048 (16 heads x 128), 54 double-stream blocks, no single-stream blocks. Unlike
HunyuanVideo 1.0, the original checkpoint keeps q, k and v SEPARATE
(``double_blocks.N.img_attn_q/k/v``, ``txt_attn_q/k/v``; 1.0 fuses ``img_attn_qkv``), so
no row split is needed; ``final_layer.adaLN_modulation.1`` still emits (shift, scale)
where diffusers' ``norm_out.linear`` emits (scale, shift): its rows are swapped (diffusers'
scripts/convert_hunyuan_video1_5_to_diffusers.py). New non-block Linears:
``context_embedder_2`` (ByT5 glyph text, original ``byt5_in``), ``image_embedder``
(SigLIP, original ``vision_in``). The token refiner is 1.0's.

LoRA producers and their names (block 3):

    lora_unet_double_blocks_3_img_attn_q.lora_down.weight + .alpha   musubi-tuner networks.lora_hv_1_5
    double_blocks.3.img_mlp.fc1.lora_A.weight                       Tencent's trainer (PEFT, bare names,
                                                                     adapter metadata; default r 8 / alpha 16)
    transformer.transformer_blocks.3.attn.add_q_proj.lora_A.weight  ai-toolkit / SimpleTuner (diffusers)
    diffusion_model.double_blocks.3.txt_attn_proj.lora_up.weight    lightx2v step-distill LoRA for ComfyUI

diffusers has no LoRA loader for these pipelines (its issue #14420). ``blocks=`` counts the
54 double blocks (0-53).
"""

from __future__ import annotations

from typing import Any

from .hunyuan_video import ADD_QKV, DOUBLE_LAYOUT, QKV, REFINER_LAYOUT, REFINER_NAMES, REFINER_ORIGINAL, REFINER_PATH, spellings
from .cp_plans import HUNYUAN_VIDEO_15_CP
from .names import BlockGroup, NameTable
from .spec import FamilySpec, Signal, lycoris_label

__all__ = ["HUNYUAN_VIDEO_15"]

_DOUBLE = spellings(
    *((((f"img_attn_{x}",), QKV[i]) for i, x in enumerate("qkv"))),
    *((((f"txt_attn_{x}",), ADD_QKV[i]) for i, x in enumerate("qkv"))),
    (("img_attn_proj", "img_attn.proj"), "attn.to_out.0"),
    (("txt_attn_proj", "txt_attn.proj"), "attn.to_add_out"),
    (("img_mlp.fc1", "img_mlp.0"), "ff.net.0.proj"),
    (("img_mlp.fc2", "img_mlp.2"), "ff.net.2"),
    (("txt_mlp.fc1", "txt_mlp.0"), "ff_context.net.0.proj"),
    (("txt_mlp.fc2", "txt_mlp.2"), "ff_context.net.2"),
    (("img_mod.linear", "img_mod.lin"), "norm1.linear"),
    (("txt_mod.linear", "txt_mod.lin"), "norm1_context.linear"),
    (("img_attn_q_norm",), "attn.norm_q"),
    (("img_attn_k_norm",), "attn.norm_k"),
    (("txt_attn_q_norm",), "attn.norm_added_q"),
    (("txt_attn_k_norm",), "attn.norm_added_k"),
)
_TOP = spellings(
    (("final_layer.linear",), "proj_out"),
    (("final_layer.adaLN_modulation.1",), (("norm_out.linear",), "swap")),
    (("img_in.proj",), "x_embedder.proj"),
    (("time_in.mlp.0", "time_in.in_layer"), "time_embed.timestep_embedder.linear_1"),
    (("time_in.mlp.2", "time_in.out_layer"), "time_embed.timestep_embedder.linear_2"),
    (("txt_in.input_embedder",), "context_embedder.proj_in"),
    (("txt_in.t_embedder.mlp.0",), "context_embedder.time_text_embed.timestep_embedder.linear_1"),
    (("txt_in.t_embedder.mlp.2",), "context_embedder.time_text_embed.timestep_embedder.linear_2"),
    (("txt_in.c_embedder.linear_1",), "context_embedder.time_text_embed.text_embedder.linear_1"),
    (("txt_in.c_embedder.linear_2",), "context_embedder.time_text_embed.text_embedder.linear_2"),
    (("byt5_in.fc1",), "context_embedder_2.linear_1"),
    (("byt5_in.fc2",), "context_embedder_2.linear_2"),
    (("byt5_in.fc3",), "context_embedder_2.linear_3"),
    (("byt5_in.layernorm",), "context_embedder_2.norm"),
    (("vision_in.proj.0",), "image_embedder.norm_in"),
    (("vision_in.proj.1",), "image_embedder.linear_1"),
    (("vision_in.proj.3",), "image_embedder.linear_2"),
    (("vision_in.proj.4",), "image_embedder.norm_out"),
    (("cond_type_embedding",), "cond_type_embed"),
)

HV15_NAMES = NameTable(
    groups=(
        BlockGroup(path="transformer_blocks", original="double_blocks", names=_DOUBLE),
        BlockGroup(path=REFINER_PATH, original=REFINER_ORIGINAL, names=REFINER_NAMES),
    ),
    top=_TOP,
)

ORIGINAL_HINT = r"^(double_blocks\.|final_layer\.|img_in\.|txt_in\.|time_in\.|byt5_in\.|vision_in\.|cond_type_embedding)"
DIFFUSERS_HINT = (
    r"^(transformer_blocks\.\d+\.|x_embedder\.|context_embedder\.|context_embedder_2\.|image_embedder\.|time_embed\."
    r"|norm_out\.|cond_type_embed($|\.))"
)
def _scheme_label(kind: str, keys: list[str], modules: list[str], prefixes: set[str]) -> str:
    """The producer of a HunyuanVideo 1.5 file, by reader kind and prefixes."""
    lycoris = lycoris_label(keys)
    if kind == "original":
        tensors = "lora_down/lora_up" if any(".lora_down." in k for k in keys) else "lora_A/lora_B"
        if prefixes & {"diffusion_model.", "model.diffusion_model."}:
            label = f"HunyuanVideo 1.5 ComfyUI names (diffusion_model. + original, {tensors})"
        elif "base_model.model." in prefixes:
            label = "HunyuanVideo 1.5 raw PEFT save (original names)"
        else:
            label = f"HunyuanVideo 1.5 Tencent trainer (PEFT, bare original names, {tensors})"
    elif kind == "diffusers":
        label = "HunyuanVideo 1.5 diffusers/PEFT names (ai-toolkit, SimpleTuner)"
    elif kind in ("kohya", "kohya-diffusers"):
        label = "HunyuanVideo 1.5 kohya/musubi lora_unet_ names (networks.lora_hv_1_5)"
    elif kind == "diffusers-underscored":
        label = "HunyuanVideo 1.5 underscored diffusers names"
    else:
        label = f"HunyuanVideo 1.5 {kind} names"
    return f"{label}, {lycoris}" if lycoris else label


def _task_version(config: Any, width: int) -> tuple[str | None, str | None]:
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    task = get("task_type", None)
    return (task if task in ("t2v", "i2v") else None), "1.5"


def _lora_signals(names: list[str], deltas, width: int) -> list[Signal]:
    return []


def _config(target_size: int, task: str) -> dict[str, Any]:
    return dict(
        _class_name="HunyuanVideo15Transformer3DModel", in_channels=65, out_channels=32, num_attention_heads=16,
        attention_head_dim=128, num_layers=54, num_refiner_layers=2, mlp_ratio=4.0, patch_size=1, patch_size_t=1,
        qk_norm="rms_norm", text_embed_dim=3584, text_embed_2_dim=1472, image_embed_dim=1152, rope_theta=256.0,
        rope_axes_dim=[16, 56, 56], target_size=target_size, task_type=task, use_meanflow=False,
    )  # fmt: skip


# hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-<variant>; distilled variants share the shapes
_VARIANTS = {"480p_t2v": (640, "t2v"), "480p_i2v": (640, "i2v"), "720p_t2v": (960, "t2v"), "720p_i2v": (960, "i2v"),
             "480p_t2v_distilled": (640, "t2v"), "480p_i2v_distilled": (640, "i2v"),
             "720p_i2v_distilled": (960, "i2v")}  # fmt: skip

HUNYUAN_VIDEO_15 = FamilySpec(
    name="hunyuan-video-1.5",
    label="HunyuanVideo 1.5",
    classes=("HunyuanVideo15Transformer3DModel",),
    names=HV15_NAMES,
    groups=(DOUBLE_LAYOUT, REFINER_LAYOUT),
    sizes={2048: ("hunyuan-video-1.5", "HunyuanVideo 1.5")},
    top_kinds=(("image_embedder.", "image cross-attn"),),
    top_width_in=("proj_out", "norm_out.linear"),
    top_width_out=("context_embedder_2.linear_3", "image_embedder.linear_2"),
    real_configs={f"hunyuan-video-1.5-{k.replace('_', '-')}": _config(*v) for k, v in _VARIANTS.items()},
    hub_ids={f"hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-{k}": f"hunyuan-video-1.5-{k.replace('_', '-')}"
             for k in _VARIANTS},  # fmt: skip
    task_version=_task_version,
    lora_signals=_lora_signals,
    original_hint=ORIGINAL_HINT,
    diffusers_hint=DIFFUSERS_HINT,
    scheme_label=_scheme_label,
    fingerprint="separate img_attn_q/k/v, double-stream blocks only",
    cp_plans={"HunyuanVideo15Transformer3DModel": HUNYUAN_VIDEO_15_CP},
)
