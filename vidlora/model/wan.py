"""Wan 2.1 / 2.2 (``WanTransformer3DModel``): 1.3B, 5B (Wan 2.2 TI2V), 14B (2.1 T2V / I2V,
2.2 A14B with two experts).

Names: /work/shared/notes/lora-formats.md §2.2, checked against diffusers'
``convert_wan_transformer_to_diffusers`` and the module tree. Two traps: original
``norm3`` (the affine cross-attention LayerNorm) is diffusers ``norm2`` and original
``norm2`` is diffusers ``norm3``; ``modulation`` is a parameter (``scale_shift_table``),
not a module.

Patched by default: the attention projections and the FFN of every block, where >95% of
the FLOPs are. The modulation Linears see one token per sample, so a fused kernel buys
nothing there. q/k/v, cross k/v and the I2V image k/v are fused siblings (diffusers'
``WanAttention`` reads ``to_qkv`` / ``to_kv`` / ``to_added_kv`` when fused).

Real configs: transformer/config.json of the released diffusers repos, written from the
model cards' published shapes and diffusers' constructor defaults (lora-formats.md §2.1),
not downloaded (this machine has no Hub access).
"""

from __future__ import annotations

from typing import Any

from vidlora.errors import LoRAFormatError

from .cp_plans import WAN_CP
from .names import BlockGroup, NameTable
from .spec import FamilySpec, Fusion, GroupLayout, Signal, lycoris_label

__all__ = [
    "WAN", "WAN_NAMES", "BLOCK_INNER", "HEAD_DIM", "config_from_original_shapes", "BLOCK_LINEARS", "UNDERSCORE_ALIASES",
    "WAN_TOP", "WAN_TOP_PARAMS", "ORIGINAL_HINT", "DIFFUSERS_HINT", "wan_block_layout", "wan_task_version",
    "wan_lora_signals", "wan_scheme_label", "WAN_TOP_FACTS", "wan_block_group", "WAN_BASE_CONFIG",
]

HEAD_DIM = 128  # every released Wan model: 12 x 128 (1.3B), 24 x 128 (5B), 40 x 128 (14B)

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
BLOCK_LINEARS = (
    "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
    "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "attn2.add_k_proj", "attn2.add_v_proj",
    "ffn.net.0.proj", "ffn.net.2",
)  # fmt: skip
# ai-toolkit's old LyCORIS names are half converted (notes §2.3, W7): diffusers inner names
# under an original block prefix, and the original attention prefix with diffusers leaves.
UNDERSCORE_ALIASES = {
    **{n.replace(".", "_"): n for n in BLOCK_LINEARS},
    **{f"{orig}_{leaf}": f"{diff}.{leaf.replace('_0', '.0')}"
       for orig, diff in (("self_attn", "attn1"), ("cross_attn", "attn2"))
       for leaf in ("to_q", "to_k", "to_v", "to_out_0")},
}  # fmt: skip

