"""One generation on a loaded pipeline: the call diffusers expects, a progress bar, a
flow-shift override for the call only, and frames checked on the way out."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from vidlora.common.progress import progress_bar
from vidlora.errors import VidloraError

from .checks import check_generation_args
from .family_inputs import check_family_inputs, vace_first_frame
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
    video: list | None = None,
    strength: float | None = None,
    mask: list | None = None,
    reference_images: list | None = None,
    last_image: Any = None,
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
    video: the input frames (PIL images) of v2v; strength: how much of them is re-noised
    (Wan V2V). mask: per-frame PIL masks, white where VACE generates; reference_images:
    VACE's subject / style references. last_image: the end frame (Wan FLF2V, FramePack).
    decode: False returns None without decoding (context parallelism: ranks other than 0).
    """
    import torch

    check_generation_args(info, prompt, image, frames, width, height, steps, guidance_2, flow_shift)
    check_family_inputs(info, video, strength, mask, reference_images, last_image)
    kwargs: dict[str, Any] = dict(
        prompt=prompt, num_frames=frames + info.dropped_frames, width=width, height=height, num_inference_steps=steps,
        guidance_scale=float(guidance), generator=torch.Generator("cpu").manual_seed(int(seed)),
        output_type="np" if decode else "latent",
    )
    if negative_prompt:
        kwargs["negative_prompt"] = negative_prompt
    if info.task == "i2v" and image is not None:
        image = image.convert("RGB") if hasattr(image, "convert") else image
        if info.pipeline_class == "WanVACEPipeline":  # VACE's image-to-video: a masked first frame
            video, mask = vace_first_frame(image, frames, width, height)
        else:
            kwargs["image"] = image
    if guidance_2 is not None:
        kwargs["guidance_scale_2"] = float(guidance_2)
    if info.prompt_template is not None:
        kwargs["prompt_template"] = info.prompt_template
    for name, value in (("video", video), ("strength", strength), ("mask", mask),
                        ("reference_images", reference_images), ("last_image", last_image)):  # fmt: skip
        if value is not None:
            kwargs[name] = value
    accepted = _call_parameters(pipe)
    for name in ("num_frames", "width", "height", "guidance_scale"):  # derived from inputs in some pipelines
        if name not in accepted:
            kwargs.pop(name)

    restore = _call_overrides(pipe, info, flow_shift, guidance)
    try:
        with progress_bar("denoising", steps, enabled=progress) as advance:
            def on_step(step):
                advance()
                if callback is not None:
                    callback(step, steps)

            if "callback_on_step_end" in accepted:
                def on_step_end(_pipe, step, _timestep, tensors):
                    on_step(step)
                    return tensors

                kwargs["callback_on_step_end"] = on_step_end
            else:  # HunyuanVideo 1.5 takes no callback: count the scheduler's steps
                restore.append(_count_scheduler_steps(pipe, on_step))
            pipe.set_progress_bar_config(disable=True)  # ours replaces diffusers' tqdm bar
            output = pipe(**kwargs)
    finally:
        for undo in reversed(restore):
            undo()
    if not decode:
        return None
    video_out = np.asarray(output.frames[0], dtype=np.float32)
    if info.trims_frames and video_out.shape[0] > frames:
        video_out = video_out[:frames]  # FramePack's last section overshoots the length asked
    if "width" not in accepted:  # the pipeline picks its size (HunyuanVideo 1.5 I2V: target_size buckets)
        height, width = video_out.shape[1:3] if video_out.ndim == 4 else (height, width)
    if video_out.shape != (frames, height, width, 3):
        raise VidloraError(
            f"{info.pipeline_class} returned frames of shape {video_out.shape}; expected {(frames, height, width, 3)}"
        )
    return video_out


def _call_parameters(pipe):
    """The named parameters of the pipeline class's own ``__call__`` (not of a wrapper that
    takes ``*args, **kwargs``, as context parallelism's latents-only subclass does)."""
    for cls in type(pipe).__mro__:
        fn = cls.__dict__.get("__call__")
        if fn is None:
            continue
        params = inspect.signature(fn).parameters
        if any(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for name, p in params.items() if name != "self"):
            return params
    return inspect.signature(pipe.__call__).parameters


def _call_overrides(pipe, info: ModelInfo, flow_shift: float | None, guidance: float) -> list:
    """Per-call changes to the pipeline (scheduler shift, HunyuanVideo 1.5's guider and
    prompt crop), each with its undo."""
    undo = []
    original_scheduler = pipe.scheduler
    if flow_shift is not None:
        pipe.scheduler = _scheduler_with_shift(pipe.scheduler, info, flow_shift)
    undo.append(lambda: setattr(pipe, "scheduler", original_scheduler))
    if info.guidance_by_guider:
        guider = pipe.guider
        pipe.guider = type(guider).from_config(guider.config, guidance_scale=float(guidance))
        undo.append(lambda: setattr(pipe, "guider", guider))
    if info.crop_start is not None and hasattr(pipe, "prompt_template_encode_start_idx"):
        crop = pipe.prompt_template_encode_start_idx
        pipe.prompt_template_encode_start_idx = int(info.crop_start)
        undo.append(lambda: setattr(pipe, "prompt_template_encode_start_idx", crop))
    return undo


def _count_scheduler_steps(pipe, on_step) -> Callable[[], None]:
    scheduler = pipe.scheduler
    step = scheduler.step
    count = [0]

    def counted(*args, **kwargs):
        out = step(*args, **kwargs)
        on_step(count[0])
        count[0] += 1
        return out

    scheduler.step = counted
    return lambda: scheduler.__dict__.pop("step", None)


def _scheduler_with_shift(scheduler, info: ModelInfo, flow_shift: float):
    key = FLOW_SHIFT_KEYS.get(type(scheduler).__name__)
    if key is None:
        raise VidloraError(f"flow_shift: the {type(scheduler).__name__} scheduler of {info.family} has no flow shift")
    if key == "flow_shift" and not scheduler.config.get("use_flow_sigmas", False):
        raise VidloraError(f"flow_shift: the {type(scheduler).__name__} scheduler of {info.family} does not use flow sigmas")
    if key == "shift" and scheduler.config.get("use_dynamic_shifting", False):
        raise VidloraError(f"flow_shift: the scheduler of {info.family} computes its shift per resolution (dynamic shifting)")
    return type(scheduler).from_config(scheduler.config, **{key: float(flow_shift)})
