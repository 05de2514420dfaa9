"""A sweep plan (JSON or YAML) -> the list of jobs it asks for. Pure data: no torch, no Ray.

Two shapes, with the CLI's names for the settings (``frames`` or ``num_frames``):

    model: tiny                  # one model, task, fp8 and offload per sweep (the workers load it once)
    prompts: ["a paper boat", "a fox"]
    seeds: [0, 1, 2]
    loras:                       # each entry is one LoRA set: the request shape of `vidlora serve`
      - []                       #   no LoRA
      - [{model: motion.safetensors, weight: 0.8}]
      - [{model: motion.safetensors, weight: 0.8}, "style.safetensors:1.0,0.5"]   # SOURCE[:W] works too
    strengths: [0.5, 1.0]        # optional: multiplies every weight of a set (strength sweeps)
    steps: 30
    frames: 49
    size: 832x480

or ``jobs: [{prompt, seed, loras, steps, ...}, ...]`` with the top-level settings as defaults.
The grid is expanded LoRA set -> strength -> prompt -> seed; the contact sheet's rows are the
LoRA settings, its columns the prompt/seed pairs. Relative LoRA and image paths are read
from the plan file's folder when they exist there. A duplicate job is run once.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidlora.errors import VidloraError

__all__ = ["LoraSpec", "JobSpec", "SweepPlan", "load_plan", "parse_plan", "describe_loras"]

_SWEEP_KEYS = ("model", "task", "fp8", "offload", "device")  # one per sweep: workers load the model once
_JOB_KEYS = ("prompt", "negative_prompt", "seed", "loras", "lora", "image", "steps", "frames", "num_frames", "size",
             "guidance", "guidance_2", "flow_shift", "fps")  # fmt: skip
_GRID_KEYS = ("prompts", "seeds", "strengths")
_TASKS = ("t2v", "i2v")
_FP8 = (None, False, True, "w8a16", "w8a8")
_OFFLOAD = (None, "model", "group", "sequential")
_EXPERTS = (None, "high", "low")


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA of a job: its source (as ``--lora`` takes it), strength or schedule, expert."""

    source: str
    weight: float | tuple[float, ...] = 1.0
    expert: str | None = None

    @property
    def weight_value(self) -> float | list[float]:
        """The weight as the CLI's parser gives it (a float, or a list for a schedule)."""
        return list(self.weight) if isinstance(self.weight, tuple) else self.weight


@dataclass(frozen=True)
class JobSpec:
    """One video of a sweep, as asked for (values the model rounds are rounded later)."""

    prompt: str
    seed: int = 0
    loras: tuple[LoraSpec, ...] = ()
    negative_prompt: str | None = None
    image: str | None = None
    steps: int | None = None
    frames: int | None = None
    size: tuple[int, int] | None = None
    guidance: float | None = None
    guidance_2: float | None = None
    flow_shift: float | None = None
    fps: float | None = None

    @property
    def lora_set(self) -> tuple[tuple[str, str | None], ...]:
        """The LoRA files in stacking order, weights excluded: jobs with the same set share a
        worker's adapters, and a change of strength between them never swaps."""
        return tuple((lo.source, lo.expert) for lo in self.loras)


@dataclass(frozen=True)
class SweepPlan:
    """The sweep-level settings and the expanded jobs (in plan order, duplicates removed)."""

    path: Path
    model: str | None
    task: str
    fp8: str | None
    offload: str | None
    device: str | None
    jobs: tuple[JobSpec, ...]
    duplicates: int = 0


