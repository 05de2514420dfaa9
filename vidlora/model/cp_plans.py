"""The context-parallel plan of every transformer class vidlora splits (see parallel_plan.py).

Each spec names its classes' plans (``FamilySpec.cp_plans``); they live here together
because they are read together: the same split points recur (the rotary tables' outputs,
the hidden states entering the first block, a gather at ``proj_out``) and the reasons for
each difference are easier to check side by side. Every plan here was checked on tiny
models against the one-process result (tests/runtime/test_context_parallel.py).
"""

from __future__ import annotations

import math
from typing import Any

from .parallel_plan import CPPlan, Gather, Split, config_value, patched_tokens

__all__ = [
    "WAN_CP", "HUNYUAN_CP", "WAN_VACE_CP", "SKYREELS_V2_CP", "WAN_ANIMATE_CP", "FRAMEPACK_CP", "HUNYUAN_VIDEO_15_CP",
    "wan_tokens", "hunyuan_tokens",
]  # fmt: skip


def wan_tokens(config: Any, inputs) -> int:
    """Video tokens of a Wan-style call: the latent [B, C, F, H, W] cut into patches."""
    return patched_tokens(tuple(inputs["hidden_states"].shape), tuple(config_value(config, "patch_size", (1, 2, 2))))


def hunyuan_tokens(config: Any, inputs) -> int:
    """Video tokens of a HunyuanVideo-style call."""
    p = int(config_value(config, "patch_size", 2))
    return patched_tokens(tuple(inputs["hidden_states"].shape), (int(config_value(config, "patch_size_t", 1)), p, p))


_ROPE = {0: Split(1, 4, output=True), 1: Split(1, 4, output=True)}  # Wan's (cos, sin): [1, tokens, 1, D]

# diffusers' own WanTransformer3DModel._cp_plan: split the rotary tables' outputs and the
# hidden states entering blocks.0 (and per-token timesteps, Wan 2.2 TI2V) along the
# tokens, gather at proj_out. The text (512) and Wan 2.1 I2V image (257) tokens stay whole;
# Wan's processor already keeps cross-attention local.
WAN_CP = CPPlan(model_plan=True, tokens=wan_tokens)


def _hunyuan_refuse(config: Any, ring: int) -> str | None:
    if config_value(config, "image_condition_type") == "token_replace":
        return ("HunyuanVideo-I2V token-replace modulates the first latent frame's tokens apart from the rest, "
                "counted from the start of the whole sequence; split across ranks, every rank would treat its "
                "own first tokens as the first frame")  # fmt: skip
    return None


# The video tokens are split where they are made (x_embedder's output, the rotary tables)
# and gathered at proj_out. The text tokens (up to 256 after the refiner) stay whole on
# every rank: they are concatenated to the video tokens inside each attention call, where
# the runtime's joint processor head-slices them. The attention mask the model builds then
# covers [local video tokens, text tokens]; its text part is what the processor reads.
HUNYUAN_CP = CPPlan(
    plan={
        "x_embedder": {0: Split(1, 3, output=True)},
        "rope": {0: Split(0, 2, output=True), 1: Split(0, 2, output=True)},
        "proj_out": Gather(1, 3),
    },
    joint_text=True,
    joint_under=("transformer_blocks", "single_transformer_blocks"),
    tokens=hunyuan_tokens,
    refuse=_hunyuan_refuse,
)

# Wan VACE: the control branch (vace_blocks) runs first on the control tokens, which line up
# with the video tokens one to one (the forward zero-pads them to the video's length), so
# both are split where they enter vace_blocks.0; the hints it returns are local, as the
# hidden states they are added to in blocks.N. (The forward passes the whole hidden
# states to every vace block, but only vace_blocks.0 reads them, through proj_in.)
WAN_VACE_CP = CPPlan(
    plan={
        "rope": _ROPE,
        "vace_blocks.0": {"hidden_states": Split(1, 3), "control_hidden_states": Split(1, 3)},
        "blocks.0": {"hidden_states": Split(1, 3)},
        "proj_out": Gather(1, 3),
    },
    tokens=wan_tokens,
)


def _frames(config: Any, inputs) -> int:
    return inputs["hidden_states"].shape[2] // tuple(config_value(config, "patch_size", (1, 2, 2)))[0]


def _skyreels_check(config: Any, inputs, ranks: int) -> str | None:
    timestep = inputs.get("timestep")
    if getattr(timestep, "ndim", 1) == 2 and timestep.shape[1] % ranks:
        return (f"diffusion forcing gives each of the {timestep.shape[1]} latent frames its own timestep, split "
                f"across the ranks with the frames' tokens, so the latent frames must divide by {ranks}: choose a "
                "frame count that makes them")  # fmt: skip
    return None


