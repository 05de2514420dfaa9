"""HunyuanVideo module names: Tencent original and ComfyUI native -> diffusers.

Source: /work/shared/notes/lora-formats.md §3.2-3.3, checked against diffusers'
``convert_hunyuan_video_transformer_to_diffusers`` and the HunyuanVideoTransformer3DModel
module tree. The original model fuses what diffusers splits: a double block's
``img_attn_qkv`` / ``txt_attn_qkv`` (three equal row parts) and a single block's
``linear1`` (q, k, v of the hidden width, then the MLP). Hunyuan's final
``adaLN_modulation`` emits (shift, scale); diffusers' ``norm_out.linear`` (scale, shift).
"""

from __future__ import annotations

import re

from .targets import Target

__all__ = [
    "translate_original",
    "translate_underscored",
    "translate_diffusers_underscored",
    "looks_original",
    "looks_comfy",
]

_QKV = ("attn.to_q", "attn.to_k", "attn.to_v")
_ADD_QKV = ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")
_LINEAR1 = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")

# inner name (Tencent | ComfyUI) -> (diffusers inner names, split)
_DOUBLE: dict[str, tuple[tuple[str, ...], str | None]] = {}
for _names, _dst in (
    (("img_attn_qkv", "img_attn.qkv"), (_QKV, "equal")),
    (("img_attn_proj", "img_attn.proj"), (("attn.to_out.0",), None)),
    (("img_mlp.fc1", "img_mlp.0"), (("ff.net.0.proj",), None)),
    (("img_mlp.fc2", "img_mlp.2"), (("ff.net.2",), None)),
    (("img_mod.linear", "img_mod.lin"), (("norm1.linear",), None)),
    (("txt_attn_qkv", "txt_attn.qkv"), (_ADD_QKV, "equal")),
    (("txt_attn_proj", "txt_attn.proj"), (("attn.to_add_out",), None)),
    (("txt_mlp.fc1", "txt_mlp.0"), (("ff_context.net.0.proj",), None)),
    (("txt_mlp.fc2", "txt_mlp.2"), (("ff_context.net.2",), None)),
    (("txt_mod.linear", "txt_mod.lin"), (("norm1_context.linear",), None)),
    (("img_attn_q_norm", "img_attn.norm.query_norm"), (("attn.norm_q",), None)),
    (("img_attn_k_norm", "img_attn.norm.key_norm"), (("attn.norm_k",), None)),
    (("txt_attn_q_norm", "txt_attn.norm.query_norm"), (("attn.norm_added_q",), None)),
    (("txt_attn_k_norm", "txt_attn.norm.key_norm"), (("attn.norm_added_k",), None)),
):
    for _n in _names:
        _DOUBLE[_n] = _dst

_SINGLE: dict[str, tuple[tuple[str, ...], str | None]] = {}
for _names, _dst in (
    (("linear1",), (_LINEAR1, "linear1")),
    (("linear2",), (("proj_out",), None)),
    (("modulation.linear", "modulation.lin"), (("norm.linear",), None)),
    (("q_norm", "norm.query_norm"), (("attn.norm_q",), None)),
    (("k_norm", "norm.key_norm"), (("attn.norm_k",), None)),
):
    for _n in _names:
        _SINGLE[_n] = _dst

_REFINER: dict[str, tuple[tuple[str, ...], str | None]] = {}
for _names, _dst in (
    (("self_attn_qkv", "self_attn.qkv"), (_QKV, "equal")),
    (("self_attn_proj", "self_attn.proj"), (("attn.to_out.0",), None)),
    (("mlp.fc1", "mlp.0"), (("ff.net.0.proj",), None)),
    (("mlp.fc2", "mlp.2"), (("ff.net.2",), None)),
    (("adaLN_modulation.1",), (("norm_out.linear",), None)),  # gates only: no swap here
    (("norm1",), (("norm1",), None)),
    (("norm2",), (("norm2",), None)),
):
    for _n in _names:
        _REFINER[_n] = _dst

