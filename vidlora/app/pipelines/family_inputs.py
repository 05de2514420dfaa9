"""The inputs some pipelines take beyond a prompt and an image: an input video and its
strength (Wan V2V, SkyReels V2 DF V2V), VACE's masks and reference images, an end frame
(Wan FLF2V, FramePack). Which pipeline takes which, checked before the call; VACE's
image-to-video as a masked first frame. PIL only, no torch."""

from __future__ import annotations

from typing import Any

from vidlora.errors import VidloraError

from .info import ModelInfo

__all__ = ["INPUTS_OF", "check_family_inputs", "vace_first_frame", "accepted_inputs"]

# pipeline class -> the extra inputs it takes
INPUTS_OF: dict[str, frozenset[str]] = {
    "WanVideoToVideoPipeline": frozenset({"video", "strength"}),
    "SkyReelsV2DiffusionForcingVideoToVideoPipeline": frozenset({"video"}),
    "WanVACEPipeline": frozenset({"video", "mask", "reference_images"}),
    "WanImageToVideoPipeline": frozenset({"last_image"}),
    "HunyuanVideoFramepackPipeline": frozenset({"last_image"}),
}


def accepted_inputs(info: ModelInfo) -> frozenset[str]:
    return INPUTS_OF.get(info.pipeline_class, frozenset())


def check_family_inputs(info: ModelInfo, video, strength, mask, reference_images, last_image) -> None:
    """Refuse, naming the pipeline, an input its class does not take (or a v2v without video)."""
    given = {name for name, value in (("video", video), ("strength", strength), ("mask", mask),
                                      ("reference_images", reference_images), ("last_image", last_image))
             if value is not None}  # fmt: skip
    takes = accepted_inputs(info)
    flags = {"video": "--video", "strength": "--strength", "mask": "--mask", "reference_images": "--reference-image",
             "last_image": "--last-image"}  # fmt: skip
    extra = sorted(given - takes)
    if extra:
        what = ", ".join(flags[n] for n in extra)
        where = ", ".join(sorted(c for c, names in INPUTS_OF.items() if set(extra) <= names)) or "no pipeline vidlora runs"
        raise VidloraError(f"{what}: {info.family} ({info.pipeline_class}) does not take it (taken by {where})")
    if info.task == "v2v" and video is None:
        raise VidloraError(f"{info.family} video-to-video needs an input video (--video)")
    if strength is not None and not 0.0 < float(strength) <= 1.0:
        raise VidloraError(f"--strength must be in (0, 1] (the share of the input video re-noised); got {strength}")
    if mask is not None and video is None and info.task != "i2v":
        raise VidloraError("--mask marks where VACE regenerates an input video: give --video with it")


def vace_first_frame(image: Any, frames: int, width: int, height: int) -> tuple[list, list]:
    """VACE's image-to-video: the image as frame 0 of the control video (kept: black mask),
    the remaining frames grey and generated (white mask), as VACE's own I2V recipe."""
    from PIL import Image

    first = image.convert("RGB").resize((width, height))
    grey = Image.new("RGB", (width, height), (128, 128, 128))
    keep, make = Image.new("L", (width, height), 0), Image.new("L", (width, height), 255)
    return [first] + [grey] * (frames - 1), [keep] + [make] * (frames - 1)
