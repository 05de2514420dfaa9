"""One generation on a loaded pipeline: the call diffusers expects, a progress bar, a
flow-shift override for the call only, and frames checked on the way out."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from vidlora.common.progress import progress_bar
from vidlora.errors import VidloraError

from .checks import check_generation_args
from .info import FLOW_SHIFT_KEYS, ModelInfo

__all__ = ["generate"]


def generate(
    pipe,
    info: ModelInfo,
    *,
    prompt: str,
    negative_prompt: str | None = None,
    image: Any = None,
    frames: int,
    width: int,
    height: int,
    steps: int,
    guidance: float,
    guidance_2: float | None = None,
    flow_shift: float | None = None,
    seed: int = 0,
    callback: Callable[[int, int], None] | None = None,
    progress: bool = True,
    decode: bool = True,
) -> np.ndarray | None:
    """Run one generation; returns float32 frames [F, H, W, 3] in 0..1.

    frames / width / height must already be valid (``round_frames`` / ``round_size``).
    image: a PIL image (i2v only). guidance: CFG scale (Wan) or the embedded guidance
    (HunyuanVideo, which ignores negative_prompt at its default true-CFG scale of 1).
    guidance_2: Wan 2.2 A14B's low-noise expert scale. flow_shift: replaces the
    scheduler's shift for this call (distill LoRAs such as lightx2v need their own);
    it must be > 0. seed: drawn on a CPU generator, so a seed gives the same noise on
    every device. callback(step, n_steps): called after each denoising step.
    decode: False returns None without decoding (context parallelism: ranks other than 0).
    """
    import torch

    check_generation_args(info, prompt, image, frames, width, height, steps, guidance_2, flow_shift)
    kwargs: dict[str, Any] = dict(
        prompt=prompt, num_frames=frames + info.dropped_frames, width=width, height=height, num_inference_steps=steps,
        guidance_scale=float(guidance), generator=torch.Generator("cpu").manual_seed(int(seed)),
        output_type="np" if decode else "latent",
    )
    if negative_prompt:
        kwargs["negative_prompt"] = negative_prompt
    if info.task == "i2v":
        kwargs["image"] = image.convert("RGB") if hasattr(image, "convert") else image
    if guidance_2 is not None:
        kwargs["guidance_scale_2"] = float(guidance_2)
    if info.prompt_template is not None:
        kwargs["prompt_template"] = info.prompt_template

    original_scheduler = pipe.scheduler
    if flow_shift is not None:
        pipe.scheduler = _scheduler_with_shift(pipe.scheduler, info, flow_shift)
    try:
        with progress_bar("denoising", steps, enabled=progress) as advance:
            def on_step_end(_pipe, step, _timestep, tensors):
                advance()
                if callback is not None:
                    callback(step, steps)
                return tensors

            kwargs["callback_on_step_end"] = on_step_end
            pipe.set_progress_bar_config(disable=True)  # ours replaces diffusers' tqdm bar
            output = pipe(**kwargs)
    finally:
        pipe.scheduler = original_scheduler
    if not decode:
        return None
    video = np.asarray(output.frames[0], dtype=np.float32)
    if video.shape != (frames, height, width, 3):
        raise VidloraError(
            f"{info.pipeline_class} returned frames of shape {video.shape}; expected {(frames, height, width, 3)}"
        )
    return video


def _scheduler_with_shift(scheduler, info: ModelInfo, flow_shift: float):
    key = FLOW_SHIFT_KEYS.get(type(scheduler).__name__)
    if key is None:
        raise VidloraError(f"flow_shift: the {type(scheduler).__name__} scheduler of {info.family} has no flow shift")
    if key == "flow_shift" and not scheduler.config.get("use_flow_sigmas", False):
        raise VidloraError(f"flow_shift: the {type(scheduler).__name__} scheduler of {info.family} does not use flow sigmas")
    if key == "shift" and scheduler.config.get("use_dynamic_shifting", False):
        raise VidloraError(f"flow_shift: the scheduler of {info.family} computes its shift per resolution (dynamic shifting)")
    return type(scheduler).from_config(scheduler.config, **{key: float(flow_shift)})
