"""Wan module names: original (Wan / ComfyUI / musubi / LightX2V) -> diffusers.

Source: /work/shared/notes/lora-formats.md §2.2, checked against diffusers'
``convert_wan_transformer_to_diffusers`` and the WanTransformer3DModel module tree.
Two traps: original ``norm3`` (the affine cross-attention LayerNorm) is diffusers
``norm2`` and original ``norm2`` is diffusers ``norm3``; ``modulation`` is a parameter
(``scale_shift_table``), not a module.
"""

from __future__ import annotations

import re

from .targets import Target

__all__ = [
    "translate_original",
    "translate_underscored",
    "looks_original",
    "looks_diffusers",
    "BLOCK_INNER",
]

# inside blocks.N: original name -> diffusers name (Linears and norms)
BLOCK_INNER: dict[str, str] = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "norm1": "norm1",
    "norm2": "norm3",
    "norm3": "norm2",
}
_BLOCK_PARAMS = {"modulation": "scale_shift_table"}

_TOP: dict[str, str] = {
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "head.head": "proj_out",
    "patch_embedding": "patch_embedding",
}
_TOP_PARAMS = {"head.modulation": "scale_shift_table", "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed"}

# ai-toolkit's old LyCORIS names are half converted (notes §2.3, W7): diffusers inner
# names under an original block prefix. Accepted only by translate_underscored(mixed=True).
_DIFFUSERS_INNER_LINEARS = (
    "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
    "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "attn2.add_k_proj", "attn2.add_v_proj",
    "ffn.net.0.proj", "ffn.net.2",
)
_HALF_CONVERTED = {
    "self_attn.to_q": "attn1.to_q", "self_attn.to_k": "attn1.to_k", "self_attn.to_v": "attn1.to_v",
    "self_attn.to_out.0": "attn1.to_out.0",
    "cross_attn.to_q": "attn2.to_q", "cross_attn.to_k": "attn2.to_k", "cross_attn.to_v": "attn2.to_v",
    "cross_attn.to_out.0": "attn2.to_out.0",
}

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_BLOCK_ONLY_RE = re.compile(r"^blocks\.(\d+)$")


def translate_original(name: str) -> Target | None:
    """Diffusers target of an original (dotted) Wan module name, None if unknown.

    ``blocks.N`` and ``head`` alone are the owners of a ``diff_m`` (modulation) key.
    """
    m = _BLOCK_ONLY_RE.match(name)
    if m:
        return Target((f"blocks.{m.group(1)}.scale_shift_table",), is_param=True)
    if name == "head":
        return Target(("scale_shift_table",), is_param=True)
    m = _BLOCK_RE.match(name)
    if m:
        n, inner = m.group(1), m.group(2)
        if inner in BLOCK_INNER:
            return Target((f"blocks.{n}.{BLOCK_INNER[inner]}",))
        if inner in _BLOCK_PARAMS:
            return Target((f"blocks.{n}.{_BLOCK_PARAMS[inner]}",), is_param=True)
        return None
    if name in _TOP:
        return Target((_TOP[name],))
    if name in _TOP_PARAMS:
        return Target((_TOP_PARAMS[name],), is_param=True)
    return None


def _underscore(table: dict[str, str]) -> dict[str, str]:
    return {k.replace(".", "_"): k for k in table}


_U_INNER = _underscore({**BLOCK_INNER, **_BLOCK_PARAMS})
_U_TOP = _underscore({**_TOP, **_TOP_PARAMS})
_U_MIXED = {k.replace(".", "_"): v for k, v in {**_HALF_CONVERTED, **{d: d for d in _DIFFUSERS_INNER_LINEARS}}.items()}
_U_BLOCK_RE = re.compile(r"^blocks_(\d+)_(.+)$")
_U_BLOCK_ONLY_RE = re.compile(r"^blocks_(\d+)$")


def translate_underscored(name: str, mixed: bool = False) -> Target | None:
    """Target of a kohya-style underscored original Wan name (``blocks_0_self_attn_q``).

    Underscores are never guessed back into dots: the name is looked up in the table
    of known names with dots replaced. ``mixed`` also accepts ai-toolkit's half-converted
    diffusers inner names (``blocks_0_ffn_net_0_proj``, ``blocks_0_self_attn_to_out_0``).
    """
    m = _U_BLOCK_ONLY_RE.match(name)
    if m:
        return translate_original(f"blocks.{m.group(1)}")
    m = _U_BLOCK_RE.match(name)
    if m:
        n, inner = m.group(1), m.group(2)
        if inner in _U_INNER:
            return translate_original(f"blocks.{n}.{_U_INNER[inner]}")
        if mixed and inner in _U_MIXED:
            return Target((f"blocks.{n}.{_U_MIXED[inner]}",))
        return None
    if name in _U_TOP:
        return translate_original(_U_TOP[name])
    if name == "head":
        return translate_original("head")
    return None


_ORIGINAL_HINT = re.compile(
    r"^(blocks\.\d+\.(self_attn|cross_attn|ffn\.[02]($|\.)|modulation)|blocks\.\d+$|text_embedding\.|time_embedding\."
    r"|time_projection\.|img_emb\.|head\.|head$)"
)
_DIFFUSERS_HINT = re.compile(
    r"^(blocks\.\d+\.(attn1|attn2|ffn\.net|scale_shift_table)|condition_embedder\.|scale_shift_table$)"
)


def looks_original(name: str) -> bool:
    """The module name uses original Wan naming (not shared with diffusers)."""
    return bool(_ORIGINAL_HINT.match(name))


def looks_diffusers(name: str) -> bool:
    """The module name uses diffusers Wan naming (not shared with the original)."""
    return bool(_DIFFUSERS_HINT.match(name))