def _skyreels_refuse(config: Any, ring: int) -> str | None:
    if ring > 1 and int(config_value(config, "num_frame_per_block", 1) or 1) > 1:
        return ("its causal (frame-block) attention mask covers all tokens x all tokens, and diffusers' ring "
                "attention hands that same mask to every key/value chunk: use Ulysses (ring=1)")  # fmt: skip
    return None


# SkyReels V2: Wan's plan. Its processor also sends cross-attention (text and image keys,
# whole on every rank) through Ulysses, which duplicates those keys per rank: right, but
# not bit for bit; kept local here, cross-attention is exact. Diffusion forcing (a timestep
# per latent frame) splits with the frames: the "" entry cuts timestep [B, F].
SKYREELS_V2_CP = CPPlan(
    plan={
        "rope": _ROPE,
        "blocks.0": {"hidden_states": Split(1, 3)},
        "": {"timestep": Split(1, 2)},
        "proj_out": Gather(1, 3),
    },
    local_attention=("blocks.*.attn2",),
    tokens=wan_tokens,
    check=_skyreels_check,
    refuse=_skyreels_refuse,
)


def _animate_check(config: Any, inputs, ranks: int) -> str | None:
    frames = _frames(config, inputs)
    if frames % ranks:
        return (f"Wan Animate's face adapter attends frame by frame, so each rank needs whole latent frames: the "
                f"{frames} latent frames (the reference frame included) must divide by {ranks}")  # fmt: skip
    return None


# Wan 2.2 Animate: Wan's plan, plus the face adapter. It attends each latent frame's tokens
# to that frame's motion vectors, so the motion vectors [B, frames, N, C] are split by frame
# with the tokens (whole frames per rank: _animate_check) and the face attention stays
# local (per frame, nothing to exchange).
WAN_ANIMATE_CP = CPPlan(
    plan={
        "rope": _ROPE,
        "blocks.0": {"hidden_states": Split(1, 3)},
        "face_adapter.*": {"encoder_hidden_states": Split(1, 4)},
        "proj_out": Gather(1, 3),
    },
    local_attention=("face_adapter.*",),
    tokens=wan_tokens,
    check=_animate_check,
)


_HISTORY = (("latents_clean", "indices_latents_clean", 1, False), ("latents_history_2x", "indices_latents_history_2x",
            2, True), ("latents_history_4x", "indices_latents_history_4x", 4, True))  # fmt: skip


def _framepack_tokens(config: Any, inputs) -> int:
    """The packed sequence: the history latents (clean at 1 x 2 x 2, 2x and 4x downsampled,
    padded up to their kernels) before the latent's own tokens."""
    tokens = hunyuan_tokens(config, inputs)
    for latents, indices, f, padded in _HISTORY:
        x = inputs.get(latents)
        if x is None or inputs.get(indices) is None:
            continue
        rounding = math.ceil if padded else math.floor
        t, h, w = x.shape[-3:]
        tokens += rounding(t / f) * rounding(h / (2 * f)) * rounding(w / (2 * f))
    return tokens


def _framepack_plan(config: Any):
    rope = (Split(0, 2), Split(0, 2))
    singles, doubles = int(config_value(config, "num_single_layers", 0)), int(config_value(config, "num_layers", 1))
    last = f"single_transformer_blocks.{singles - 1}" if singles else f"transformer_blocks.{doubles - 1}"
    plan = {
        "transformer_blocks.0": {"hidden_states": Split(1, 3)},
        "transformer_blocks.*": {"freqs_cis": rope},
        # the forward keeps the last latent tokens of the packed sequence (dropping the
        # history) before norm_out: gathered after the last block, so it slices all of it;
        # the text stream is gathered too (diffusers' gather takes every output; it is unused)
        last: (Gather(1, 3), Gather(1, 3)),
    }
    if singles:
        plan["single_transformer_blocks.*"] = {"image_rotary_emb": rope}
    return plan


# FramePack (HunyuanVideo blocks): the forward packs the history latents and the latent's
# own tokens into one sequence with one rotary table, so both are split where every block
# reads them (each block cuts the whole table again: a view), and gathered after the last
# block. Text as in HunyuanVideo: whole on every rank, through the joint processor.
FRAMEPACK_CP = CPPlan(
    plan=_framepack_plan,
    joint_text=True,
    joint_under=("transformer_blocks", "single_transformer_blocks"),
    tokens=_framepack_tokens,
)

# HunyuanVideo 1.5: double-stream blocks only; its processor masks text queries and keys
# alike from the text mask [B, T] (the joint processor builds that mask for the gathered
# sequence). Text (MLLM + ByT5 + image tokens) whole on every rank.
HUNYUAN_VIDEO_15_CP = CPPlan(
    plan={
        "x_embedder": {0: Split(1, 3, output=True)},
        "rope": {0: Split(0, 2, output=True), 1: Split(0, 2, output=True)},
        "proj_out": Gather(1, 3),
    },
    joint_text=True,
    joint_under=("transformer_blocks",),
    tokens=hunyuan_tokens,
)
