"""The input image of an image-to-video run: opened with one clear error, and fitted to the
video's aspect ratio with a note saying how (PIL only, no torch)."""

from __future__ import annotations

import os
from pathlib import Path

from vidlora.errors import VidloraError

from ..messages import first_line

__all__ = ["load_image", "fit_image"]

# Aspect ratios closer than this are taken as equal: the pipeline's resize then distorts
# by under 1%, less than one pixel row at 480p.
_ASPECT_TOLERANCE = 0.01


def load_image(path: str | os.PathLike):
    """Open an image file as RGB, with one clear error when it is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.is_file():
        raise VidloraError(f"image {path} does not exist" if not path.exists() else f"image {path} is not a file")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise VidloraError(f"image {path} cannot be read ({first_line(exc)}); expected a PNG, JPEG or WebP file") from None


def fit_image(image, width: int, height: int):
    """(image, note): ``image`` centre-cropped to the aspect ratio of width x height.

    diffusers' video processors resize the image to the video size whatever its shape,
    stretching it; cropping first keeps its proportions. note says what was cut (None
    when the aspect ratios already agree: the pipeline's resize alone is then faithful).
    """
    w, h = image.size
    target = width / height
    if abs((w / h) / target - 1) <= _ASPECT_TOLERANCE:
        return image, None
    if w / h > target:  # too wide: cut columns left and right
        new_w, new_h = max(1, round(h * target)), h
        cut = f"{w - new_w} px of width ({(w - new_w) // 2} left, {w - new_w - (w - new_w) // 2} right)"
    else:  # too tall: cut rows top and bottom
        new_w, new_h = w, max(1, round(w / target))
        cut = f"{h - new_h} px of height ({(h - new_h) // 2} top, {h - new_h - (h - new_h) // 2} bottom)"
    left, top = (w - new_w) // 2, (h - new_h) // 2
    cropped = image.crop((left, top, left + new_w, top + new_h))
    note = (
        f"image {w}x{h} (aspect {w / h:.2f}) differs from the video {width}x{height} ({target:.2f}): "
        f"centre-cropped to {new_w}x{new_h}, cutting {cut}, then resized to {width}x{height}; "
        "pass a --size with the image's aspect to keep all of it"
    )
    return cropped, note
