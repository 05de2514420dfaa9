"""``POST /v1/generate`` bodies: JSON -> a checked ``GenerateBody``, or a ``RequestError``
that names the field and the rule (HTTP 400), the way the CLI names its flags.

    {"prompt": "a paper boat", "lora": [{"model": "civitai:120096@135931", "weight": 0.7}],
     "seed": 3, "num_frames": 49, "size": "832x480", "steps": 30, "guidance": 5.0}

Keys: prompt (required), negative_prompt, image (i2v: base64, a data: URL or an http(s)
URL), lora (a list of {model, weight}; weight a number or a list spread over the steps),
seed, num_frames (or frames), size ("WxH"), steps, guidance, guidance_2, flow_shift, fps.
An unknown key is an error (a typo must not silently fall back to a default). Pure
Python: no torch, no Ray.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from typing import Any

from .config import ServeLimits

__all__ = ["RequestError", "GenerateBody", "LoraEntry", "parse_body", "KEYS"]

KEYS = ("prompt", "negative_prompt", "image", "lora", "seed", "num_frames", "frames", "size", "steps", "guidance",
        "guidance_2", "flow_shift", "fps")  # fmt: skip
_MAX_SEED = 2**63 - 1
_MAX_GUIDANCE = 50.0
_MAX_FPS = 120.0
_MAX_SHIFT = 100.0


class RequestError(Exception):
    """A request the server refuses: HTTP ``status`` with a JSON body
    ``{"error": message, "field": field}``."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}


@dataclass(frozen=True)
class LoraEntry:
    """One LoRA of a request as asked: its source and strength (or schedule)."""

    source: str
    weight: float | tuple[float, ...]
    field: str  # "lora[0]", for messages


@dataclass(frozen=True)
class GenerateBody:
    prompt: str
    negative_prompt: str | None = None
    image: bytes | None = None  # decoded base64
    image_url: str | None = None
    loras: tuple[LoraEntry, ...] = ()
    seed: int = 0
    frames: int | None = None
    size: tuple[int, int] | None = None
    steps: int | None = None
    guidance: float | None = None
    guidance_2: float | None = None
    flow_shift: float | None = None
    fps: float | None = None


def parse_body(data: Any, limits: ServeLimits, task: str) -> GenerateBody:
    """Check every field of ``data`` (the parsed JSON) against its type and ``limits``."""
    if not isinstance(data, dict):
        raise RequestError(400, f"the body must be a JSON object; got {_kind(data)}")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}; accepted: {', '.join(KEYS)}", unknown[0])
    prompt = _text(data, "prompt", limits.max_prompt, required=True)
    if not prompt.strip():
        raise RequestError(400, "prompt is empty", "prompt")
    frames_key = "num_frames" if "num_frames" in data else "frames"
    if "num_frames" in data and "frames" in data and data["num_frames"] != data["frames"]:
        raise RequestError(400, f"num_frames ({data['num_frames']!r}) and frames ({data['frames']!r}) differ; give one",
                           "num_frames")  # fmt: skip
    image, image_url = _image(data.get("image"), task)
    return GenerateBody(
        prompt=prompt,
        negative_prompt=_text(data, "negative_prompt", limits.max_prompt),
        image=image, image_url=image_url,
        loras=_loras(data.get("lora"), limits),
        seed=_whole(data, "seed", 0, _MAX_SEED, default=0),
        frames=_whole(data, frames_key, 1, limits.max_frames),
        size=_size(data.get("size"), limits),
        steps=_whole(data, "steps", 1, limits.max_steps),
        guidance=_number(data, "guidance", 0.0, _MAX_GUIDANCE),
        guidance_2=_number(data, "guidance_2", 0.0, _MAX_GUIDANCE),
        flow_shift=_number(data, "flow_shift", 0.0, _MAX_SHIFT, open_low=True),
        fps=_number(data, "fps", 0.0, _MAX_FPS, open_low=True),
    )  # fmt: skip


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _text(data: dict, key: str, most: int, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise RequestError(400, f"{key} is required (text)", key)
        return None
    if not isinstance(value, str):
        raise RequestError(400, f"{key} must be a string; got {_kind(value)}", key)
    if len(value) > most:
        raise RequestError(400, f"{key} is {len(value)} characters; at most {most}", key)
    return value


def _whole(data: dict, key: str, low: int, high: int, default: int | None = None) -> int | None:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise RequestError(400, f"{key} must be a whole number; got {_kind(value)} {value!r}"[:200], key)
    if not low <= value <= high:
        raise RequestError(400, f"{key} must be between {low} and {high}; got {value}", key)
    return value


def _number(data: dict, key: str, low: float, high: float, open_low: bool = False) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(400, f"{key} must be a finite number; got {_kind(value)} {value!r}"[:200], key)
    if value > high or value < low or (open_low and value <= low):
        rule = f"> {low:g} and <= {high:g}" if open_low else f"between {low:g} and {high:g}"
        raise RequestError(400, f"{key} must be {rule}; got {value:g}", key)
    return float(value)


def _size(value: Any, limits: ServeLimits) -> tuple[int, int] | None:
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d{1,6})\s*[xX*]\s*(\d{1,6})\s*", value) if isinstance(value, str) else None
    if not m or min(int(m.group(1)), int(m.group(2))) < 1:
        raise RequestError(400, f'size must be "WIDTHxHEIGHT" in pixels (e.g. "832x480"); got {value!r}'[:200], "size")
    w, h = int(m.group(1)), int(m.group(2))
    if max(w, h) > limits.max_side or w * h > limits.max_pixels:
        raise RequestError(400, f"size {w}x{h} is over this server's limit ({limits.max_side} px a side, "
                           f"{limits.max_pixels} pixels)", "size")  # fmt: skip
    return w, h


