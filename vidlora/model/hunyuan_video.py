"""HunyuanVideo (``HunyuanVideoTransformer3DModel``): 20 double-stream + 40 single-stream
blocks at width 3072 (T2V, I2V token-replace, I2V 33-channel).

Names: /work/shared/notes/lora-formats.md §3.2-3.3, checked against diffusers'
``convert_hunyuan_video_transformer_to_diffusers`` and the module tree. The original
model fuses what diffusers splits: a double block's ``img_attn_qkv`` / ``txt_attn_qkv``
(three equal row parts) and a single block's ``linear1`` (q, k, v of the hidden width,
then the MLP). Hunyuan's final ``adaLN_modulation`` emits (shift, scale); diffusers'
``norm_out.linear`` (scale, shift). Each module has a Tencent and a ComfyUI spelling.

``blocks=`` counts the double blocks first, then the single ones (0-19 double, 20-59
single on the real model). Patched by default: every block Linear, the adaLN modulation
ones included (norm1.linear, norm1_context.linear, norm.linear: 3.4 B of the real model's
12.8 B parameters), so fp8=True stores them in FP8 as well (left in bf16 they would keep
6.8 GB) and LoRAs that train img_mod / txt_mod / modulation reach a unit without a
second patch. Hunyuan attends over the joint image + text sequence: every block attention
counts as self-attention.
"""

from __future__ import annotations

import re
from typing import Any

from .cp_plans import HUNYUAN_CP
from .names import BlockGroup, NameTable
from .spec import FamilySpec, GroupLayout, Signal, lycoris_label

__all__ = [
    "HUNYUAN_VIDEO", "HUNYUAN_NAMES", "spellings", "REFINER_NAMES", "DOUBLE_LINEARS", "SINGLE_LINEARS", "QKV", "ADD_QKV",
    "HUNYUAN_BASE_CONFIG", "HUNYUAN_TOP", "ORIGINAL_HINT", "DIFFUSERS_HINT", "hunyuan_scheme_label", "REFINER_PATH",
    "REFINER_ORIGINAL", "DOUBLE_LAYOUT", "SINGLE_LAYOUT", "REFINER_LAYOUT",
]

QKV = ("attn.to_q", "attn.to_k", "attn.to_v")
ADD_QKV = ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")
_LINEAR1 = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")


def spellings(*rows: tuple[tuple[str, ...], object]) -> dict:
    """{spelling: destination} for rows of (spellings, destination)."""
    return {name: dst for names, dst in rows for name in names}


_DOUBLE = spellings(
    (("img_attn_qkv", "img_attn.qkv"), (QKV, "equal")),
    (("img_attn_proj", "img_attn.proj"), "attn.to_out.0"),
    (("img_mlp.fc1", "img_mlp.0"), "ff.net.0.proj"),
    (("img_mlp.fc2", "img_mlp.2"), "ff.net.2"),
    (("img_mod.linear", "img_mod.lin"), "norm1.linear"),
    (("txt_attn_qkv", "txt_attn.qkv"), (ADD_QKV, "equal")),
    (("txt_attn_proj", "txt_attn.proj"), "attn.to_add_out"),
    (("txt_mlp.fc1", "txt_mlp.0"), "ff_context.net.0.proj"),
    (("txt_mlp.fc2", "txt_mlp.2"), "ff_context.net.2"),
    (("txt_mod.linear", "txt_mod.lin"), "norm1_context.linear"),
    (("img_attn_q_norm", "img_attn.norm.query_norm"), "attn.norm_q"),
    (("img_attn_k_norm", "img_attn.norm.key_norm"), "attn.norm_k"),
    (("txt_attn_q_norm", "txt_attn.norm.query_norm"), "attn.norm_added_q"),
    (("txt_attn_k_norm", "txt_attn.norm.key_norm"), "attn.norm_added_k"),
)
_SINGLE = spellings(
    (("linear1",), (_LINEAR1, "linear1")),
    (("linear2",), "proj_out"),
    (("modulation.linear", "modulation.lin"), "norm.linear"),
    (("q_norm", "norm.query_norm"), "attn.norm_q"),
    (("k_norm", "norm.key_norm"), "attn.norm_k"),
)
REFINER_NAMES = spellings(
    (("self_attn_qkv", "self_attn.qkv"), (QKV, "equal")),
    (("self_attn_proj", "self_attn.proj"), "attn.to_out.0"),
    (("mlp.fc1", "mlp.0"), "ff.net.0.proj"),
    (("mlp.fc2", "mlp.2"), "ff.net.2"),
    (("adaLN_modulation.1",), "norm_out.linear"),  # gates only: no swap here
    (("norm1",), "norm1"),
    (("norm2",), "norm2"),
)
HUNYUAN_TOP = spellings(
    (("final_layer.linear",), "proj_out"),
    (("final_layer.adaLN_modulation.1",), (("norm_out.linear",), "swap")),
    (("img_in.proj",), "x_embedder.proj"),
    (("time_in.mlp.0", "time_in.in_layer"), "time_text_embed.timestep_embedder.linear_1"),
    (("time_in.mlp.2", "time_in.out_layer"), "time_text_embed.timestep_embedder.linear_2"),
    (("guidance_in.mlp.0", "guidance_in.in_layer"), "time_text_embed.guidance_embedder.linear_1"),
    (("guidance_in.mlp.2", "guidance_in.out_layer"), "time_text_embed.guidance_embedder.linear_2"),
    (("vector_in.in_layer",), "time_text_embed.text_embedder.linear_1"),
    (("vector_in.out_layer",), "time_text_embed.text_embedder.linear_2"),
    (("txt_in.input_embedder",), "context_embedder.proj_in"),
    (("txt_in.t_embedder.mlp.0", "txt_in.t_embedder.in_layer"), "context_embedder.time_text_embed.timestep_embedder.linear_1"),
    (("txt_in.t_embedder.mlp.2", "txt_in.t_embedder.out_layer"), "context_embedder.time_text_embed.timestep_embedder.linear_2"),
    (("txt_in.c_embedder.linear_1", "txt_in.c_embedder.in_layer"), "context_embedder.time_text_embed.text_embedder.linear_1"),
    (("txt_in.c_embedder.linear_2", "txt_in.c_embedder.out_layer"), "context_embedder.time_text_embed.text_embedder.linear_2"),
)