_TOP: dict[str, tuple[tuple[str, ...], str | None]] = {}
for _names, _dst in (
    (("final_layer.linear",), (("proj_out",), None)),
    (("final_layer.adaLN_modulation.1",), (("norm_out.linear",), "swap")),
    (("img_in.proj",), (("x_embedder.proj",), None)),
    (("time_in.mlp.0", "time_in.in_layer"), (("time_text_embed.timestep_embedder.linear_1",), None)),
    (("time_in.mlp.2", "time_in.out_layer"), (("time_text_embed.timestep_embedder.linear_2",), None)),
    (("guidance_in.mlp.0", "guidance_in.in_layer"), (("time_text_embed.guidance_embedder.linear_1",), None)),
    (("guidance_in.mlp.2", "guidance_in.out_layer"), (("time_text_embed.guidance_embedder.linear_2",), None)),
    (("vector_in.in_layer",), (("time_text_embed.text_embedder.linear_1",), None)),
    (("vector_in.out_layer",), (("time_text_embed.text_embedder.linear_2",), None)),
    (("txt_in.input_embedder",), (("context_embedder.proj_in",), None)),
    (
        ("txt_in.t_embedder.mlp.0", "txt_in.t_embedder.in_layer"),
        (("context_embedder.time_text_embed.timestep_embedder.linear_1",), None),
    ),
    (
        ("txt_in.t_embedder.mlp.2", "txt_in.t_embedder.out_layer"),
        (("context_embedder.time_text_embed.timestep_embedder.linear_2",), None),
    ),
    (
        ("txt_in.c_embedder.linear_1", "txt_in.c_embedder.in_layer"),
        (("context_embedder.time_text_embed.text_embedder.linear_1",), None),
    ),
    (
        ("txt_in.c_embedder.linear_2", "txt_in.c_embedder.out_layer"),
        (("context_embedder.time_text_embed.text_embedder.linear_2",), None),
    ),
):
    for _n in _names:
        _TOP[_n] = _dst

_GROUPS = (
    (re.compile(r"^double_blocks\.(\d+)\.(.+)$"), "transformer_blocks", _DOUBLE),
    (re.compile(r"^single_blocks\.(\d+)\.(.+)$"), "single_transformer_blocks", _SINGLE),
    (
        re.compile(r"^txt_in\.individual_token_refiner\.blocks\.(\d+)\.(.+)$"),
        "context_embedder.token_refiner.refiner_blocks",
        _REFINER,
    ),
)
_INDEX_RE = re.compile(r"^(.+)\.(\d)$")


def _target(prefix: str, inner: tuple[tuple[str, ...], str | None]) -> Target:
    names, split = inner
    return Target(tuple(f"{prefix}{n}" for n in names), split)


def translate_original(name: str, split_index: bool = False) -> Target | None:
    """Diffusers target of a dotted Tencent or ComfyUI Hunyuan module name.

    ``split_index``: OneTrainer's split form, where ``img_attn.qkv.1`` is its own LoRA over
    the k rows of the fused qkv (``linear1.3`` the MLP rows): it maps to that one piece.
    """
    if split_index:
        m = _INDEX_RE.match(name)
        if m:
            fused = translate_original(m.group(1))
            idx = int(m.group(2))
            if fused is not None and fused.split in ("equal", "linear1") and idx < len(fused.paths):
                return Target((fused.paths[idx],))
    for pattern, prefix, table in _GROUPS:
        m = pattern.match(name)
        if m:
            inner = table.get(m.group(2))
            return None if inner is None else _target(f"{prefix}.{m.group(1)}.", inner)
    inner = _TOP.get(name)
    return None if inner is None else _target("", inner)


def _underscored(table: dict) -> dict[str, str]:
    return {k.replace(".", "_"): k for k in table}


_U_GROUPS = (
    (re.compile(r"^double_blocks_(\d+)_(.+)$"), "double_blocks", _underscored(_DOUBLE)),
    (re.compile(r"^single_blocks_(\d+)_(.+)$"), "single_blocks", _underscored(_SINGLE)),
    (
        re.compile(r"^txt_in_individual_token_refiner_blocks_(\d+)_(.+)$"),
        "txt_in.individual_token_refiner.blocks",
        _underscored(_REFINER),
    ),
)
_U_TOP = _underscored(_TOP)


