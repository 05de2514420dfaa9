"""``vidlora inspect FILE [--model ID_OR_DIR] [--json]``: what a LoRA holds and whether it
fits a model (checked against the model's config on the meta device: no weights load).

The file is resolved (and a missing, pickled or non-safetensors file refused) before torch
is imported; diffusers is imported only with --model (the meta-device model needs it).
"""

from __future__ import annotations

import json
import sys

from .console import quiet_libraries
from .stages import stage

__all__ = ["run_inspect"]


def run_inspect(args) -> int:
    from vidlora.lora.sources import resolve_source

    resolved = resolve_source(args.file, progress=not args.json)
    with stage("reading the LoRA file"):
        from vidlora.lora import read_lora

        lora = read_lora(resolved.path)
    if args.model:
        quiet_libraries(progress=not args.json)
    with stage("checking against the model's config" if args.model else "describing the LoRA"):
        from ..inspect_report import build_report, render_report

        inv = _inventory(args.model, lora) if args.model else None
        report = build_report(lora, inv)
    report.setdefault("source", resolved.origin)
    report.setdefault("sha256", resolved.sha256)
    if resolved.trigger_words:
        words = list(dict.fromkeys([*report.get("trigger_words", []), *resolved.trigger_words]))
        report["trigger_words"] = words
    if args.json:
        json.dump(report, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        text = render_report(report)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    compat = report.get("compatibility")
    if not compat:
        return 0
    parts = [compat] if "ok" in compat else list(compat.values())  # one part per Wan 2.2 expert
    # a LoRA that does not fit the model given is an answer, not a crash: exit 1
    return 0 if all(p.get("ok") for p in parts) else 1


def _inventory(model: str, lora):
    """The model's inventory from its config: Hub id, folder, built-in config name, or the
    embedded tiny model (``tiny`` follows the LoRA's own task; ``tiny:KIND`` names one)."""
    from ..inspect_report import model_inventory

    text = model.strip()
    if text == "tiny" or text.startswith("tiny:"):
        from ..pipelines.info import model_info
        from ..tiny.configs import TINY_PIPELINE_TASKS

        kind = text.partition(":")[2]
        task = TINY_PIPELINE_TASKS.get(kind, "t2v") if kind else (lora.variant.task or "t2v")
        return model_inventory(model_info(text, task).location)
    return model_inventory(text)
