"""``vidlora i2v`` / ``vidlora t2v``: one generation with stacked LoRAs, written as MP4.

Order of work, cheapest checks first, so a typo never costs a model load:
output path -> input image -> LoRA specs -> model configs (no weights) -> frame/size
rounding -> LoRA files (download, read, check against the model's config) -> load the
pipeline -> attach + add -> offload -> generate -> write the MP4 and a JSON sidecar.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from vidlora.common.text import format_bytes
from vidlora.errors import VidloraError

__all__ = ["run_generate", "LoraRequest"]

_STRENGTH_WARN = (-1.0, 2.0)


@dataclass
class LoraRequest:
    spec: str  # as typed
    source: str
    weight: float | list[float]
    expert: str | None  # None | "high" | "low"
    name: str = ""
    path: str = ""
    sha256: str = ""
    origin: str = ""
    lora: object = None
    triggers: tuple[str, ...] = ()


class _Say:
    """Messages on stderr through rich; dynamic text is escaped so a name such as
    "[tiny]" is printed, not read as markup."""

    def __init__(self):
        from rich.console import Console

        self._console = Console(stderr=True, highlight=False, soft_wrap=True)

    def print(self, text: str, style: str | None = None) -> None:
        from rich.markup import escape

        self._console.print(escape(text), style=style)

    def warn(self, text: str) -> None:
        from rich.markup import escape

        self._console.print(f"[yellow]warning:[/] {escape(text)}")


def _console(quiet: bool) -> _Say:
    return _Say()


def _check_output(out: Path, overwrite: bool) -> Path:
    if out.suffix.lower() != ".mp4":
        raise VidloraError(f"--out {out} must end in .mp4")
    if out.exists() and not overwrite:
        raise VidloraError(f"{out} exists; pass --overwrite to replace it, or choose another --out")
    if out.exists() and out.is_dir():
        raise VidloraError(f"--out {out} is a directory; give a file name ending in .mp4")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise VidloraError(f"output folder {parent} does not exist; create it first (--out {out})")
    if not os.access(parent, os.W_OK):
        raise VidloraError(f"output folder {parent} is not writable (--out {out})")
    return out


def _lora_requests(args) -> list[LoraRequest]:
    from vidlora.lora.sources import parse_lora_spec

    out = []
    for flag, expert in (("lora", None), ("lora_high", "high"), ("lora_low", "low")):
        for spec in getattr(args, flag) or []:
            source, weight = parse_lora_spec(spec)
            out.append(LoraRequest(spec=spec, source=source, weight=weight, expert=expert))
    return out


def _warn_strengths(console, reqs: list[LoraRequest]) -> None:
    lo, hi = _STRENGTH_WARN
    for r in reqs:
        values = r.weight if isinstance(r.weight, list) else [r.weight]
        if any(v < lo or v > hi for v in values):
            console.warn(f"strength {r.weight} for {r.source} is outside [{lo:g}, {hi:g}]; LoRAs usually break down there")


def _resolve_loras(console, reqs: list[LoraRequest], progress: bool) -> None:
    from vidlora.lora import read_lora
    from vidlora.lora.sources import resolve_source

    used: dict[str, int] = {}
    for r in reqs:
        resolved = resolve_source(r.source, progress=progress)
        r.path, r.sha256, r.origin = str(resolved.path), resolved.sha256, resolved.origin
        r.lora = read_lora(resolved.path)
        r.triggers = tuple(dict.fromkeys([*r.lora.trigger_words, *resolved.trigger_words]))
        base = r.lora.name
        used[base] = used.get(base, 0) + 1
        r.name = base if used[base] == 1 else f"{base}_{used[base]}"


def _check_loras_fit(reqs: list[LoraRequest], info) -> None:
    """Validate every LoRA against the model's config on the meta device: a wrong family
    is reported before gigabytes of weights are loaded."""
    from vidlora.model import inventory, meta_transformer
    from vidlora.lora import match_lora

    configs = getattr(info, "configs", {}) or {}
    cfg = configs.get("transformer")
    if not cfg:
        return
    inv = inventory(meta_transformer(cfg))
    for r in reqs:
        parts = r.lora.experts.values() if r.lora.experts else [r.lora]
        for part in parts:
            match_lora(part, inv, strict=True)


def _triggers(console, reqs: list[LoraRequest], prompt: str, auto: bool) -> str:
    lowered = prompt.lower()
    for r in reqs:
        if not r.triggers:
            continue
        missing = [w for w in r.triggers if w.lower() not in lowered]
        console.print(f"trigger words of {r.name}: {', '.join(r.triggers)}")
        if missing and auto:
            prompt = prompt.rstrip() + ", " + ", ".join(missing)
            lowered = prompt.lower()
            console.print(f"  appended to the prompt: {', '.join(missing)}")
        elif missing:
            console.warn(f"the prompt lacks {', '.join(missing)} ({r.name}'s trigger words); add them or pass --auto-trigger")
    return prompt


def _pick_device(console, requested: str | None, tiny: bool) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise VidloraError("--device cuda: no CUDA GPU is visible to torch (check the driver, or use --device cpu)")
    device = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and not tiny:
        console.warn("no GPU: running a full-size video model on the CPU takes hours; try --model tiny to check the setup")
    return device


def _oom_error(e: BaseException) -> VidloraError:
    return VidloraError(
        "CUDA out of memory. Try --fp8 (halves the transformer's weights), --offload model|group|sequential, "
        f"fewer --frames or a smaller --size ({str(e).splitlines()[0][:160]})"
    )


def run_generate(args, task: str) -> int:
    import torch

    from vidlora._version import __version__
    from vidlora.runtime.adapters import attach
    from .pipelines import generate, load_image, load_pipeline, model_info, place_pipeline, round_frames, round_size
    from .video import write_mp4

    console = _console(args.quiet)
    progress = not args.quiet
    started = time.perf_counter()

    out = _check_output(Path(args.out or "out.mp4").expanduser(), args.overwrite)
    image = load_image(args.image) if task == "i2v" else None
    reqs = _lora_requests(args)
    if not args.prompt.strip():
        raise VidloraError("--prompt is empty")
    _warn_strengths(console, reqs)

    info = model_info(args.model, task)
    if info.is_tiny:
        console.print(f"note: --model {info.source} is a tiny random-weight model: it checks the plumbing, not the look")
    if (args.lora_high or args.lora_low) and not info.two_experts:
        raise VidloraError(
            f"--lora-high/--lora-low apply to Wan 2.2 A14B models (two experts); {info.source} is {info.family}"
        )
    if args.guidance_2 is not None and not info.accepts_guidance_2:
        raise VidloraError(f"--guidance-2 applies to Wan 2.2 A14B pipelines; {info.source} is {info.family}")
    if args.flow_shift is not None and info.flow_shift_key is None:
        raise VidloraError(f"--flow-shift: the scheduler of {info.source} has no flow shift")
    device = _pick_device(console, args.device, info.is_tiny)

    frames, note = round_frames(args.frames or info.default_frames, info)
    if note:
        console.print(f"note: {note}")
    steps = args.steps or info.default_steps
    guidance = args.guidance if args.guidance is not None else info.default_guidance
    w, h = args.size or info.default_size
    width, height, note = round_size(w, h, info)
    if note:
        console.print(f"note: {note}")
    fps = args.fps or info.default_fps

    _resolve_loras(console, reqs, progress)
    _check_loras_fit(reqs, info)
    prompt = _triggers(console, reqs, args.prompt, args.auto_trigger)

    console.print(f"loading {info.family} from {info.location} on {device} ...")
    try:
        # Load into CPU memory, patch (and quantize) there or on the way to the GPU, then
        # place: attach must come before offloading hooks. bf16 whenever it runs on CUDA.
        dtype = torch.bfloat16 if device == "cuda" else None
        pipe, info = load_pipeline(args.model, task, device="cpu", dtype=dtype)
        quantize_on = device if (args.fp8 and not args.offload and device != "cpu") else None
        handle = attach(pipe, fp8=args.fp8 or False, device=quantize_on)
        for r in reqs:
            handle.add(r.lora, name=r.name, weight=r.weight, expert=r.expert)
        place_pipeline(pipe, device, args.offload)
        report = handle.report()
        _print_loaded(console, reqs, handle, report)
        video = generate(
            pipe, info, prompt=prompt, negative_prompt=args.negative_prompt, image=image, frames=frames,
            width=width, height=height, steps=steps, guidance=guidance, guidance_2=args.guidance_2,
            flow_shift=args.flow_shift, seed=args.seed, progress=progress,
        )
    except torch.OutOfMemoryError as e:
        raise _oom_error(e) from None

    metadata = {
        "tool": f"vidlora {__version__}",
        "task": task,
        "model": info.source,
        "prompt": prompt,
        "negative_prompt": args.negative_prompt,
        "seed": args.seed,
        "steps": steps,
        "guidance": guidance,
        "guidance_2": args.guidance_2,
        "flow_shift": args.flow_shift,
        "frames": frames,
        "size": f"{width}x{height}",
        "fps": fps,
        "fp8": args.fp8,
        "loras": [
            {"name": r.name, "source": r.origin or r.source, "weight": r.weight, "expert": r.expert, "sha256": r.sha256}
            for r in reqs
        ],
    }
    path = write_mp4(video, out, fps=fps, metadata=metadata, overwrite=args.overwrite)
    elapsed = time.perf_counter() - started
    _print_summary(console, path, frames, fps, width, height, elapsed, reqs, report)
    return 0


def _print_loaded(console, reqs, handle, report) -> None:
    for a in report["adapters"]:
        skipped = f", skipped {len(a['skipped'])} keys (see `vidlora inspect`)" if a["skipped"] else ""
        expert = f", {a['expert']}" if a["expert"] else ""
        console.print(f"LoRA {a['name']}: strength {a['weight']}, {a['linears']} layers + {a['deltas']} tensors{expert}{skipped}")
        for w in a["warnings"]:
            console.warn(f"{a['name']}: {w}")


def _print_summary(console, path, frames, fps, width, height, elapsed, reqs, report) -> None:
    base = []
    for key, m in report["models"].items():
        base.append(f"{key}: {m['base_dtype']} {format_bytes(m['base_bytes'])}")
    loras = ", ".join(f"{r.name}:{r.weight}" for r in reqs) or "none"
    console.print(f"wrote {path}: {frames} frames {width}x{height} at {fps:g} fps, {elapsed:.1f} s", style="green")
    console.print(f"  LoRAs: {loras}")
    console.print(f"  base weights: {'; '.join(base)}")
