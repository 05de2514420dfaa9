"""From a ``SweepPlan`` to runnable jobs, on the driver, before any worker starts.

- The model's configs are read once (``model_info``); every job then goes through the
  CLI's own checks (``plan_generation``), so a job is exactly the ``vidlora t2v|i2v`` run
  with the same settings (frame/size rounding, image crop, defaults) and a bad job fails
  alone, with the CLI's message.
- Each LoRA source is resolved once per sweep (downloaded into the cache, checked, its
  sha256 computed), not once per job; a source that cannot be resolved fails the jobs
  that use it and no other.
- A job's file name is ``<prompt words>-s<seed>-<digest>.mp4``: the digest covers the
  model and every setting, the LoRA files by content (sha256), so a re-run finds the jobs
  already done and an edited LoRA file is a new job.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidlora.errors import VidloraError

from ..cli.plan import GenerateRequest, LoraRequest, Plan, plan_generation
from ..messages import first_line
from .plan_file import JobSpec, SweepPlan

__all__ = ["SweepJob", "resolve_sources", "make_jobs", "job_file_name"]

_SLUG_WORDS = 5
_SLUG_CHARS = 40


@dataclass
class SweepJob:
    """One job of a sweep: its spec, file name, and either a checked Plan or an error."""

    spec: JobSpec
    file: str
    plan: Plan | None = None
    error: str | None = None
    lora_sha: tuple[str, ...] = ()

    @property
    def lora_set(self) -> tuple:
        return self.spec.lora_set


class _OnceMessages:
    """Prints each distinct note or warning once: many jobs give the same ones."""

    def __init__(self, say):
        self._say, self._seen = say, set()

    def print(self, text: str, style: str | None = None) -> None:
        self._once(text, lambda: self._say.print(text, style=style))

    def note(self, text: str) -> None:
        self._once(("note", text), lambda: self._say.note(text))

    def warn(self, text: str) -> None:
        self._once(("warn", text), lambda: self._say.warn(text))

    def _once(self, key, show) -> None:
        if key not in self._seen:
            self._seen.add(key)
            show()


def resolve_sources(plan: SweepPlan, progress: bool) -> dict[str, Any]:
    """Each distinct LoRA source of the plan -> its ``ResolvedSource``, or the error text."""
    from vidlora.lora.sources import resolve_source

    out: dict[str, Any] = {}
    for job in plan.jobs:
        for lo in job.loras:
            if lo.source in out:
                continue
            try:
                out[lo.source] = resolve_source(lo.source, progress=progress)
            except VidloraError as exc:
                out[lo.source] = str(exc)
            except OSError as exc:
                out[lo.source] = f"LoRA source {lo.source}: {first_line(exc)}"
    return out


def make_jobs(plan: SweepPlan, out_dir: Path, resolved: dict[str, Any], say, info=None) -> list[SweepJob]:
    """Check every job of ``plan`` (see the module docstring). ``info``: the model's
    ModelInfo (read here when not given); a model that cannot be read is an error for the
    whole sweep, raised before anything runs."""
    from ..pipelines.info import model_info

    info = info or model_info(plan.model, plan.task)
    once = _OnceMessages(say)
    jobs = []
    for spec in plan.jobs:
        failed = [resolved[lo.source] for lo in spec.loras if isinstance(resolved[lo.source], str)]
        shas = tuple(resolved[lo.source].sha256 if not isinstance(resolved[lo.source], str) else "" for lo in spec.loras)
        job = SweepJob(spec=spec, file=job_file_name(plan, spec, shas, info.source), lora_sha=shas)
        if failed:
            job.error = failed[0]
        else:
            try:
                job.plan = _plan_job(plan, spec, out_dir / job.file, resolved, info, once)
            except VidloraError as exc:
                job.error = str(exc)
        jobs.append(job)
    return jobs


def job_file_name(plan: SweepPlan, spec: JobSpec, lora_sha: tuple[str, ...], model: str | None = None) -> str:
    """``<prompt words>-s<seed>-<digest>.mp4`` (see the module docstring)."""
    settings = {
        "model": model or plan.model, "task": plan.task, "fp8": plan.fp8, "offload": plan.offload,
        "prompt": spec.prompt, "negative_prompt": spec.negative_prompt, "seed": spec.seed, "image": spec.image,
        "steps": spec.steps, "frames": spec.frames, "size": spec.size, "guidance": spec.guidance,
        "guidance_2": spec.guidance_2, "flow_shift": spec.flow_shift, "fps": spec.fps,
        "loras": [[lo.source, lo.weight, lo.expert, sha] for lo, sha in zip(spec.loras, lora_sha)],
    }  # fmt: skip
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=list).encode()).hexdigest()[:10]
    words = re.findall(r"[a-z0-9]+", spec.prompt.lower())[:_SLUG_WORDS]
    slug = "-".join(words)[:_SLUG_CHARS].strip("-") or "video"
    return f"{slug}-s{spec.seed}-{digest}.mp4"


def _plan_job(plan: SweepPlan, spec: JobSpec, out: Path, resolved: dict[str, Any], info, say) -> Plan:
    req = GenerateRequest(
        task=plan.task, prompt=spec.prompt, model=plan.model, image=spec.image, negative_prompt=spec.negative_prompt,
        fp8=plan.fp8, frames=spec.frames, steps=spec.steps, guidance=spec.guidance, guidance_2=spec.guidance_2,
        flow_shift=spec.flow_shift, size=spec.size, seed=spec.seed, fps=spec.fps, offload=plan.offload,
        # the sweep owns its folder: a job whose MP4 exists without its manifest line (a run
        # stopped between the two) is made again under the same name
        out=str(out), overwrite=True, device=plan.device, quiet=True,
    )  # fmt: skip
    if any(lo.expert for lo in spec.loras) and not info.two_experts:
        raise VidloraError(f"expert high/low applies to Wan 2.2 A14B models (two experts); {info.source} is {info.family}")
    # the LoRAs are resolved already (once per sweep): the CLI's checks run on the rest
    checked = plan_generation(req, say, info=info)
    checked.loras = [_lora_request(lo, resolved[lo.source]) for lo in spec.loras]
    return checked


def _lora_request(lo, resolved) -> LoraRequest:
    weight = lo.weight_value
    spec = f"{lo.source}:{weight if not isinstance(weight, list) else ','.join(map(str, weight))}"
    return LoraRequest(
        spec=spec, source=lo.source, weight=weight, expert=lo.expert, path=str(resolved.path),
        sha256=resolved.sha256, origin=resolved.origin, resolved=True, triggers=tuple(resolved.trigger_words),
    )  # fmt: skip
