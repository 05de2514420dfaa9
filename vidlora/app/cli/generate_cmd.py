"""``vidlora i2v`` / ``vidlora t2v``: one generation with stacked LoRAs, written as MP4.

The path, in order (``run_generate``):

1. ``plan.plan_generation``: every check that needs no torch (output, specs, local
   files, image, the model's configs and the limits they set).
2. ``read_loras``: download remote LoRAs, read every file (torch from here on) and
   check it against the model's config on the meta device, so a LoRA for another
   family fails before gigabytes of weights load.
3. ``open_session``: load the pipeline into CPU memory, ``attach`` (quantizing to FP8
   on the way to the GPU when asked), ``add`` each LoRA, then place the pipeline on the
   device or behind offload hooks. attach must come before offloading: the hooks would
   otherwise hold (and move) the unpatched Linears.
4. ``denoise``: the pipeline call; 5. ``write_result``: the MP4, its JSON sidecar, a summary.

Steps 2-5 run inside named stages (``stages.py``): anything a library raises there is one
line naming the stage; ``--debug`` shows its traceback. The demo runs the same functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from vidlora.common.text import format_bytes
from vidlora.errors import VidloraError

from .console import Messages, quiet_libraries
from .parallel import SilentMessages, check_split, parallel_run, relaunch
from .plan import GenerateRequest, LoraRequest, Plan, plan_generation, resolve_remote
from .stages import stage

__all__ = ["run_generate", "Session", "read_loras", "pick_device", "open_session", "denoise", "write_result"]


@dataclass
class Session:
    """A loaded, patched and placed pipeline."""

    pipe: Any
    handle: Any  # vidlora Adapters
    device: str


def run_generate(args, task: str) -> int:
    """The ``i2v`` / ``t2v`` command (see the module docstring)."""
    started = time.perf_counter()
    par = parallel_run(args)  # --gpus N / under torchrun: one video on several GPUs (parallel.py)
    main_rank = par is None or par.is_main
    # the process that relaunches itself under torchrun stays quiet: rank 0 says it all
    say = Messages() if main_rank and not (par is not None and not par.launched) else SilentMessages()
    plan = plan_generation(GenerateRequest.from_args(args, task), say)
    if par is not None:
        check_split(par, plan)
        if not par.launched:
            return relaunch(par, args.argv, plan.request.device)
    progress = not plan.request.quiet and main_rank
    read_loras(plan, say, progress)
    device = pick_device(say, plan)
    if par is not None:
        par.start(device)
    session = open_session(plan, say, device)
    if par is not None:
        par.enable(session.pipe)
    video = denoise(session, plan, progress=progress, decode=main_rank)
    if main_rank:
        write_result(plan, session, video, say, started, parallel=par.record() if par is not None else None)
    if par is not None:
        par.finish()
    return 0


def read_loras(plan: Plan, say: Messages, progress: bool) -> None:
    """Resolve, read and check every LoRA of ``plan`` (names them, prints triggers)."""
    with stage("reading the LoRA files"):
        quiet_libraries(progress)
        resolve_remote(plan.loras, progress)
        from vidlora.lora import read_lora

        used: dict[str, int] = {}
        for r in plan.loras:
            r.lora = read_lora(r.path)
            r.triggers = tuple(dict.fromkeys([*r.lora.trigger_words, *r.triggers]))
            # the same file twice (e.g. --lora-high X --lora-low X) needs two adapter names
            base = r.lora.name
            used[base] = used.get(base, 0) + 1
            r.name = base if used[base] == 1 else f"{base}_{used[base]}"
    with stage("checking the LoRAs against the model's config"):
        _check_loras_fit(plan)
    _triggers(say, plan)


def pick_device(say: Messages, plan: Plan) -> str:
    """The device to run on, with notes on what --fp8 w8a8 and --offload do on a CPU."""
    import torch

    requested, info = plan.request.device, plan.info
    if requested == "cuda" and not torch.cuda.is_available():
        raise VidloraError("--device cuda: no CUDA GPU is visible to torch (check the driver, or use --device cpu)")
    device = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and not info.is_tiny:
        say.warn("no GPU: running a full-size video model on the CPU takes hours; try --model tiny to check the setup")
    if device == "cpu" and plan.request.fp8 == "w8a8":
        say.note("--fp8 w8a8 on the CPU: block weights are stored in FP8 and activations quantized per token, in the "
                 "torch reference (W8A8's rounding, FP8's memory; no FP8 matmul speed-up: that needs an sm_89+ GPU)")
    if device == "cpu" and plan.request.offload:
        say.note(f"--offload {plan.request.offload} on the CPU: the weights already live in CPU memory, so nothing is "
                 "offloaded; ignored")
    return device


def open_session(plan: Plan, say: Messages, device: str) -> Session:
    """Load, attach + add, place: step 3 of the module docstring."""
    import torch

    from vidlora.runtime.adapters import attach

    from .. import pipelines

    req, info = plan.request, plan.info
    say.print(f"loading {info.family} from {info.location} on {device} ...")
    with stage("loading the pipeline"):
        # Into CPU memory first: bf16 whenever it runs on CUDA (the Wan VAE and CLIP stay
        # fp32, see loading.py), fp32 on the CPU.
        pipe, _ = pipelines.load_pipeline(req.model, req.task, device="cpu",
                                          dtype=torch.bfloat16 if device == "cuda" else None)  # fmt: skip
    with stage("attaching the LoRAs"):
        # With --fp8 and no offload, attach moves each layer to the GPU as it quantizes
        # it, so the bf16 and FP8 copies of the whole transformer never coexist on the GPU.
        # With offload the weights must stay in CPU memory for the hooks: quantize there.
        quantize_on = device if (req.fp8 and not req.offload and device != "cpu") else None
        handle = attach(pipe, fp8=req.fp8 or False, device=quantize_on)
        for r in plan.loras:
            handle.add(r.lora, name=r.name, weight=r.weight, expert=r.expert)
    with stage(f"placing the pipeline on {device}"):
        offload = req.offload if device != "cpu" else None  # see pick_device's note
        pipelines.place_pipeline(pipe, device, offload)
    _print_loaded(say, plan.loras, handle.report())
    return Session(pipe=pipe, handle=handle, device=device)


def denoise(session: Session, plan: Plan, *, progress: bool | None = None, decode: bool = True):
    """One generation with the session's current adapters; frames [F, H, W, 3] in 0..1
    (None with ``decode=False``: a rank other than 0 of a --gpus run)."""
    from .. import pipelines  # looked up at call time: tests replace pipelines.generate

    req = plan.request
    with stage("denoising"):
        return pipelines.generate(
            session.pipe, plan.info, prompt=plan.request.prompt, negative_prompt=req.negative_prompt,
            image=plan.image, frames=plan.frames, width=plan.width, height=plan.height, steps=plan.steps,
            guidance=plan.guidance, guidance_2=req.guidance_2, flow_shift=req.flow_shift, seed=req.seed,
            progress=not req.quiet if progress is None else progress, decode=decode, **plan.inputs,
        )


def write_result(plan: Plan, session: Session, video, say: Messages, started: float, parallel: dict | None = None):
    """The MP4 with the run's settings (comment tag + JSON sidecar), then the summary.
    parallel: the --gpus layout, recorded in the settings."""
    from vidlora._version import __version__

    from ..video import write_mp4

    req = plan.request
    metadata = {
        "tool": f"vidlora {__version__}",
        "task": req.task,
        "model": plan.info.source,
        "prompt": plan.request.prompt,
        "negative_prompt": req.negative_prompt,
        "seed": req.seed,
        "steps": plan.steps,
        "guidance": plan.guidance,
        "guidance_2": req.guidance_2,
        "flow_shift": req.flow_shift,
        "frames": plan.frames,
        # the frames' own size: a pipeline that sizes its video from the image (HunyuanVideo 1.5 I2V) decides
        "size": f"{video.shape[2]}x{video.shape[1]}" if getattr(video, "ndim", 0) == 4 else f"{plan.width}x{plan.height}",
        "fps": plan.fps,
        "fp8": req.fp8,
        **{k: v for k, v in (("input_video", req.video), ("strength", req.strength), ("mask", req.mask),
                             ("reference_images", req.reference_images or None), ("last_image", req.last_image),
                             ("image", req.image)) if v is not None},  # fmt: skip
        "loras": [
            {"name": r.name, "source": r.origin or r.source, "weight": r.weight, "expert": r.expert, "sha256": r.sha256}
            for r in plan.loras
        ],
    }
    if parallel is not None:
        metadata["parallel"] = parallel
    with stage("writing the MP4"):
        path = write_mp4(video, plan.out, fps=plan.fps, metadata=metadata, overwrite=req.overwrite)
    _print_summary(say, plan, path, time.perf_counter() - started, session.handle.report())
    if parallel is not None:
        say.print(f"  split over {parallel['gpus']} processes ({parallel['backend']}): ulysses {parallel['ulysses']} x "
                  f"ring {parallel['ring']}")
    return path


def _check_loras_fit(plan: Plan) -> None:
    """Validate every LoRA against the model's config on the meta device."""
    from vidlora.lora import match_lora
    from vidlora.model import inventory, meta_transformer

    cfg = (plan.info.configs or {}).get("transformer")
    if not cfg:
        return
    inv = inventory(meta_transformer(cfg))
    for r in plan.loras:
        parts = r.lora.experts.values() if r.lora.experts else [r.lora]
        for part in parts:
            match_lora(part, inv, strict=True)


