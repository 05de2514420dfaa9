"""Frames -> MP4 (H.264, yuv420p) through the ffmpeg binary that imageio-ffmpeg ships.

``write_mp4`` takes what diffusers video pipelines return (a list of PIL images, numpy
[F,H,W,C] in 0..1 or 0..255, torch tensors laid out [F,H,W,C], [F,C,H,W] or [C,F,H,W],
with or without a leading batch of one), writes a temporary file next to the target and
moves it into place only once ffmpeg has finished, so a crash never leaves a half video
under the requested name. The generation settings go twice into the output: as JSON in
the MP4's ``comment`` tag (travels with the file) and in a sidecar ``<out>.json`` (easy
to grep).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vidlora.errors import VidloraError

__all__ = ["write_mp4", "read_mp4_metadata", "sidecar_path", "frames_to_uint8"]

# yuv420p stores chroma at half resolution, so H.264 in yuv420p needs even width and
# height; odd sizes are padded by one row/column (edge copy) rather than rescaled.
_CHROMA_BLOCK = 2
_CHANNEL_COUNTS = (1, 3, 4)
_LAYOUTS = ("FHWC", "FCHW", "CFHW")


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where ``write_mp4`` puts the JSON copy of the metadata: ``out.mp4`` -> ``out.mp4.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_mp4(
    frames: Any,
    path: str | os.PathLike,
    fps: float = 16,
    quality: int = 7,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    *,
    layout: str | None = None,
) -> Path:
    """Encode ``frames`` as an H.264 / yuv420p MP4 at ``path`` and return the path.

    frames: list of PIL images; numpy or torch [F,H,W,C] / [F,C,H,W] / [C,F,H,W]
        (optionally with a leading batch dimension of 1), uint8 0..255 or float 0..1
        (a float array whose maximum exceeds 1 is read as 0..255). Channels 1 (grey),
        3 (RGB) or 4 (RGBA, alpha dropped).
    fps: frames per second (> 0). Wan models are made for 16, HunyuanVideo for 24.
    quality: 1..10, imageio-ffmpeg's scale: H.264 CRF = int(51 * (1 - quality/10)),
        so the default 7 is CRF 15 (visually lossless for these short clips).
    metadata: JSON-serialisable settings (model, prompt, seed, LoRAs...); stored with
        the vidlora version and the written video's shape in the MP4 comment tag and in
        ``sidecar_path(path)``.
    overwrite: replace an existing file; without it an existing ``path`` is an error.
    layout: "FHWC", "FCHW" or "CFHW" when the shape alone is ambiguous (e.g. 3 frames).
    """
    path = Path(path)
    _check_target(path, overwrite)
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise VidloraError(f"fps must be a positive number, got {fps!r}")
    if not (isinstance(quality, (int, float)) and 1 <= quality <= 10):
        raise VidloraError(f"quality must be between 1 and 10, got {quality!r}")

    video = frames_to_uint8(frames, layout=layout)
    n_frames, height, width = video.shape[:3]
    video = _pad_to_even(video)
    stored = _settings_record(metadata, n_frames, video.shape[2], video.shape[1], fps, (width, height))
    comment = json.dumps(stored, sort_keys=True)

    # mkstemp in the target folder: the final os.link/os.replace stays on one filesystem.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    _as_created(tmp)
    try:
        _encode(video, tmp, fps, quality, comment)
        _move_into_place(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
    _write_sidecar(sidecar_path(path), stored)
    return path


def read_mp4_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The settings ``write_mp4`` stored in the MP4's comment tag ({} when there are none).

    Reads the tags with ffmpeg's ``ffmetadata`` muxer, which needs no ffprobe.
    """
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise VidloraError(f"no video at {path}")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise VidloraError(f"ffmpeg cannot read {path}: {_last_line(proc.stderr)}")
    tags = _parse_ffmetadata(proc.stdout.decode("utf-8", "replace"))
    if "comment" not in tags:
        return {}
    try:
        value = json.loads(tags["comment"])
    except json.JSONDecodeError as exc:
        raise VidloraError(f"the comment tag of {path} is not vidlora's JSON ({exc})") from None
    return value if isinstance(value, dict) else {"comment": value}


