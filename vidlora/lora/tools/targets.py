"""The target namings a LoRA can be written in, by the scheme IDs of notes/lora-formats.md.

==========  =====================  ======================================================
target      Wan / HunyuanVideo     keys (block 0 examples)
==========  =====================  ======================================================
diffusers   W4 / H5                ``transformer.blocks.0.attn1.to_q.lora_A.weight``; alpha in
                                   ``lora_adapter_metadata`` (a PEFT LoraConfig, as diffusers'
                                   ``save_lora_weights`` writes it); biases ``lora_B.bias``
comfyui     W2 / H4                ``diffusion_model.blocks.0.self_attn.q.lora_down.weight`` +
                                   ``.alpha``; ``diff`` / ``diff_b``; Wan modulation as
                                   ``blocks.0.modulation.diff`` (the spelling ComfyUI's generic
                                   key map reaches; it drops ``diff_m``); Hunyuan ComfyUI
                                   spellings (``img_attn.qkv``, ``img_mlp.0``, ``img_mod.lin``)
musubi      W3 / H2                ``lora_unet_blocks_0_self_attn_q.lora_down.weight`` +
                                   ``.alpha`` always (musubi's loader requires it)
original    W1 / H1                ``diffusion_model.blocks.0.self_attn.q.lora_A.weight``; Wan
                                   keeps ``.alpha`` keys, HunyuanVideo bakes alpha / r into B
                                   (diffusers' H1 converter reads no alpha); ``diff_m``
==========  =====================  ======================================================

The families built on Wan (VACE, SkyReels V2, Wan Animate) use Wan's namings with their own
name tables (VACE's ``vace_blocks.N.before_proj``), FramePack HunyuanVideo's, except that
musubi's ``networks.lora_framepack`` writes kohya keys over diffusers names. HunyuanVideo
1.5 (separate q/k/v originals) follows its producers (the coverage issue): diffusers names
(ai-toolkit, SimpleTuner), ComfyUI = ``diffusion_model.`` + Tencent names with
lora_down/lora_up (lightx2v), musubi ``networks.lora_hv_1_5``, original = Tencent's
trainer (PEFT, bare original names, lora_A/lora_B, alpha in ``lora_adapter_metadata``).
"""

from __future__ import annotations

from dataclasses import dataclass

from vidlora.errors import VidloraError

__all__ = ["Naming", "TARGETS", "naming_for", "target_of_scheme", "EXPERT_FORMS"]

TARGETS = ("diffusers", "comfyui", "musubi", "original")


@dataclass(frozen=True)
class Naming:
    """How one target writes one family's LoRA.

    names: "diffusers" (module paths as is), "original" (dotted original names),
        "underscored" (original names with dots as underscores, kohya style),
        "diffusers-underscored" (diffusers paths with underscores: musubi's FramePack).
    comfy: use ComfyUI's spellings where the family has its own.
    alpha: "metadata" (PEFT config with per-module patterns), "key" (``.alpha`` where the
        scale is not 1), "always" (``.alpha`` on every module), "bake" (alpha / r
        multiplied into B), "peft" (one r / lora_alpha in ``lora_adapter_metadata``; a
        module with another scale has it multiplied into B).
    modulation: a parameter-table delta as ``<owner>.diff_m`` ("diff_m") or as
        ``<parameter>.diff`` ("param").
    lycoris: LoHa / LoKr keep their LyCORIS tensors (hada_* / lokr_*).
    """

    target: str
    scheme: str
    prefix: str
    names: str
    comfy: bool
    down: str
    up: str
    alpha: str
    modulation: str
    lycoris: bool


_A, _B = ".lora_A.weight", ".lora_B.weight"
_DOWN, _UP = ".lora_down.weight", ".lora_up.weight"