def load_plan(path: str | os.PathLike) -> SweepPlan:
    """Read and expand a plan file (``.json``, ``.yaml`` or ``.yml``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise VidloraError(f"sweep plan {path} does not exist" if not path.exists() else f"sweep plan {path} is not a file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pragma: no cover - huggingface_hub depends on PyYAML
            raise VidloraError("YAML sweep plans need PyYAML: pip install pyyaml (or write the plan as JSON)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise VidloraError(f"sweep plan {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VidloraError(f"sweep plan {path} is not valid JSON: {exc}") from None
    else:
        raise VidloraError(f"sweep plan {path} must end in .json, .yaml or .yml")
    return parse_plan(data, path)


def parse_plan(data: Any, path: str | os.PathLike = "plan") -> SweepPlan:
    """Expand the plan ``data`` (already parsed JSON/YAML); ``path`` names it in errors and
    is the folder relative LoRA/image paths are read from."""
    path = Path(path)
    where = str(path)
    if not isinstance(data, dict):
        raise VidloraError(f"{where}: a sweep plan is a mapping of settings; got {type(data).__name__}")
    known = (*_SWEEP_KEYS, *_JOB_KEYS, *_GRID_KEYS, "jobs")
    _unknown(data, known, where)
    task = data.get("task") or ("i2v" if data.get("image") else "t2v")
    _choice(task, _TASKS, f"{where}: task")
    fp8 = data.get("fp8")
    _choice(fp8, _FP8, f"{where}: fp8")
    fp8 = "w8a16" if fp8 is True else (fp8 or None)
    _choice(data.get("offload"), _OFFLOAD, f"{where}: offload")
    _choice(data.get("device"), (None, "cpu", "cuda"), f"{where}: device")
    model = _optional_text(data.get("model"), f"{where}: model")
    base = path.parent if path.suffix else Path(".")
    defaults = {k: v for k, v in data.items() if k in _JOB_KEYS}

    if "jobs" in data:
        grid = [k for k in (*_GRID_KEYS, "loras") if k in data]
        if grid:
            raise VidloraError(f"{where}: give either a grid ({', '.join(_GRID_KEYS)}, loras) or a jobs list, not both "
                               f"(found jobs and {', '.join(grid)})")  # fmt: skip
        entries = data["jobs"]
        if not isinstance(entries, list) or not entries:
            raise VidloraError(f"{where}: jobs must be a non-empty list of job settings")
        raw = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise VidloraError(f"{where}: jobs[{i}] must be a mapping of settings; got {type(entry).__name__}")
            bad = [k for k in entry if k in _SWEEP_KEYS]
            if bad:
                raise VidloraError(f"{where}: jobs[{i}].{bad[0]} is set once per sweep (top level): every worker loads "
                                   "one model and keeps it")  # fmt: skip
            _unknown(entry, _JOB_KEYS, f"{where}: jobs[{i}]")
            raw.append((_merge(defaults, entry), f"{where}: jobs[{i}]", f"{where}: jobs[{i}].loras", 1.0))
    else:
        raw = _grid(data, defaults, where)
    jobs: list[JobSpec] = []
    for values, label, lora_label, strength in raw:
        jobs.append(_job(values, label, lora_label, strength, base))
    unique = list(dict.fromkeys(jobs))
    return SweepPlan(path=path, model=model, task=task, fp8=fp8, offload=data.get("offload"), device=data.get("device"),
                     jobs=tuple(unique), duplicates=len(jobs) - len(unique))  # fmt: skip


def describe_loras(loras: tuple[LoraSpec, ...]) -> str:
    """A LoRA setting as one short line: ``motion:0.8 + style:1,0.5`` (``no LoRA``)."""
    if not loras:
        return "no LoRA"
    parts = []
    for lo in loras:
        name = Path(lo.source).stem if lo.source.endswith(".safetensors") else lo.source
        w = ",".join(f"{v:g}" for v in lo.weight) if isinstance(lo.weight, tuple) else f"{lo.weight:g}"
        parts.append(f"{name}:{w}" + (f" ({lo.expert})" if lo.expert else ""))
    return " + ".join(parts)


# ---------------------------------------------------------------------- expansion
def _merge(defaults: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """A job's own settings over the top level's; its frames (or num_frames) replace both
    spellings of the default, its loras (or lora) both of those."""
    base = dict(defaults)
    for pair in (("frames", "num_frames"), ("loras", "lora")):
        if any(k in entry for k in pair):
            for k in pair:
                base.pop(k, None)
    return {**base, **entry}


def _grid(data: dict[str, Any], defaults: dict[str, Any], where: str) -> list[tuple[dict[str, Any], str, str, float]]:
    if "prompt" in data and "prompts" in data:
        raise VidloraError(f"{where}: give prompt or prompts, not both")
    if "seed" in data and "seeds" in data:
        raise VidloraError(f"{where}: give seed or seeds, not both")
    prompts = data["prompts"] if "prompts" in data else ([data["prompt"]] if "prompt" in data else None)
    if not isinstance(prompts, list) or not prompts:
        raise VidloraError(f"{where}: prompts must be a non-empty list of prompts (or give a jobs list)")
    seeds = data["seeds"] if "seeds" in data else [data.get("seed", 0)]
    if not isinstance(seeds, list) or not seeds:
        raise VidloraError(f"{where}: seeds must be a non-empty list of whole numbers")
    sets = data.get("loras", [[]])
    if not isinstance(sets, list) or not sets:
        raise VidloraError(f"{where}: loras must be a non-empty list of LoRA sets (each a list; [] for none)")
    strengths = data.get("strengths", [1.0])
    if not isinstance(strengths, list) or not strengths:
        raise VidloraError(f"{where}: strengths must be a non-empty list of numbers")
    for i, s in enumerate(strengths):
        _number(s, f"{where}: strengths[{i}]")
    defaults = {k: v for k, v in defaults.items() if k not in ("prompt", "seed", "loras", "lora")}
    out = []
    for i, lora_set in enumerate(sets):
        if not isinstance(lora_set, list):
            raise VidloraError(f"{where}: loras[{i}] must be a list of LoRAs ({{model, weight}} or 'SOURCE:W'); "
                               f"got {type(lora_set).__name__}")  # fmt: skip
        for strength in strengths if lora_set else [1.0]:  # strengths of no LoRA are one job
            for prompt in prompts:
                for seed in seeds:
                    values = {**defaults, "prompt": prompt, "seed": seed, "loras": lora_set}
                    out.append((values, where, f"{where}: loras[{i}]", float(strength)))
    return out


def _job(values: dict[str, Any], where: str, lora_where: str, strength: float, base: Path) -> JobSpec:
    if "loras" in values and "lora" in values:
        raise VidloraError(f"{where}: give loras or lora, not both")
    if "frames" in values and "num_frames" in values and values["frames"] != values["num_frames"]:
        raise VidloraError(f"{where}: frames and num_frames differ ({values['frames']} vs {values['num_frames']})")
    prompt = values.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise VidloraError(f"{where}: prompt must be non-empty text; got {prompt!r}")
    loras = values.get("loras", values.get("lora", []))
    if not isinstance(loras, list):
        raise VidloraError(f"{where}: loras must be a list of {{model, weight}} entries; got {type(loras).__name__}")
    frames = values.get("frames", values.get("num_frames"))
    image = _optional_text(values.get("image"), f"{where}: image")
    return JobSpec(
        prompt=prompt, seed=_whole(values.get("seed", 0), f"{where}: seed", minimum=0),
        loras=tuple(_lora(entry, f"{lora_where}[{k}]", strength, base) for k, entry in enumerate(loras)),
        negative_prompt=_optional_text(values.get("negative_prompt"), f"{where}: negative_prompt"),
        image=_local(image, base) if image else None,
        steps=_optional(values.get("steps"), lambda v: _whole(v, f"{where}: steps", minimum=1)),
        frames=_optional(frames, lambda v: _whole(v, f"{where}: frames", minimum=1)),
        size=_optional(values.get("size"), lambda v: _size(v, f"{where}: size")),
        guidance=_optional(values.get("guidance"), lambda v: _number(v, f"{where}: guidance")),
        guidance_2=_optional(values.get("guidance_2"), lambda v: _number(v, f"{where}: guidance_2")),
        flow_shift=_optional(values.get("flow_shift"), lambda v: _number(v, f"{where}: flow_shift", positive=True)),
        fps=_optional(values.get("fps"), lambda v: _number(v, f"{where}: fps", positive=True)),
    )  # fmt: skip


def _lora(entry: Any, where: str, strength: float, base: Path) -> LoraSpec:
    if isinstance(entry, str):
        from vidlora.lora.sources import parse_lora_spec

        source, weight = parse_lora_spec(entry)
        expert = None
    elif isinstance(entry, dict):
        _unknown(entry, ("model", "weight", "expert"), where)
        source = entry.get("model")
        if not isinstance(source, str) or not source.strip():
            raise VidloraError(f"{where}.model must name a LoRA source (a path, owner/repo, a URL, civitai:ID)")
        weight = entry.get("weight", 1.0)
        expert = entry.get("expert")
        _choice(expert, _EXPERTS, f"{where}.expert")
    else:
        raise VidloraError(f"{where} must be {{model, weight}} or 'SOURCE:W'; got {type(entry).__name__}")
    if isinstance(weight, list):
        if not weight:
            raise VidloraError(f"{where}.weight: a schedule needs at least one value")
        value: float | tuple[float, ...] = tuple(_number(w, f"{where}.weight[{i}]") * strength for i, w in enumerate(weight))
    else:
        value = _number(weight, f"{where}.weight") * strength
    return LoraSpec(source=_local(source.strip(), base), weight=value, expert=expert)


def _local(source: str, base: Path) -> str:
    """A relative path that exists beside the plan file is read from there; anything else
    (an absolute path, owner/repo on the Hub, a URL) stays as written."""
    candidate = Path(source).expanduser()
    if not candidate.is_absolute() and (base / candidate).exists():
        return str((base / candidate).resolve())
    return source


# ---------------------------------------------------------------------- value checks
def _unknown(data: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    bad = [k for k in data if k not in known]
    if bad:
        import difflib

        close = difflib.get_close_matches(str(bad[0]), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise VidloraError(f"{where}: unknown setting {bad[0]!r}{hint}; known: {', '.join(known)}")


def _choice(value: Any, allowed: tuple, what: str) -> None:
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed if a is not None)
        raise VidloraError(f"{what} must be one of {shown}; got {value!r}")


def _optional(value: Any, check) -> Any:
    return None if value is None else check(value)


def _optional_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise VidloraError(f"{what} must be text; got {type(value).__name__}")
    return value


def _whole(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise VidloraError(f"{what} must be a whole number >= {minimum}; got {value!r}")
    return value


def _number(value: Any, what: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise VidloraError(f"{what} must be a finite number; got {value!r}")
    if positive and value <= 0:
        raise VidloraError(f"{what} must be > 0; got {value!r}")
    return float(value)


def _size(value: Any, what: str) -> tuple[int, int]:
    parts = str(value).lower().replace("*", "x").split("x") if isinstance(value, str) else []
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise VidloraError(f"{what} must be WIDTHxHEIGHT in pixels (e.g. 832x480); got {value!r}")
    return int(parts[0]), int(parts[1])