def frames_to_uint8(frames: Any, *, layout: str | None = None) -> np.ndarray:
    """Any supported frame container -> a C-contiguous uint8 RGB array [F, H, W, 3]."""
    array = _to_numpy(frames)
    if array.ndim == 5:
        if array.shape[0] != 1:
            raise VidloraError(f"write_mp4 writes one video; got a batch of {array.shape[0]} (shape {tuple(array.shape)})")
        array = array[0]
    if array.ndim != 4:
        raise VidloraError(
            f"frames must be 4-D ([F,H,W,C], [F,C,H,W] or [C,F,H,W]) or a list of images; got shape {tuple(array.shape)}"
        )
    array = _to_fhwc(array, layout)
    if array.shape[0] == 0:
        raise VidloraError("frames is empty: nothing to write")
    array = _to_uint8_range(array)
    channels = array.shape[-1]
    if channels == 1:
        array = np.repeat(array, 3, axis=-1)
    elif channels == 4:
        array = array[..., :3]
    return np.ascontiguousarray(array)


def _check_target(path: Path, overwrite: bool) -> None:
    if path.suffix.lower() != ".mp4":
        raise VidloraError(f"output {path} must end in .mp4 (write_mp4 writes MP4 only)")
    if not path.parent.is_dir():
        raise VidloraError(f"output folder {path.parent} does not exist; create it first")
    if path.exists() and not overwrite:
        raise VidloraError(f"output {path} already exists; pass overwrite=True (--overwrite) to replace it")
    if path.is_dir():
        raise VidloraError(f"output {path} is a folder, not a file name")


def _to_numpy(frames: Any) -> np.ndarray:
    if isinstance(frames, np.ndarray):
        return frames
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(frames, torch.Tensor):
        tensor = frames.detach().cpu()
        # numpy has no bfloat16; fp32 holds every fp16/bf16 value exactly.
        return tensor.numpy() if tensor.dtype == torch.uint8 else tensor.float().numpy()
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise VidloraError("frames is empty: nothing to write")
        if len(frames) == 1 and isinstance(frames[0], (list, tuple)):
            frames = frames[0]  # diffusers' output_type="pil": a batch of one list of images
        items = [_one_frame(f, i) for i, f in enumerate(frames)]
        shapes = {a.shape for a in items}
        if len(shapes) != 1:
            raise VidloraError(f"all frames must have one size and channel count; got shapes {sorted(shapes)}")
        return np.stack(items)
    raise VidloraError(
        f"frames must be a list of PIL images, a numpy array or a torch tensor; got {type(frames).__name__}"
    )


