"""Input videos and masks of a v2v run, read with ffmpeg (imageio-ffmpeg) into PIL frames,
with one clear error each; no torch."""

from __future__ import annotations

import os
from pathlib import Path

from vidlora.errors import VidloraError

from ..messages import first_line

__all__ = ["load_video", "load_mask"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def load_video(path: str | os.PathLike, mode: str = "RGB", limit: int | None = None) -> list:
    """Every frame of the video at ``path`` (at most ``limit``) as PIL images in ``mode``."""
    import imageio_ffmpeg
    from PIL import Image

    path = Path(path).expanduser()
    if not path.is_file():
        raise VidloraError(f"video {path} does not exist" if not path.exists() else f"video {path} is not a file")
    frames = []
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        width, height = meta["size"]
        for raw in reader:
            frames.append(Image.frombytes("RGB", (width, height), raw).convert(mode))
            if limit is not None and len(frames) >= limit:
                break
        reader.close()
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as exc:
        raise VidloraError(f"video {path} cannot be read ({first_line(exc)}); expected an MP4 or another ffmpeg format") from None
    if not frames:
        raise VidloraError(f"video {path} holds no frames")
    return frames


def load_mask(path: str | os.PathLike, frames: int) -> list:
    """A VACE mask: an image (the same for every frame) or a video, ``frames`` grey frames."""
    from .images import load_image

    path = Path(path).expanduser()
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        return [load_image(path).convert("L")] * frames
    masks = load_video(path, mode="L", limit=frames)
    if len(masks) < frames:
        raise VidloraError(f"mask video {path} has {len(masks)} frames; the video has {frames}")
    return masks