def _triggers(say: Messages, plan: Plan) -> None:
    """Name each LoRA's trigger words; append the missing ones with --auto-trigger."""
    prompt = plan.request.prompt
    lowered = prompt.lower()
    for r in plan.loras:
        if not r.triggers:
            continue
        missing = [w for w in r.triggers if w.lower() not in lowered]
        say.print(f"trigger words of {r.name}: {', '.join(r.triggers)}")
        if missing and plan.request.auto_trigger:
            prompt = prompt.rstrip() + ", " + ", ".join(missing)
            lowered = prompt.lower()
            say.print(f"  appended to the prompt: {', '.join(missing)}")
        elif missing:
            say.warn(f"the prompt lacks {', '.join(missing)} ({r.name}'s trigger words); add them or pass --auto-trigger")
    plan.request.prompt = prompt


def _print_loaded(say: Messages, loras: list[LoraRequest], report) -> None:
    file_names = {r.name: r.lora.name for r in loras}
    for a in report["adapters"]:
        skipped = f", skipped {len(a['skipped'])} keys (see `vidlora inspect`)" if a["skipped"] else ""
        expert = f", {a['expert']}" if a["expert"] else ""
        say.print(f"LoRA {a['name']}: strength {a['weight']}, {a['linears']} layers + {a['deltas']} tensors{expert}{skipped}")
        for w in a["warnings"]:
            # the reader's warnings already start with the file's name ("style: ...")
            named = w.startswith((f"{a['name']}:", f"{file_names.get(a['name'], a['name'])}:"))
            say.warn(w if named else f"{a['name']}: {w}")


def _print_summary(say: Messages, plan: Plan, path, elapsed: float, report) -> None:
    base = []
    for key, m in report["models"].items():
        base.append(f"{key}: {m['base_dtype']} {format_bytes(m['base_bytes'])}")
    loras = ", ".join(f"{r.name}:{r.weight}" for r in plan.loras) or "none"
    say.print(f"wrote {path}: {plan.frames} frames {plan.width}x{plan.height} at {plan.fps:g} fps, {elapsed:.1f} s",
              style="green")  # fmt: skip
    say.print(f"  LoRAs: {loras}")
    say.print(f"  base weights: {'; '.join(base)}")