REFINER_PATH = "context_embedder.token_refiner.refiner_blocks"
REFINER_ORIGINAL = "txt_in.individual_token_refiner.blocks"
HUNYUAN_NAMES = NameTable(
    groups=(
        BlockGroup(path="transformer_blocks", original="double_blocks", names=_DOUBLE),
        BlockGroup(path="single_transformer_blocks", original="single_blocks", names=_SINGLE),
        BlockGroup(path=REFINER_PATH, original=REFINER_ORIGINAL, names=REFINER_NAMES),
    ),
    top=HUNYUAN_TOP,
)

# Tencent / ComfyUI naming (double_blocks / single_blocks / final_layer / ...), and the
# ComfyUI-native spellings among them (img_attn.qkv, img_mlp.0, .lin, in_layer ...).
ORIGINAL_HINT = r"^(double_blocks\.|single_blocks\.|final_layer\.|img_in\.|txt_in\.|time_in\.|vector_in\.|guidance_in\.)"
COMFY_HINT = (
    r"^(double_blocks\.\d+\.(img|txt)_(attn\.|mlp\.\d|mod\.lin$)|single_blocks\.\d+\.(modulation\.lin$|norm\.)"
    r"|(time_in|guidance_in)\.(in|out)_layer|txt_in\.(t_embedder\.(in|out)_layer|c_embedder\.(in|out)_layer"
    r"|individual_token_refiner\.blocks\.\d+\.(self_attn\.|mlp\.\d)))"
)
DIFFUSERS_HINT = (
    r"^(transformer_blocks\.\d+\.|single_transformer_blocks\.\d+\.|x_embedder\.|context_embedder\.|time_text_embed\."
    r"|norm_out\.)"
)
_COMFY = re.compile(COMFY_HINT)


def hunyuan_scheme_label(kind: str, keys: list[str], modules: list[str], prefixes: set[str]) -> str:
    """Scheme ids of lora-formats.md §3.4 for a HunyuanVideo file read by reader ``kind``."""
    label = _base_label(kind, keys, modules)
    lycoris = lycoris_label(keys)
    return f"{label}, {lycoris}" if lycoris else label


def _base_label(kind: str, keys: list[str], modules: list[str]) -> str:
    if kind == "original":
        tensors = "lora_down/lora_up" if any(".lora_down." in k for k in keys) else (
            "lora_A/lora_B" if any(".lora_A" in k for k in keys) else "LyCORIS factors")
        if any(_COMFY.match(m) for m in modules):
            return f"H4 (ComfyUI native Hunyuan names, {tensors})"
        return f"H1 (Tencent Hunyuan names, {tensors})"
    if kind == "original-split":
        return "H6 (OneTrainer split-index Hunyuan names)"
    if kind == "diffusers":
        return "H5 (diffusers/PEFT names)"
    if kind == "kohya":
        return "H2 (kohya/musubi lora_unet_ Hunyuan names)"
    if kind == "kohya-i2v":
        return "H3 (Tencent HunyuanVideo-I2V LoRA names)"
    if kind == "diffusers-underscored":
        return "H6 (OneTrainer legacy lora_transformer_ names)"
    return f"HunyuanVideo {kind} names"

