"""Everything ``vidlora i2v|t2v`` decides before torch is imported.

The order is cheapest first, so a typo never costs a model load (or even the 2-5 s of
importing torch and diffusers): the output path, the prompt, the ``--lora`` specs and
local LoRA files (pickles refused, safetensors headers checked), the input image, then the
model's configs (JSON only; a Hub id fetches those few KB), the rules they give (experts,
flow shift, frame/size rounding, the rotary table's limits) and notes on what will be
adjusted (image crop, schedules longer than the run). Nothing here imports torch,
diffusers or transformers: ``tests/app/test_cli_startup.py`` runs these checks with both
made unimportable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidlora.errors import VidloraError

from ..pipelines.checks import check_flow_shift, check_model_limits, round_frames, round_size
from ..pipelines.images import fit_image, load_image
from ..pipelines.info import ModelInfo, model_info
from .console import Messages

__all__ = ["GenerateRequest", "LoraRequest", "Plan", "plan_generation", "check_output", "resolve_remote"]

# Strengths outside this range usually break a LoRA's look: warned about, not refused.
_STRENGTH_WARN = (-1.0, 2.0)


@dataclass
class GenerateRequest:
    """One ``vidlora i2v|t2v`` run as typed (the parser's fields), or as the demo asks."""

    task: str
    prompt: str
    model: str | None = None
    image: str | None = None
    loras: list[str] = field(default_factory=list)
    loras_high: list[str] = field(default_factory=list)
    loras_low: list[str] = field(default_factory=list)
    negative_prompt: str | None = None
    fp8: str | None = None
    frames: int | None = None
    steps: int | None = None
    guidance: float | None = None
    guidance_2: float | None = None
    flow_shift: float | None = None
    size: tuple[int, int] | None = None
    seed: int = 0
    fps: float | None = None
    offload: str | None = None
    out: str | None = None
    overwrite: bool = False
    device: str | None = None
    auto_trigger: bool = False
    quiet: bool = False
    video: str | None = None  # v2v's input video
    strength: float | None = None
    mask: str | None = None
    reference_images: list[str] = field(default_factory=list)
    last_image: str | None = None

    @classmethod
    def from_args(cls, args, task: str) -> "GenerateRequest":
        return cls(
            task=task, prompt=args.prompt, model=args.model, image=getattr(args, "image", None), loras=args.lora,
            loras_high=args.lora_high, loras_low=args.lora_low, negative_prompt=args.negative_prompt, fp8=args.fp8,
            frames=args.frames, steps=args.steps, guidance=args.guidance, guidance_2=args.guidance_2,
            flow_shift=args.flow_shift, size=args.size, seed=args.seed, fps=args.fps, offload=args.offload,
            out=args.out, overwrite=args.overwrite, device=args.device, auto_trigger=args.auto_trigger, quiet=args.quiet,
            video=getattr(args, "video", None), strength=getattr(args, "strength", None), mask=getattr(args, "mask", None),
            reference_images=list(getattr(args, "reference_image", None) or []),
            last_image=getattr(args, "last_image", None),
        )  # fmt: skip


@dataclass
class LoraRequest:
    """One ``--lora`` as it travels: typed, parsed, resolved to a file, then read."""

    spec: str  # as typed
    source: str
    weight: float | list[float]
    expert: str | None  # None | "high" | "low"
    name: str = ""
    path: str = ""
    sha256: str = ""
    origin: str = ""
    resolved: bool = False
    lora: Any = None  # the LoRAFile, once read (torch)
    triggers: tuple[str, ...] = ()


@dataclass
class Plan:
    """A checked request: every value the run uses, decided before torch is imported."""

    request: GenerateRequest
    info: ModelInfo
    out: Path
    image: Any  # PIL image fitted to the video's aspect ratio (i2v), else None
    loras: list[LoraRequest]
    frames: int
    width: int
    height: int
    steps: int
    guidance: float
    fps: float
    inputs: dict[str, Any] = field(default_factory=dict)  # video, strength, mask, reference_images, last_image


def plan_generation(req: GenerateRequest, say: Messages, *, info: ModelInfo | None = None) -> Plan:
    """Check ``req`` as far as configs allow (see the module docstring); notes and
    warnings go to ``say``; the first problem raises VidloraError. ``info``: the model's
    ``model_info(req.model, req.task)`` when the caller has it (a sweep plans many jobs
    on one model: its configs are read once)."""
    out = check_output(Path(req.out or "out.mp4").expanduser(), req.overwrite)
    if not req.prompt.strip():
        raise VidloraError("--prompt is empty")
    loras = _lora_requests(req)
    for r in loras:
        if not _needs_network(r.source):
            _resolve(r)  # a missing or pickled local file fails here, in milliseconds
    image = load_image(req.image) if req.task == "i2v" else None
    inputs = _load_inputs(req)
    _warn_strengths(say, loras)

    info = info or model_info(req.model, req.task)
    if info.is_tiny:
        say.note(f"--model {info.source} is a tiny random-weight model: it checks the plumbing, not the look")
    if (req.loras_high or req.loras_low) and not info.two_experts:
        raise VidloraError(
            f"--lora-high/--lora-low apply to Wan 2.2 A14B models (two experts); {info.source} is {info.family}"
        )
    if req.guidance_2 is not None and not info.accepts_guidance_2:
        raise VidloraError(f"--guidance-2 applies to Wan 2.2 A14B pipelines; {info.source} is {info.family}")
    if req.flow_shift is not None and info.flow_shift_key is None:
        raise VidloraError(f"--flow-shift: the scheduler of {info.source} has no flow shift")
    check_flow_shift(req.flow_shift, info)  # the parser refuses <= 0 too; this covers the demo's path

    frames, note = round_frames(req.frames or _video_frames(inputs, info) or info.default_frames, info)
    if note:
        say.note(note)
    _fit_inputs(inputs, info, frames, say)
    w, h = req.size or info.default_size
    width, height, note = round_size(w, h, info)
    if note:
        say.note(note)
    check_model_limits(info, frames, width, height)
    if image is not None:
        image, note = fit_image(image, width, height)
        if note:
            say.note(note)
    steps = req.steps or info.default_steps
    _warn_long_schedules(say, loras, steps)
    guidance = req.guidance if req.guidance is not None else info.default_guidance
    fps = req.fps or info.default_fps
    if fps <= 0:
        raise VidloraError(f"--fps must be > 0; got {fps:g}")
    return Plan(request=req, info=info, out=out, image=image, loras=loras, frames=frames, width=width,
                height=height, steps=steps, guidance=guidance, fps=fps, inputs=inputs)  # fmt: skip


def _load_inputs(req: GenerateRequest) -> dict[str, Any]:
    """The run's extra inputs, read (files checked) before the model's configs."""
    from ..pipelines.video_input import load_video

    inputs: dict[str, Any] = {}
    if req.video is not None:
        inputs["video"] = load_video(req.video)
    if req.strength is not None:
        inputs["strength"] = float(req.strength)
    if req.reference_images:
        inputs["reference_images"] = [load_image(p) for p in req.reference_images]
    if req.last_image is not None:
        inputs["last_image"] = load_image(req.last_image)
    if req.mask is not None:
        inputs["mask"] = req.mask  # read once the frame count is known (_fit_inputs)
    return inputs


def _video_frames(inputs: dict[str, Any], info: ModelInfo) -> int | None:
    """A v2v run's frame count: the input video's, down to the model's k * step + 1."""
    video = inputs.get("video")
    if video is None:
        return None
    return (len(video) - 1) // info.frame_step * info.frame_step + 1


def _fit_inputs(inputs: dict[str, Any], info: ModelInfo, frames: int, say: Messages) -> None:
    from ..pipelines.family_inputs import accepted_inputs
    from ..pipelines.video_input import load_mask

    takes = accepted_inputs(info)
    flags = {"video": "--video", "strength": "--strength", "mask": "--mask", "reference_images": "--reference-image",
             "last_image": "--last-image"}  # fmt: skip
    extra = [flags[k] for k in inputs if k not in takes]
    if extra:
        raise VidloraError(f"{', '.join(extra)}: {info.family} ({info.pipeline_class}) does not take it")
    transformer = (info.configs or {}).get("transformer") or {}
    if "last_image" in inputs and info.arch == "wan" and not transformer.get("pos_embed_seq_len"):
        # FLF2V embeds both frames' CLIP tokens with learned positions the I2V models lack
        raise VidloraError(f"--last-image needs a first-last-frame model (Wan 2.1 FLF2V: pos_embed_seq_len in its "
                           f"transformer config); {info.source} is {info.family}")  # fmt: skip
    video = inputs.get("video")
    if video is not None:
        if len(video) < frames:
            raise VidloraError(f"--video has {len(video)} frames; {frames} were asked (--frames)")
        if len(video) > frames:
            say.note(f"--video: using its first {frames} of {len(video)} frames ({info.family} takes {info.frame_step}k+1)")
        inputs["video"] = video[:frames]
    if "mask" in inputs:
        if video is None:
            raise VidloraError("--mask marks where VACE regenerates the input video: give it with v2v --video")
        inputs["mask"] = load_mask(inputs["mask"], frames)


def check_output(out: Path, overwrite: bool) -> Path:
    """``out`` if an MP4 can be written there (suffix, existing file, folder, rights)."""
    if out.suffix.lower() != ".mp4":
        raise VidloraError(f"--out {out} must end in .mp4")
    if out.exists() and out.is_dir():
        raise VidloraError(f"--out {out} is a directory; give a file name ending in .mp4")
    if out.exists() and not overwrite:
        raise VidloraError(f"{out} exists; pass --overwrite to replace it, or choose another --out")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise VidloraError(f"output folder {parent} does not exist; create it first (--out {out})")
    if not os.access(parent, os.W_OK):
        raise VidloraError(f"output folder {parent} is not writable (--out {out})")
    return out


def resolve_remote(loras: list[LoraRequest], progress: bool) -> None:
    """Download (or find in the cache) the LoRAs that need the network."""
    for r in loras:
        if not r.resolved:
            _resolve(r, progress)


def _lora_requests(req: GenerateRequest) -> list[LoraRequest]:
    from vidlora.lora.sources import parse_lora_spec

    out = []
    for specs, expert in ((req.loras, None), (req.loras_high, "high"), (req.loras_low, "low")):
        for spec in specs or []:
            source, weight = parse_lora_spec(spec)
            out.append(LoraRequest(spec=spec, source=source, weight=weight, expert=expert))
    return out


def _needs_network(source: str) -> bool:
    """Whether resolving ``source`` may go to the network (a URL, civitai:, a Hub id),
    mirroring the order of ``vidlora.lora.sources.resolve_source``: an existing path is
    always local. Anything else is resolved at once, so a missing local file is an error
    before the model's configs are read."""
    text = source.strip()
    if Path(text).expanduser().exists():
        return False
    if text.lower().startswith(("civitai:", "http://", "https://", "hf:")):
        return True
    return "/" in text and not text.startswith((".", "/", "~"))


def _resolve(r: LoraRequest, progress: bool = True) -> None:
    from vidlora.lora.sources import resolve_source

    resolved = resolve_source(r.source, progress=progress)
    r.path, r.sha256, r.origin = str(resolved.path), resolved.sha256, resolved.origin
    r.triggers = tuple(resolved.trigger_words)
    r.resolved = True


def _warn_strengths(say: Messages, loras: list[LoraRequest]) -> None:
    lo, hi = _STRENGTH_WARN
    for r in loras:
        values = r.weight if isinstance(r.weight, list) else [r.weight]
        if any(v < lo or v > hi for v in values):
            say.warn(f"strength {r.weight} for {r.source} is outside [{lo:g}, {hi:g}]; LoRAs usually break down there")


def _warn_long_schedules(say: Messages, loras: list[LoraRequest], steps: int) -> None:
    """A schedule of L strengths over n < L steps: step i takes value floor(i * L / n)
    (the runtime's rule), so L - n of the values are never used."""
    for r in loras:
        if isinstance(r.weight, list) and len(r.weight) > steps:
            used = sorted({i * len(r.weight) // steps for i in range(steps)})
            values = ", ".join(f"{r.weight[i]:g}" for i in used)
            say.warn(
                f"{r.source}: a schedule of {len(r.weight)} strengths on {steps} steps uses only {len(used)} of them "
                f"({values}); give {steps} values or pass --steps {len(r.weight)}"
            )