_NAMINGS = {
    ("diffusers", "wan"): Naming("diffusers", "W4", "transformer.", "diffusers", False, _A, _B, "metadata", "param", False),
    ("comfyui", "wan"): Naming("comfyui", "W2", "diffusion_model.", "original", True, _DOWN, _UP, "key", "param", True),
    ("musubi", "wan"): Naming("musubi", "W3", "lora_unet_", "underscored", False, _DOWN, _UP, "always", "diff_m", True),
    ("original", "wan"): Naming("original", "W1", "diffusion_model.", "original", False, _A, _B, "key", "diff_m", True),
    ("diffusers", "hunyuan-video"): Naming("diffusers", "H5", "transformer.", "diffusers", False, _A, _B, "metadata",
                                           "param", False),
    ("comfyui", "hunyuan-video"): Naming("comfyui", "H4", "diffusion_model.", "original", True, _DOWN, _UP, "key",
                                         "param", True),
    ("musubi", "hunyuan-video"): Naming("musubi", "H2", "lora_unet_", "underscored", False, _DOWN, _UP, "always",
                                        "diff_m", True),
    ("original", "hunyuan-video"): Naming("original", "H1", "diffusion_model.", "original", False, _A, _B, "bake",
                                          "diff_m", True),
    ("musubi", "framepack"): Naming("musubi", "FP-musubi", "lora_unet_", "diffusers-underscored", False, _DOWN, _UP,
                                    "always", "diff_m", True),
    ("diffusers", "hunyuan-video-1.5"): Naming("diffusers", "HV15-diffusers", "transformer.", "diffusers", False, _A,
                                               _B, "metadata", "param", False),
    ("comfyui", "hunyuan-video-1.5"): Naming("comfyui", "HV15-comfy", "diffusion_model.", "original", False, _DOWN,
                                             _UP, "key", "param", True),
    ("musubi", "hunyuan-video-1.5"): Naming("musubi", "HV15-musubi", "lora_unet_", "underscored", False, _DOWN, _UP,
                                            "always", "diff_m", True),
    ("original", "hunyuan-video-1.5"): Naming("original", "HV15-tencent", "", "original", False, _A, _B, "peft",
                                              "diff_m", True),
}  # fmt: skip

# Targets with a two-expert (Wan 2.2 A14B) single-file form: ai-toolkit's W6, original
# names under ``transformer_1.`` (high noise) / ``transformer_2.`` (low noise).
EXPERT_FORMS = {"original": {"high": "diffusion_model.transformer_1.", "low": "diffusion_model.transformer_2."}}

# scheme id -> the target that writes that naming (merge and extract default to the
# naming of their first input)
_SCHEME_TARGET = {
    "W1": "original", "W2": "comfyui", "W3": "musubi", "W3b": "musubi", "W4": "diffusers", "W4b": "diffusers",
    "W5": "diffusers", "W6": "original", "W7": "musubi", "H1": "original", "H2": "musubi", "H3": "musubi",
    "H4": "comfyui", "H5": "diffusers", "H6": "diffusers",
}  # fmt: skip
# HunyuanVideo 1.5 / FramePack labels are words, not IDs: the producer in the label says
_LABEL_TARGET = (("ComfyUI", "comfyui"), ("Tencent trainer", "original"), ("kohya/musubi", "musubi"),
                 ("musubi", "musubi"), ("diffusers", "diffusers"))  # fmt: skip


def naming_for(target: str, arch: str) -> Naming:
    """The naming ``target`` writes for family ``arch`` (its own, else its lineage's: Wan VACE
    writes Wan's); an error names the known targets."""
    if target not in TARGETS:
        raise VidloraError(f"unknown target naming {target!r}; expected one of {', '.join(TARGETS)}")
    from vidlora.model import spec_for_arch

    naming = _NAMINGS.get((target, arch)) or _NAMINGS.get((target, spec_for_arch(arch).lineage))
    if naming is None:
        raise VidloraError(f"no {target} naming is defined for model family {arch!r}")
    return naming


def target_of_scheme(scheme: str) -> str:
    """The target naming closest to a file's scheme label ("W2 (original Wan ...)" -> comfyui)."""
    sid = scheme.split(" ", 1)[0]
    if sid in _SCHEME_TARGET:
        return _SCHEME_TARGET[sid]
    return next((target for word, target in _LABEL_TARGET if word in scheme), "diffusers")