DOUBLE_LINEARS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj",
    "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "norm1.linear",
    "norm1_context.linear",
)  # fmt: skip
SINGLE_LINEARS = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out", "norm.linear")


def _task_version(config: Any, width: int) -> tuple[str | None, str | None]:
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    return ("i2v" if get("image_condition_type", None) else "t2v"), None


def _lora_signals(names: list[str], deltas, width: int) -> list[Signal]:
    patch = deltas.get("x_embedder.proj.weight")
    if patch is not None and getattr(patch, "ndim", 0) == 5 and int(patch.shape[1]) == 33:
        return [("task", "i2v", "x_embedder has 33 input channels (HunyuanVideo-I2V latent concat)")]
    return []


DOUBLE_LAYOUT = GroupLayout(
    path="transformer_blocks",
    patched=DOUBLE_LINEARS,
    kinds=(("attn.", "self-attn"), ("ff.", "ffn"), ("ff_context.", "ffn")),
    width_in=("attn.to_q", "attn.add_q_proj", "attn.to_out.0", "attn.to_add_out", "ff.net.0.proj",
              "ff_context.net.0.proj", "norm1.linear", "norm1_context.linear"),  # fmt: skip
    width_out=("ff.net.2", "ff_context.net.2"),
    width_params=("attn.to_out.0.bias",),
    context=("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out", "ff_context.net.0.proj",
             "ff_context.net.2"),  # the text stream of a double-stream block
    per_sample=("norm1.linear", "norm1_context.linear"),
)
SINGLE_LAYOUT = GroupLayout(
    path="single_transformer_blocks",
    patched=SINGLE_LINEARS,
    kinds=(("attn.", "self-attn"), ("proj_mlp", "ffn")),
    width_in=("attn.to_q", "norm.linear"),
    width_out=("proj_out",),
    width_params=("proj_out.bias",),
    per_sample=("norm.linear",),  # the rest reads video and text tokens, joined
)
REFINER_LAYOUT = GroupLayout(path=REFINER_PATH, counted=False)

HUNYUAN_BASE_CONFIG: dict[str, Any] = dict(
    _class_name="HunyuanVideoTransformer3DModel", in_channels=16, out_channels=16, num_attention_heads=24,
    attention_head_dim=128, num_layers=20, num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2,
    patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True, text_embed_dim=4096, pooled_projection_dim=768,
    rope_theta=256.0, rope_axes_dim=[16, 56, 56], image_condition_type=None,
)  # fmt: skip

HUNYUAN_VIDEO = FamilySpec(
    name="hunyuan-video",
    label="HunyuanVideo",
    classes=("HunyuanVideoTransformer3DModel",),
    names=HUNYUAN_NAMES,
    groups=(DOUBLE_LAYOUT, SINGLE_LAYOUT, REFINER_LAYOUT),
    sizes={3072: ("hunyuan-video", "HunyuanVideo")},
    top_width_in=("proj_out", "norm_out.linear"),
    real_configs={
        "hunyuan-video-t2v": dict(HUNYUAN_BASE_CONFIG),
        # hunyuanvideo-community/HunyuanVideo-I2V (token replace, 16 channels) and -33ch
        # (Tencent's first I2V release: 16 noise + 16 image + 1 mask channels, no guidance).
        "hunyuan-video-i2v": dict(HUNYUAN_BASE_CONFIG, image_condition_type="token_replace"),
        "hunyuan-video-i2v-33ch": dict(HUNYUAN_BASE_CONFIG, in_channels=33, guidance_embeds=False,
                                       image_condition_type="latent_concat"),  # fmt: skip
    },
    hub_ids={
        "hunyuanvideo-community/HunyuanVideo": "hunyuan-video-t2v",
        "hunyuanvideo-community/HunyuanVideo-I2V": "hunyuan-video-i2v",
        "hunyuanvideo-community/HunyuanVideo-I2V-33ch": "hunyuan-video-i2v-33ch",
    },
    task_version=_task_version,
    lora_signals=_lora_signals,
    original_hint=ORIGINAL_HINT,
    diffusers_hint=DIFFUSERS_HINT,
    comfy_hint=COMFY_HINT,
    scheme_label=hunyuan_scheme_label,
    fingerprint="fused img_attn_qkv, single-stream blocks",
    cp_plans={"HunyuanVideoTransformer3DModel": HUNYUAN_CP},
)