WAN_TOP: dict[str, str] = {
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

WAN_TOP_PARAMS = {"head.modulation": "scale_shift_table", "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed"}


def wan_block_group(path: str, extra: dict[str, str] | None = None, aliases: dict[str, str] | None = None) -> BlockGroup:
    """A Wan-style block list (``blocks``, VACE's ``vace_blocks``): same inner names in
    both namings, ``extra`` original -> diffusers inner names on top."""
    return BlockGroup(
        path=path, original=path, names={**BLOCK_INNER, **(extra or {})}, params={"modulation": "scale_shift_table"},
        owner_param="scale_shift_table", underscore_aliases={**UNDERSCORE_ALIASES, **(aliases or {})},
    )


WAN_NAMES = NameTable(
    groups=(wan_block_group("blocks"),),
    top=WAN_TOP,
    top_params=WAN_TOP_PARAMS,
    top_owner_params={"head": "scale_shift_table"},
)

# Which file keys are in original naming (not shared with diffusers) and which in
# diffusers naming: the readers' claims. Prefix patterns, so that an unknown name under a
# known root is still claimed and then reported by name.
ORIGINAL_HINT = (
    r"^(blocks\.\d+\.(self_attn|cross_attn|ffn\.[02]($|\.)|modulation)|blocks\.\d+$|text_embedding\.|time_embedding\."
    r"|time_projection\.|img_emb\.|head\.|head$)"
)
DIFFUSERS_HINT = r"^(blocks\.\d+\.(attn1|attn2|ffn\.net|scale_shift_table)|condition_embedder\.|scale_shift_table$)"


def wan_scheme_label(kind: str, keys: list[str], modules: list[str], prefixes: set[str]) -> str:
    """Scheme ids of lora-formats.md §2.3 for a Wan file read by reader ``kind`` (``prefixes``:
    the dotted prefixes its keys carry, "" for none)."""
    lycoris = lycoris_label(keys)
    if kind == "original":
        if lycoris:
            return f"original Wan names, {lycoris}"
        if "base_model.model." in prefixes:
            return "W4b (raw PEFT save, original Wan names)"
        if any(".default." in k for k in keys) or prefixes <= {"", "pipe.dit."} and any(".lora_A." in k for k in keys):
            return "W5 (DiffSynth-Studio: bare original Wan names, PEFT lora_A/lora_B)"
        if any(".lora_down." in k for k in keys):
            return "W2 (original Wan names, kohya lora_down/lora_up)"
        if any(".lora_A." in k for k in keys):
            return "W1 (original Wan names, PEFT lora_A/lora_B)"
        return "W2 (original Wan names, full-tensor patches only)"
    if kind == "diffusers":
        if any(k.startswith("base_model.model.") for k in keys):
            return "W4b (raw PEFT save, diffusers names)"
        return "W4 (diffusers/PEFT names)"
    if kind in ("kohya", "kohya-double"):
        label = "W3b (VideoX-Fun lora_unet__ names)" if kind == "kohya-double" else "W3 (kohya/musubi lora_unet_ names)"
        return f"{label}, {lycoris}" if lycoris else label
    if kind == "lycoris-old":
        return "W7 (ai-toolkit old LyCORIS lycoris_ names)" + (f", {lycoris}" if lycoris else "")
    return f"Wan {kind} names"


def wan_task_version(config: Any, width: int) -> tuple[str | None, str | None]:
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    image_dim, in_channels = get("image_dim", None), get("in_channels", None)
    # Wan 2.1 I2V/FLF2V keep the CLIP image branch; Wan 2.2 I2V-A14B dropped it but still
    # takes 36 latent channels (16 noise + 16 image + 4 mask); TI2V-5B takes 48.
    if image_dim is not None:
        return "i2v", "2.1"
    if in_channels == 36:
        return "i2v", "2.2"
    if in_channels == 48 or width == 3072:
        return None, "2.2"
    task = "t2v" if in_channels == 16 else None
    version = "2.1" if width == 1536 else None  # only Wan 2.1 has a 1.3B model
    return task, version


def wan_lora_signals(names: list[str], deltas, width: int) -> list[Signal]:
    signals: list[Signal] = []
    image = [n for n in names if WAN.is_image_branch(n)]
    if image:
        signals.append(("task", "i2v", f"{len(image)} image cross-attention entries (e.g. {image[0]}): Wan 2.1 I2V/FLF2V branch"))
    patch = deltas.get("patch_embedding.weight")
    if patch is not None and getattr(patch, "ndim", 0) == 5:
        ch = int(patch.shape[1])
        if ch == 36:
            signals.append(("task", "i2v", "patch_embedding has 36 input channels (16 noise + 16 image + 4 mask)"))
        elif ch == 48:
            signals.append(("version", "2.2", "patch_embedding has 48 input channels (Wan 2.2 TI2V-5B)"))
        elif ch == 16:
            signals.append(("task", "t2v", "patch_embedding has 16 input channels (text-to-video)"))
    if width == 1536:
        signals.append(("version", "2.1", "hidden width 1536: only Wan 2.1 has a 1.3B model"))
    elif width == 3072:
        signals.append(("version", "2.2", "hidden width 3072: Wan 2.2 TI2V-5B"))
    return signals


def wan_block_layout(path: str, patched: tuple[str, ...] = (), width_in: tuple[str, ...] = (), **kw) -> GroupLayout:
    """The GroupLayout of a Wan-style block list: its 10 (12 with the image branch) Linears
    patched, q/k/v, k/v and image k/v fused, kinds and width rules; ``patched`` /
    ``width_in`` add inner Linears (VACE's proj_in / proj_out)."""
    return GroupLayout(
        path=path,
        patched=BLOCK_LINEARS + patched,
        fusions=(
            Fusion("attn1", "to_qkv", ("to_q", "to_k", "to_v"), cross=False),
            Fusion("attn2", "to_kv", ("to_k", "to_v"), cross=True),
            Fusion("attn2", "to_added_kv", ("add_k_proj", "add_v_proj"), cross=True),
        ),
        kinds=(("attn1.", "self-attn"), ("attn2.", "cross-attn"), ("ffn.", "ffn")),
        width_in=(*BLOCK_LINEARS[:-1], *width_in),
        width_out=("ffn.net.2",),
        width_params=("scale_shift_table", "norm2.weight", "norm2.bias", "attn1.norm_q.weight", "attn1.norm_k.weight"),
        image=("attn2.add_k_proj", "attn2.add_v_proj", "attn2.norm_added_k"),
        context=("attn2.to_k", "attn2.to_v", "attn2.add_k_proj", "attn2.add_v_proj"),  # text / CLIP image tokens
        **kw,
    )


# The top-level facts every Wan-derived spec shares (FamilySpec keyword arguments).
WAN_TOP_FACTS: dict[str, Any] = dict(
    top_width_in=("proj_out", "condition_embedder.time_proj", "condition_embedder.text_embedder.linear_2"),
    top_width_out=("condition_embedder.text_embedder.linear_1",),
    top_width_params=("scale_shift_table",),
    top_image=("condition_embedder.image_embedder",),
)

_COMMON: dict[str, Any] = dict(
    _class_name="WanTransformer3DModel", patch_size=[1, 2, 2], attention_head_dim=128, in_channels=16,
    out_channels=16, text_dim=4096, freq_dim=256, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
    image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
)  # fmt: skip
_14B = dict(_COMMON, num_attention_heads=40, num_layers=40, ffn_dim=13824)
# the constructor arguments every released Wan-derived transformer shares (no class name)
WAN_BASE_CONFIG: dict[str, Any] = {k: v for k, v in _COMMON.items() if k != "_class_name"}

WAN = FamilySpec(
    name="wan",
    label="Wan",
    classes=("WanTransformer3DModel",),
    names=WAN_NAMES,
    groups=(wan_block_layout("blocks"),),
    sizes={1536: ("wan-1.3b", "Wan 1.3B"), 3072: ("wan-5b", "Wan 5B"), 5120: ("wan-14b", "Wan 14B")},
    **WAN_TOP_FACTS,
    fused_processors=("WanAttnProcessor", "WanAttnProcessor2_0"),
    real_configs={
        "wan2.1-t2v-1.3b": dict(_COMMON, num_attention_heads=12, num_layers=30, ffn_dim=8960),
        "wan2.1-t2v-14b": dict(_14B),
        "wan2.1-i2v-14b-480p": dict(_14B, in_channels=36, image_dim=1280, added_kv_proj_dim=5120),
        "wan2.2-ti2v-5b": dict(_COMMON, num_attention_heads=24, num_layers=30, ffn_dim=14336, in_channels=48,
                               out_channels=48),  # fmt: skip
        # A14B: transformer (high noise) and transformer_2 (low noise) share this config.
        "wan2.2-t2v-a14b": dict(_14B),
        "wan2.2-i2v-a14b": dict(_14B, in_channels=36),
    },
    hub_ids={
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": "wan2.1-t2v-1.3b",
        "Wan-AI/Wan2.1-T2V-14B-Diffusers": "wan2.1-t2v-14b",
        "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers": "wan2.1-i2v-14b-480p",
        "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers": "wan2.1-i2v-14b-480p",  # same transformer shapes
        "Wan-AI/Wan2.2-TI2V-5B-Diffusers": "wan2.2-ti2v-5b",
        "Wan-AI/Wan2.2-T2V-A14B-Diffusers": "wan2.2-t2v-a14b",
        "Wan-AI/Wan2.2-I2V-A14B-Diffusers": "wan2.2-i2v-a14b",
    },
    task_version=wan_task_version,
    lora_signals=wan_lora_signals,
    expert_families=("wan-14b",),
    original_hint=ORIGINAL_HINT,
    diffusers_hint=DIFFUSERS_HINT,
    scheme_label=wan_scheme_label,
    fingerprint="blocks.N self_attn / cross_attn / ffn",
    cp_plans={"WanTransformer3DModel": WAN_CP},
)


def config_from_original_shapes(shapes: dict[str, tuple[int, ...]], head_dim: int = HEAD_DIM) -> dict:
    """A WanTransformer3DModel config from the tensor shapes of an original-names checkpoint."""
    try:
        width = shapes["blocks.0.self_attn.q.weight"][0]
        blocks = 1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("blocks."))
        patch = shapes["patch_embedding.weight"]
        head_out = shapes["head.head.weight"][0]
        cfg = dict(
            patch_size=tuple(patch[2:]),
            num_attention_heads=width // head_dim if width % head_dim == 0 else 1,
            attention_head_dim=head_dim if width % head_dim == 0 else width,
            in_channels=patch[1],
            out_channels=head_out // (patch[2] * patch[3] * patch[4]),
            text_dim=shapes["text_embedding.0.weight"][1],
            freq_dim=shapes["time_embedding.0.weight"][1],
            ffn_dim=shapes["blocks.0.ffn.0.weight"][0],
            num_layers=blocks,
            cross_attn_norm="blocks.0.norm3.weight" in shapes,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
        )
    except (KeyError, IndexError, ValueError) as e:
        raise LoRAFormatError(f"not a Wan transformer checkpoint: missing or odd tensor {e}") from None
    if "img_emb.proj.1.weight" in shapes:
        cfg["image_dim"] = shapes["img_emb.proj.1.weight"][1]
        cfg["added_kv_proj_dim"] = shapes["blocks.0.cross_attn.k_img.weight"][1]
    if "img_emb.emb_pos" in shapes:
        cfg["pos_embed_seq_len"] = shapes["img_emb.emb_pos"][1]
    return cfg