def _one_frame(frame: Any, index: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    array = _to_numpy(frame) if not isinstance(frame, np.ndarray) else frame
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise VidloraError(f"frame {index} must be an image [H,W,C]; got shape {tuple(array.shape)}")
    return array


def _to_fhwc(array: np.ndarray, layout: str | None) -> np.ndarray:
    if layout is None:
        layout = _guess_layout(array.shape)
    if layout not in _LAYOUTS:
        raise VidloraError(f"layout must be one of {', '.join(_LAYOUTS)}; got {layout!r}")
    if layout == "FCHW":
        array = array.transpose(0, 2, 3, 1)
    elif layout == "CFHW":
        array = array.transpose(1, 2, 3, 0)
    if array.shape[-1] not in _CHANNEL_COUNTS:
        raise VidloraError(f"frames laid out {layout} have {array.shape[-1]} channels; expected 1, 3 or 4")
    return array


def _guess_layout(shape: tuple[int, ...]) -> str:
    # Which axes could hold channels. Real frames are at least 8 px on a side, so a
    # trailing 1/3/4 means channels-last; diffusers returns [F,C,H,W] ("pt" output)
    # or [C,F,H,W] (VAE decode), where the candidate sits at axis 1 or 0.
    candidates = []
    if shape[-1] in _CHANNEL_COUNTS:
        candidates.append("FHWC")
    if shape[1] in _CHANNEL_COUNTS:
        candidates.append("FCHW")
    if shape[0] in _CHANNEL_COUNTS:
        candidates.append("CFHW")
    if len(candidates) == 1:
        return candidates[0]
    if "FHWC" in candidates and shape[1] > 4 and shape[2] > 4:
        return "FHWC"  # e.g. [3, 480, 832, 3]: 3 frames, channels last
    # [4, 3, H, W] is 4 RGB frames rather than 3 RGBA ones: video frames are RGB.
    rgb = [c for c in candidates if shape[{"FHWC": -1, "FCHW": 1, "CFHW": 0}[c]] == 3]
    if len(rgb) == 1:
        return rgb[0]
    if not candidates:
        raise VidloraError(f"cannot find the channel axis (size 1, 3 or 4) in frames of shape {tuple(shape)}")
    raise VidloraError(
        f"frames of shape {tuple(shape)} could be laid out {' or '.join(candidates)}; pass layout=... to say which"
    )


def _to_uint8_range(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise VidloraError(f"frames must hold numbers (uint8 or float); got dtype {array.dtype}")
    values = array.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        raise VidloraError("frames contain NaN or Inf values")
    low, high = float(values.min()), float(values.max())
    # Floats up to 1 are 0..1 (diffusers' np/pt output); above 1 they are 0..255. The
    # 1e-3 margins absorb rounding in a VAE's clamp + rescale, nothing more.
    if high <= 1.0 + 1e-3:
        if low < -1e-3:
            raise VidloraError(
                f"float frames must be in 0..1 (or 0..255); got values down to {low:.3g} "
                "(a VAE output in -1..1 needs (x + 1) / 2 first)"
            )
        values = values * 255.0
    elif high > 255.0 + 1e-3 or low < -1e-3:
        raise VidloraError(f"frames must be in 0..1 or 0..255; got values from {low:.3g} to {high:.3g}")
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _pad_to_even(video: np.ndarray) -> np.ndarray:
    pad_h = (-video.shape[1]) % _CHROMA_BLOCK
    pad_w = (-video.shape[2]) % _CHROMA_BLOCK
    if not (pad_h or pad_w):
        return video
    return np.ascontiguousarray(np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge"))


def _settings_record(
    metadata: dict[str, Any] | None, frames: int, width: int, height: int, fps: float, source_size: tuple[int, int]
) -> dict[str, Any]:
    from vidlora._version import __version__

    record = dict(metadata or {})
    record.setdefault("vidlora_version", __version__)
    video = {"frames": frames, "width": width, "height": height, "fps": fps}
    if (width, height) != source_size:
        video["padded_from"] = list(source_size)
    record["video"] = video
    try:
        json.dumps(record)
    except (TypeError, ValueError) as exc:
        raise VidloraError(f"metadata must be JSON-serialisable: {exc}") from None
    return record


def _encode(video: np.ndarray, target: Path, fps: float, quality: float, comment: str) -> None:
    import imageio_ffmpeg

    height, width = video.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(target),
        (width, height),
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        fps=float(fps),
        quality=float(quality),
        codec="libx264",
        macro_block_size=1,  # sizes are already even: never let imageio rescale
        ffmpeg_log_level="error",
        # -f mp4: the temporary name ends in .part, so ffmpeg cannot guess the muxer.
        output_params=["-metadata", f"comment={comment}", "-movflags", "+faststart", "-f", "mp4"],
    )
    try:
        writer.send(None)
        for frame in video:
            writer.send(frame)
        writer.close()
    except (OSError, RuntimeError) as exc:
        raise VidloraError(f"ffmpeg failed to encode {target.name}: {exc}") from None
    if not target.is_file() or target.stat().st_size == 0:
        raise VidloraError(f"ffmpeg wrote nothing to {target}")


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    # os.link fails if `path` appeared since the check above: never clobber a file
    # another process wrote in the meantime.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise VidloraError(f"output {path} already exists; pass overwrite=True (--overwrite) to replace it") from None
    except OSError:
        # Filesystems without hard links (some network/FAT mounts): re-check, then rename.
        if path.exists():
            raise VidloraError(f"output {path} already exists; pass overwrite=True (--overwrite) to replace it") from None
        os.replace(tmp, path)


def _as_created(path: Path) -> None:
    """mkstemp makes 0600 files; give the output the mode a plain open() would (0666 minus
    the umask), so a video is readable by the other users a normal file would be."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _write_sidecar(target: Path, record: dict[str, Any]) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    _as_created(Path(tmp_name))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _parse_ffmetadata(text: str) -> dict[str, str]:
    # ffmetadata escapes '=', ';', '#', '\' and newlines with a backslash; a line ending
    # in an escaped newline continues on the next line.
    tags: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line or line.startswith((";", "#", "[")):
            continue
        while _ends_in_escape(line) and i < len(lines):
            line = line[:-1] + "\n" + lines[i]
            i += 1
        key, value = _split_unescaped(line)
        if key is not None:
            tags[key] = value
    return tags


def _ends_in_escape(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _split_unescaped(line: str) -> tuple[str | None, str]:
    key_chars: list[str] = []
    value_chars: list[str] = []
    target = key_chars
    escaped = False
    found = False
    for char in line:
        if escaped:
            target.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "=" and not found:
            found = True
            target = value_chars
        else:
            target.append(char)
    return ("".join(key_chars), "".join(value_chars)) if found else (None, "")


def _last_line(stderr: bytes) -> str:
    lines = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"