def _loras(value: Any, limits: ServeLimits) -> tuple[LoraEntry, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestError(400, f'lora must be a list of {{"model", "weight"}} objects; got {_kind(value)}', "lora")
    if len(value) > limits.max_loras:
        raise RequestError(400, f"lora lists {len(value)} LoRAs; at most {limits.max_loras}", "lora")
    out = []
    for i, entry in enumerate(value):
        where = f"lora[{i}]"
        if not isinstance(entry, dict):
            raise RequestError(400, f'{where} must be an object {{"model": SOURCE, "weight": W}}; got {_kind(entry)}', where)
        bad = [k for k in entry if k not in ("model", "weight")]
        if bad:
            raise RequestError(400, f"{where}: unknown field {bad[0]!r}; a LoRA is {{\"model\", \"weight\"}}", f"{where}.{bad[0]}")
        source = entry.get("model")
        if not isinstance(source, str) or not source.strip() or len(source) > 2048:
            raise RequestError(400, f"{where}.model must name a LoRA: a path, owner/repo[/file.safetensors], a URL or "
                               "civitai:MODEL@VERSION", f"{where}.model")  # fmt: skip
        out.append(LoraEntry(source=source.strip(), weight=_weight(entry.get("weight", 1.0), where, limits), field=where))
    return tuple(out)


def _weight(value: Any, where: str, limits: ServeLimits) -> float | tuple[float, ...]:
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not 1 <= len(value) <= limits.max_schedule:
        raise RequestError(400, f"{where}.weight: a schedule holds 1 to {limits.max_schedule} values; got {len(value)}",
                           f"{where}.weight")  # fmt: skip
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RequestError(400, f"{where}.weight must be a finite number or a list of them; got {v!r}"[:200],
                               f"{where}.weight")  # fmt: skip
        if abs(v) > limits.max_weight:
            raise RequestError(400, f"{where}.weight {v:g} is outside [-{limits.max_weight:g}, {limits.max_weight:g}]",
                               f"{where}.weight")  # fmt: skip
    return tuple(float(v) for v in value) if isinstance(value, list) else float(value)


def _image(value: Any, task: str) -> tuple[bytes | None, str | None]:
    if value is None:
        if task == "i2v":
            raise RequestError(400, "image is required: this server runs an image-to-video model (base64 or a URL)", "image")
        return None, None
    if task != "i2v":
        raise RequestError(400, "image: this server runs a text-to-video model, which takes no image", "image")
    if not isinstance(value, str) or not value:
        raise RequestError(400, f"image must be a base64 string or an http(s) URL; got {_kind(value)}", "image")
    if re.match(r"^https?://", value, re.I):
        return None, value
    data = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(data, validate=True), None
    except (binascii.Error, ValueError):
        raise RequestError(400, "image is neither valid base64 nor an http(s) URL", "image") from None
