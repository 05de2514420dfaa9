"""Argument rules of one generation, checked against a ``ModelInfo`` (configs only, no
torch): valid frame counts and sizes, the limits of the transformer's rotary table, and
the arguments ``generate`` takes."""

from __future__ import annotations

import math
from typing import Any

from vidlora.errors import VidloraError

from .info import ModelInfo

__all__ = ["round_frames", "round_size", "check_model_limits", "check_flow_shift", "check_generation_args"]


def round_frames(n: int, info: ModelInfo) -> tuple[int, str | None]:
    """The valid frame count nearest ``n`` (frame_step * k + 1) and a note saying what
    changed (None when ``n`` was valid). Ties go down, as diffusers' own rounding."""
    if not isinstance(n, int) or n < 1:
        raise VidloraError(f"frames must be a positive whole number; got {n!r}")
    step = info.frame_step
    k = (n - 1 + (step - 1) // 2) // step  # nearest k, halves rounded down
    rounded = k * step + 1
    if rounded == n:
        return n, None
    return rounded, f"frames {n} -> {rounded} ({info.family} takes {step}k+1 frames)"


def round_size(width: int, height: int, info: ModelInfo) -> tuple[int, int, str | None]:
    """The valid size nearest (width, height) (multiples of info.size_multiple, at least
    one multiple) and a note saying what changed (None when the size was valid). Ties
    go down (Wan 2.2 5B: 1280x720 -> 1280x704, its own 720p size)."""
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or value < 1:
            raise VidloraError(f"{name} must be a positive whole number; got {value!r}")
    m = info.size_multiple
    w2 = max(m, (width + (m - 1) // 2) // m * m)
    h2 = max(m, (height + (m - 1) // 2) // m * m)
    if (w2, h2) == (width, height):
        return width, height, None
    return w2, h2, f"size {width}x{height} -> {w2}x{h2} ({info.family} needs multiples of {m})"


def check_model_limits(info: ModelInfo, frames: int, width: int, height: int) -> None:
    """Refuse, naming the limit, a (valid) frame count or size the transformer cannot take.

    Wan's rotary table holds ``rope_max_seq_len`` positions per axis (time, height,
    width in patches); a grid past it ends in a shape error deep inside diffusers. The
    grid: (frames - 1) / vae_temporal + 1 latent frames, size / vae_spatial latent
    pixels, each divided by the patch size.
    """
    limit = info.rope_max_seq_len
    if limit is None:
        return
    p_t, p_h, p_w = info.patch
    latent_frames = (frames + info.dropped_frames - 1) // info.vae_temporal + 1
    grid = (latent_frames // p_t, height // info.vae_spatial // p_h, width // info.vae_spatial // p_w)
    if max(grid) <= limit:
        return
    over = [f"{axis} {asked}" for axis, asked, n in zip(("frames", "height", "width"), (frames, height, width), grid)
            if n > limit]  # fmt: skip
    most_frames = (limit * p_t - 1) * info.vae_temporal + 1
    most_h, most_w = limit * p_h * info.vae_spatial, limit * p_w * info.vae_spatial
    raise VidloraError(
        f"{' and '.join(over)}: {width}x{height} at {frames} frames needs {grid[0]} x {grid[1]} x {grid[2]} rotary "
        f"positions (frames x height x width); the transformer of {info.source} has rope_max_seq_len {limit} per axis: "
        f"at most {most_frames} frames and {most_w}x{most_h} pixels"
    )


def check_flow_shift(flow_shift: float | None, info: ModelInfo | None = None) -> None:
    """A flow shift must be a positive finite number: 0 collapses every sigma to 0 and a
    negative one flips them, and either runs the whole loop only to decode NaN frames."""
    if flow_shift is None:
        return
    if not (isinstance(flow_shift, (int, float)) and math.isfinite(flow_shift) and flow_shift > 0):
        usual = f" ({info.family} ships with {info.default_flow_shift:g})" if info and info.default_flow_shift else ""
        raise VidloraError(f"flow shift must be a positive number (3.0 for 480p Wan, 5.0 for 720p){usual}; got {flow_shift!r}")


def check_generation_args(info: ModelInfo, prompt: Any, image: Any, frames: int, width: int, height: int,
                          steps: int, guidance_2: float | None, flow_shift: float | None) -> None:  # fmt: skip
    """What ``generate`` refuses before it calls the pipeline (each with the rule)."""
    if not isinstance(prompt, str):
        raise VidloraError(f"prompt must be text; got {type(prompt).__name__}")
    if info.task == "i2v" and image is None:
        raise VidloraError(f"{info.family} is an image-to-video model: give an image")
    if info.task == "t2v" and image is not None:
        raise VidloraError(f"{info.family} is a text-to-video model: it takes no image")
    if round_frames(frames, info)[1] is not None:
        raise VidloraError(f"{frames} frames: {info.family} takes {info.frame_step}k+1 frames (see round_frames)")
    if round_size(width, height, info)[2] is not None:
        raise VidloraError(f"size {width}x{height}: {info.family} needs multiples of {info.size_multiple} (see round_size)")
    check_model_limits(info, frames, width, height)
    if not isinstance(steps, int) or steps < 1:
        raise VidloraError(f"steps must be a positive whole number; got {steps!r}")
    if guidance_2 is not None and not info.accepts_guidance_2:
        raise VidloraError(f"guidance_2 applies to Wan 2.2 A14B (two experts); {info.family} has one transformer")
    check_flow_shift(flow_shift, info)