def translate_underscored(name: str) -> Target | None:
    """Target of a kohya-style underscored Tencent/ComfyUI name (``double_blocks_0_img_attn_qkv``)."""
    for pattern, prefix, table in _U_GROUPS:
        m = pattern.match(name)
        if m:
            inner = table.get(m.group(2))
            return None if inner is None else translate_original(f"{prefix}.{m.group(1)}.{inner}")
    return translate_original(_U_TOP[name]) if name in _U_TOP else None


# diffusers names, underscored (OneTrainer's legacy keys: lora_transformer_<path with _>)
_D_DOUBLE = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
    "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
    "ff_context.net.2", "norm1.linear", "norm1_context.linear",
)
_D_SINGLE = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out", "norm.linear")
_D_REFINER = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "ff.net.0.proj", "ff.net.2", "norm_out.linear")
_D_TOP = (
    "x_embedder.proj", "proj_out", "norm_out.linear", "context_embedder.proj_in",
    "time_text_embed.timestep_embedder.linear_1", "time_text_embed.timestep_embedder.linear_2",
    "time_text_embed.guidance_embedder.linear_1", "time_text_embed.guidance_embedder.linear_2",
    "time_text_embed.text_embedder.linear_1", "time_text_embed.text_embedder.linear_2",
    "context_embedder.time_text_embed.timestep_embedder.linear_1",
    "context_embedder.time_text_embed.timestep_embedder.linear_2",
    "context_embedder.time_text_embed.text_embedder.linear_1",
    "context_embedder.time_text_embed.text_embedder.linear_2",
)
_D_GROUPS = (
    (re.compile(r"^transformer_blocks_(\d+)_(.+)$"), "transformer_blocks", {n.replace(".", "_"): n for n in _D_DOUBLE}),
    (
        re.compile(r"^single_transformer_blocks_(\d+)_(.+)$"),
        "single_transformer_blocks",
        {n.replace(".", "_"): n for n in _D_SINGLE},
    ),
    (
        re.compile(r"^context_embedder_token_refiner_refiner_blocks_(\d+)_(.+)$"),
        "context_embedder.token_refiner.refiner_blocks",
        {n.replace(".", "_"): n for n in _D_REFINER},
    ),
)
_D_U_TOP = {n.replace(".", "_"): n for n in _D_TOP}


def translate_diffusers_underscored(name: str) -> Target | None:
    """Target of an underscored diffusers Hunyuan name (``transformer_blocks_0_attn_to_q``)."""
    for pattern, prefix, table in _D_GROUPS:
        m = pattern.match(name)
        if m:
            inner = table.get(m.group(2))
            return None if inner is None else Target((f"{prefix}.{m.group(1)}.{inner}",))
    return Target((_D_U_TOP[name],)) if name in _D_U_TOP else None


_ORIGINAL_HINT = re.compile(r"^(double_blocks\.|single_blocks\.|final_layer\.|img_in\.|txt_in\.|time_in\.|vector_in\.|guidance_in\.)")
_COMFY_HINT = re.compile(
    r"^(double_blocks\.\d+\.(img|txt)_(attn\.|mlp\.\d|mod\.lin$)|single_blocks\.\d+\.(modulation\.lin$|norm\.)"
    r"|(time_in|guidance_in)\.(in|out)_layer|txt_in\.(t_embedder\.(in|out)_layer|c_embedder\.(in|out)_layer|individual_token_refiner\.blocks\.\d+\.(self_attn\.|mlp\.\d)))"
)


def looks_original(name: str) -> bool:
    """Tencent or ComfyUI naming (double_blocks / single_blocks / final_layer / ...)."""
    return bool(_ORIGINAL_HINT.match(name))


def looks_comfy(name: str) -> bool:
    """ComfyUI-native spelling (img_attn.qkv, img_mlp.0, .lin, in_layer ...)."""
    return bool(_COMFY_HINT.match(name))
