"""Splitting a LoRA key into (module name, tensor role), and the prefixes producers add.

Every scheme ends its keys with one of a small set of tensor suffixes (lora_down / lora_A
/ alpha / diff / hada_w1_a / ...). Splitting on the longest matching suffix leaves the
module name in the producer's own naming, which each reader then translates.
"""

from __future__ import annotations

__all__ = [
    "ROLE_SUFFIXES",
    "FLOAT_ROLES",
    "split_role",
    "strip_prefix",
    "DOTTED_PREFIXES",
    "is_text_encoder_key",
]

# suffix -> role. Roles: down/up (LoRA A/B), up_bias (PEFT lora_B.bias), alpha, mid
# (LoCon Tucker core), dora, hada_* (LoHa), lokr_* (LoKr), glora_*, oft_*, diff / diff_b /
# diff_m / w_norm / b_norm (full-tensor patches), set_weight / reshape_weight.
ROLE_SUFFIXES: dict[str, str] = {
    ".lora_down.weight": "down",
    ".lora_up.weight": "up",
    ".lora_A.weight": "down",
    ".lora_B.weight": "up",
    ".lora_B.bias": "up_bias",
    ".lora_A.default.weight": "down",
    ".lora_B.default.weight": "up",
    ".lora_B.default.bias": "up_bias",
    "_lora.down.weight": "down",
    "_lora.up.weight": "up",
    ".lora.down.weight": "down",
    ".lora.up.weight": "up",
    ".lora_linear_layer.down.weight": "down",
    ".lora_linear_layer.up.weight": "up",
    ".lora_A": "down",
    ".lora_B": "up",
    ".lora_mid.weight": "mid",
    ".alpha": "alpha",
    ".dora_scale": "dora",
    ".lora_magnitude_vector": "dora",
    ".lora_magnitude_vector.default": "dora",
    ".lora_magnitude_vector.default.weight": "dora",
    ".lora_magnitude_vector.weight": "dora",
    ".magnitude": "dora",
    ".hada_w1_a": "hada_w1_a",
    ".hada_w1_b": "hada_w1_b",
    ".hada_w2_a": "hada_w2_a",
    ".hada_w2_b": "hada_w2_b",
    ".hada_t1": "hada_t1",
    ".hada_t2": "hada_t2",
    ".lokr_w1": "lokr_w1",
    ".lokr_w1_a": "lokr_w1_a",
    ".lokr_w1_b": "lokr_w1_b",
    ".lokr_w2": "lokr_w2",
    ".lokr_w2_a": "lokr_w2_a",
    ".lokr_w2_b": "lokr_w2_b",
    ".lokr_t2": "lokr_t2",
    ".a1.weight": "glora_a1",
    ".a2.weight": "glora_a2",
    ".b1.weight": "glora_b1",
    ".b2.weight": "glora_b2",
    ".oft_blocks": "oft_blocks",
    ".oft_diag": "oft_diag",
    ".rescale": "oft_rescale",
    ".diff": "diff",
    ".diff_b": "diff_b",
    ".diff_m": "diff_m",
    ".w_norm": "w_norm",
    ".b_norm": "b_norm",
    ".set_weight": "set_weight",
    ".reshape_weight": "reshape_weight",
}
_BY_LENGTH = sorted(ROLE_SUFFIXES, key=len, reverse=True)

# Roles whose tensors must be floating point (all but reshape_weight, an int list).
FLOAT_ROLES = frozenset(set(ROLE_SUFFIXES.values()) - {"reshape_weight"})

# Producers' prefixes in front of dotted module names, longest first.
DOTTED_PREFIXES = (
    "model.diffusion_model.",
    "diffusion_model.",
    "base_model.model.",
    "transformer.",
    "pipe.dit.",
    "unet.",
    "model.",
)

_TEXT_ENCODER_PREFIXES = ("lora_te", "text_encoder", "text_encoders.", "te.", "te1.", "te2.", "lora_llm", "llm.")


def split_role(key: str) -> tuple[str, str] | None:
    """(module, role) for a key ending in a known tensor suffix, else None."""
    for suffix in _BY_LENGTH:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], ROLE_SUFFIXES[suffix]
    return None


def strip_prefix(key: str) -> tuple[str, str]:
    """(prefix, rest) for the longest known dotted prefix ("" when none)."""
    for prefix in DOTTED_PREFIXES:
        if key.startswith(prefix):
            return prefix, key[len(prefix) :]
    return "", key


def module_of(key: str) -> str | None:
    """The module name of a tensor key, known suffix and dotted prefix removed (None when
    the key ends in no known tensor suffix)."""
    split = split_role(key)
    return None if split is None else strip_prefix(split[0])[1]


def is_text_encoder_key(key: str) -> bool:
    return key.startswith(_TEXT_ENCODER_PREFIXES)
