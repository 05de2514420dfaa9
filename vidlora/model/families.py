"""What each model family looks like: module inventories, block layout, real configs.

A LoRA is checked against an :class:`Inventory` (every ``nn.Linear`` and every parameter
shape of the diffusers transformer), which :func:`inventory` builds from a model, also one
on the meta device, so a compatibility check never needs weights. :data:`REAL_CONFIGS`
holds the transformer configs of the released models; :func:`meta_transformer` builds any
of them on the meta device in well under a second (Wan 14B: 16.4 G parameters, no memory).

Family names follow the hidden width, the one number every LoRA file carries in its
shapes: Wan 1536 = 1.3B, 3072 = 5B (Wan 2.2 TI2V), 5120 = 14B (2.1 T2V/I2V, 2.2 A14B);
HunyuanVideo 3072. A width no released model has is named ``"wan (width 24)"``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from vidlora.errors import LoRAMismatchError, SourceError

_log = logging.getLogger(__name__)

__all__ = [
    "LinearInfo",
    "Inventory",
    "inventory",
    "block_index",
    "block_linear_paths",
    "describe",
    "family_for_width",
    "family_label",
    "module_kind",
    "MODULE_KINDS",
    "REAL_CONFIGS",
    "HUB_MODEL_IDS",
    "meta_transformer",
    "transformer_config_from",
]

_WAN_FAMILIES = {1536: "wan-1.3b", 3072: "wan-5b", 5120: "wan-14b"}
_HUNYUAN_FAMILIES = {3072: "hunyuan-video"}
_LABELS = {
    "wan-1.3b": "Wan 1.3B",
    "wan-5b": "Wan 5B",
    "wan-14b": "Wan 14B",
    "hunyuan-video": "HunyuanVideo",
}
_ARCH_LABELS = {"wan": "Wan", "hunyuan-video": "HunyuanVideo"}


@dataclass(frozen=True)
class LinearInfo:
    in_features: int
    out_features: int
    has_bias: bool


@dataclass
class Inventory:
    """Everything a LoRA is validated against, without the weights themselves."""

    arch: str  # "wan" | "hunyuan-video"
    family: str  # "wan-1.3b" | "wan-5b" | "wan-14b" | "hunyuan-video" | "wan (width 24)" ...
    width: int
    task: str | None  # "t2v" | "i2v" when the config says so
    version: str | None  # "2.1" | "2.2" when the config says so
    linears: dict[str, LinearInfo] = field(default_factory=dict)
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)
    n_double: int = 0  # Wan: number of blocks; Hunyuan: number of double blocks
    n_blocks: int = 0  # Wan: number of blocks; Hunyuan: double + single


def family_for_width(arch: str, width: int) -> str:
    """The family name a hidden width implies for an architecture."""
    table = _WAN_FAMILIES if arch == "wan" else _HUNYUAN_FAMILIES
    return table.get(width) or f"{arch} (width {width})"


def family_label(family: str) -> str:
    """Human name of a family: "Wan 14B", "HunyuanVideo", "Wan" for unnamed widths."""
    if family in _LABELS:
        return _LABELS[family]
    arch = family.split(" (", 1)[0]
    return _ARCH_LABELS.get(arch, arch)


def describe(inv: Inventory) -> str:
    """One line naming the model: "Wan 1.3B (width 1536)"."""
    return f"{family_label(inv.family)} (width {inv.width})"


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    # torch.compile wraps the module; the parameter names live on the original.
    return getattr(model, "_orig_mod", model)


def _arch_of(model: torch.nn.Module) -> str:
    names = [c.__name__ for c in type(model).__mro__]
    if any(n.startswith("HunyuanVideo") and "Transformer" in n for n in names) and hasattr(
        model, "single_transformer_blocks"
    ):
        return "hunyuan-video"
    if any(n.startswith("Wan") and "Transformer" in n for n in names) and hasattr(model, "blocks"):
        return "wan"
    raise LoRAMismatchError(
        f"model class {type(model).__name__} is not supported: expected a diffusers "
        "WanTransformer3DModel or HunyuanVideoTransformer3DModel (pass pipe.transformer)"
    )


def _config_value(config: Any, name: str, default: Any = None) -> Any:
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(name, default)
    return getattr(config, name, default)


def _wan_task_version(config: Any, width: int) -> tuple[str | None, str | None]:
    image_dim = _config_value(config, "image_dim")
    in_channels = _config_value(config, "in_channels")
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


def inventory(model: torch.nn.Module) -> Inventory:
    """The Inventory of a diffusers Wan or HunyuanVideo transformer (any device, meta too)."""
    model = _unwrap(model)
    arch = _arch_of(model)
    config = getattr(model, "config", None)
    heads = _config_value(config, "num_attention_heads")
    head_dim = _config_value(config, "attention_head_dim")
    if heads and head_dim:
        width = int(heads) * int(head_dim)
    elif arch == "wan":
        width = int(model.patch_embedding.out_channels)
    else:
        width = int(model.x_embedder.proj.out_channels)

    linears = {
        name: LinearInfo(int(mod.in_features), int(mod.out_features), mod.bias is not None)
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear)
    }
    params = {name: tuple(int(s) for s in p.shape) for name, p in model.named_parameters()}
    if arch == "wan":
        task, version = _wan_task_version(config, width)
        n_double = n_blocks = len(model.blocks)
    else:
        task = "i2v" if _config_value(config, "image_condition_type") else "t2v"
        version = None
        n_double = len(model.transformer_blocks)
        n_blocks = n_double + len(model.single_transformer_blocks)
    return Inventory(
        arch=arch,
        family=family_for_width(arch, width),
        width=width,
        task=task,
        version=version,
        linears=linears,
        params=params,
        n_double=n_double,
        n_blocks=n_blocks,
    )


_BLOCK_RE = re.compile(r"^(blocks|transformer_blocks|single_transformer_blocks)\.(\d+)\.")


def block_index(inv: Inventory, path: str) -> int | None:
    """Global block number of a module/parameter path; None outside the blocks.

    Hunyuan single blocks follow the double blocks: single block M is ``n_double + M``.
    """
    m = _BLOCK_RE.match(path)
    if m is None:
        return None
    kind, idx = m.group(1), int(m.group(2))
    if kind == "single_transformer_blocks":
        return inv.n_double + idx
    return idx


# The Linears vidlora patches by default: the attention projections and the MLPs inside
# the DiT blocks, where >95% of a video DiT's FLOPs are. Modulation linears (norm1.linear,
# norm.linear) see one token per sample, so a fused kernel buys nothing there.
_WAN_BLOCK_LINEAR = re.compile(
    r"^blocks\.\d+\.(attn1\.(to_q|to_k|to_v|to_out\.0)"
    r"|attn2\.(to_q|to_k|to_v|to_out\.0|add_k_proj|add_v_proj)"
    r"|ffn\.net\.0\.proj|ffn\.net\.2)$"
)
# HunyuanVideo's per-block adaLN modulation Linears (norm1.linear, norm1_context.linear,
# norm.linear: 3.4 B of the real model's 12.8 B parameters) are patched too, so fp8=True
# stores them in FP8 as well (left in bf16 they would keep 6.8 GB) and LoRAs that train
# img_mod/txt_mod/modulation reach a unit without a second patch.
_HUNYUAN_BLOCK_LINEAR = re.compile(
    r"^(transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
    r"|ff\.net\.0\.proj|ff\.net\.2|ff_context\.net\.0\.proj|ff_context\.net\.2|norm1\.linear|norm1_context\.linear)"
    r"|single_transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v)|proj_mlp|proj_out|norm\.linear))$"
)


def block_linear_paths(inv: Inventory) -> list[str]:
    """The block Linears attach patches by default, in model order."""
    pattern = _WAN_BLOCK_LINEAR if inv.arch == "wan" else _HUNYUAN_BLOCK_LINEAR
    return [name for name in inv.linears if pattern.match(name)]


MODULE_KINDS = ("self-attn", "cross-attn", "image cross-attn", "ffn", "other")

_WAN_KINDS = (
    ("image cross-attn", re.compile(r"^(blocks\.\d+\.attn2\.(add_k_proj|add_v_proj|norm_added_k)|condition_embedder\.image_embedder)")),
    ("self-attn", re.compile(r"^blocks\.\d+\.attn1\.")),
    ("cross-attn", re.compile(r"^blocks\.\d+\.attn2\.")),
    ("ffn", re.compile(r"^blocks\.\d+\.ffn\.")),
)
_HUNYUAN_KINDS = (
    # Hunyuan attends over the joint image+text sequence: every block attention is self-attn.
    ("self-attn", re.compile(r"^(transformer_blocks|single_transformer_blocks)\.\d+\.attn\.")),
    ("ffn", re.compile(r"^(transformer_blocks\.\d+\.(ff|ff_context)\.|single_transformer_blocks\.\d+\.proj_mlp)")),
)


def module_kind(arch: str, path: str) -> str:
    """One of MODULE_KINDS for a module or parameter path of the given architecture."""
    for kind, pattern in _WAN_KINDS if arch == "wan" else _HUNYUAN_KINDS:
        if pattern.match(path):
            return kind
    return "other"


# --- real configs -------------------------------------------------------------------
# transformer/config.json of the released diffusers repos. Written here from the model
# cards' published shapes (see /work/shared/notes/lora-formats.md §2.1, §3.1) and the
# diffusers constructor defaults, not downloaded: this machine has no Hub access.
_WAN_COMMON: dict[str, Any] = dict(
    _class_name="WanTransformer3DModel",
    patch_size=[1, 2, 2],
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    image_dim=None,
    added_kv_proj_dim=None,
    rope_max_seq_len=1024,
)
_WAN_14B = dict(_WAN_COMMON, num_attention_heads=40, num_layers=40, ffn_dim=13824)
_HUNYUAN_COMMON: dict[str, Any] = dict(
    _class_name="HunyuanVideoTransformer3DModel",
    in_channels=16,
    out_channels=16,
    num_attention_heads=24,
    attention_head_dim=128,
    num_layers=20,
    num_single_layers=40,
    num_refiner_layers=2,
    mlp_ratio=4.0,
    patch_size=2,
    patch_size_t=1,
    qk_norm="rms_norm",
    guidance_embeds=True,
    text_embed_dim=4096,
    pooled_projection_dim=768,
    rope_theta=256.0,
    rope_axes_dim=[16, 56, 56],
    image_condition_type=None,
)

REAL_CONFIGS: dict[str, dict[str, Any]] = {
    "wan2.1-t2v-1.3b": dict(_WAN_COMMON, num_attention_heads=12, num_layers=30, ffn_dim=8960),
    "wan2.1-t2v-14b": dict(_WAN_14B),
    "wan2.1-i2v-14b-480p": dict(_WAN_14B, in_channels=36, image_dim=1280, added_kv_proj_dim=5120),
    "wan2.2-ti2v-5b": dict(
        _WAN_COMMON, num_attention_heads=24, num_layers=30, ffn_dim=14336, in_channels=48, out_channels=48
    ),
    # A14B: transformer (high noise) and transformer_2 (low noise) share this config.
    "wan2.2-t2v-a14b": dict(_WAN_14B),
    "wan2.2-i2v-a14b": dict(_WAN_14B, in_channels=36),
    "hunyuan-video-t2v": dict(_HUNYUAN_COMMON),
    # hunyuanvideo-community/HunyuanVideo-I2V (token replace, 16 channels) and -33ch
    # (Tencent's first I2V release: 16 noise + 16 image + 1 mask channels, no guidance).
    "hunyuan-video-i2v": dict(_HUNYUAN_COMMON, image_condition_type="token_replace"),
    "hunyuan-video-i2v-33ch": dict(
        _HUNYUAN_COMMON, in_channels=33, guidance_embeds=False, image_condition_type="latent_concat"
    ),
}

HUB_MODEL_IDS: dict[str, str] = {
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": "wan2.1-t2v-1.3b",
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": "wan2.1-t2v-14b",
    "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers": "wan2.1-i2v-14b-480p",
    "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers": "wan2.1-i2v-14b-480p",  # same transformer shapes
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers": "wan2.2-ti2v-5b",
    "Wan-AI/Wan2.2-T2V-A14B-Diffusers": "wan2.2-t2v-a14b",
    "Wan-AI/Wan2.2-I2V-A14B-Diffusers": "wan2.2-i2v-a14b",
    "hunyuanvideo-community/HunyuanVideo": "hunyuan-video-t2v",
    "hunyuanvideo-community/HunyuanVideo-I2V": "hunyuan-video-i2v",
    "hunyuanvideo-community/HunyuanVideo-I2V-33ch": "hunyuan-video-i2v-33ch",
}


def _model_class(config: dict[str, Any]):
    name = config.get("_class_name")
    if name is None:
        name = "HunyuanVideoTransformer3DModel" if "num_single_layers" in config else "WanTransformer3DModel"
    if name == "WanTransformer3DModel":
        from diffusers import WanTransformer3DModel

        return WanTransformer3DModel
    if name == "HunyuanVideoTransformer3DModel":
        from diffusers import HunyuanVideoTransformer3DModel

        return HunyuanVideoTransformer3DModel
    raise LoRAMismatchError(
        f"transformer class {name} is not supported: expected WanTransformer3DModel or "
        "HunyuanVideoTransformer3DModel"
    )


def meta_transformer(config_or_name: str | dict[str, Any]) -> torch.nn.Module:
    """A diffusers transformer built on the meta device (shapes only, no memory).

    ``config_or_name``: a REAL_CONFIGS name, a known Hub model id, or a config dict.
    """
    if isinstance(config_or_name, str):
        key = HUB_MODEL_IDS.get(config_or_name, config_or_name)
        if key not in REAL_CONFIGS:
            raise SourceError(
                f"unknown model config {config_or_name!r}: expected one of {sorted(REAL_CONFIGS)} "
                "or a config dict"
            )
        config = REAL_CONFIGS[key]
    else:
        config = config_or_name
    cls = _model_class(config)
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        with torch.device("meta"):
            return cls(**kwargs).eval()
    except TypeError as exc:  # a config key this diffusers version does not know
        raise SourceError(f"cannot build {cls.__name__} from this config: {exc}") from None


def _read_config_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: not a readable transformer config.json ({exc})") from None
    if not isinstance(config, dict):
        raise SourceError(f"{path}: a config.json must hold a JSON object")
    return config


def transformer_config_from(model_id_or_dir: str) -> dict[str, Any]:
    """The transformer config of a model, without weights.

    A local diffusers folder (``transformer/config.json``, or a transformer folder's own
    ``config.json``); a REAL_CONFIGS name; else ``transformer/config.json`` alone from
    the Hugging Face Hub (cached by huggingface_hub). When the Hub cannot be reached and
    the id is a released model in HUB_MODEL_IDS, the built-in config stands in (logged).
    """
    if os.path.isdir(model_id_or_dir):
        for candidate in ("transformer/config.json", "config.json"):
            path = os.path.join(model_id_or_dir, candidate)
            if os.path.isfile(path):
                config = _read_config_json(path)
                if candidate == "config.json" and "_class_name" in config and "Transformer" not in str(
                    config["_class_name"]
                ):
                    continue
                return config
        raise SourceError(
            f"{model_id_or_dir}: no transformer/config.json in this folder (expected a diffusers "
            "model folder or its transformer/ subfolder)"
        )
    if model_id_or_dir in REAL_CONFIGS:
        return dict(REAL_CONFIGS[model_id_or_dir])
    if model_id_or_dir.count("/") != 1:
        raise SourceError(
            f"{model_id_or_dir!r} is neither a local folder nor a Hub model id (owner/name); "
            f"built-in configs: {sorted(REAL_CONFIGS)}"
        )
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(model_id_or_dir, "transformer/config.json")
    except Exception as exc:  # network, auth, missing repo/file: all one user-facing failure
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        known = HUB_MODEL_IDS.get(model_id_or_dir)
        if known is not None:
            _log.warning("vidlora: Hub unavailable for %s (%s); using the built-in %s config", model_id_or_dir, why, known)
            return dict(REAL_CONFIGS[known])
        raise SourceError(
            f"cannot fetch transformer/config.json of {model_id_or_dir!r} from the Hugging Face Hub ({why})"
        ) from None
    return _read_config_json(path)
