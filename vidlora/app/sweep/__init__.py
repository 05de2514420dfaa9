"""``vidlora sweep``: many videos from one plan, on Ray workers that keep their pipeline.

- plan_file: the plan (JSON/YAML grid or jobs list) -> ``JobSpec``s (pure data)
- jobs: each job checked by the CLI's rules and named; LoRA sources resolved once
- dispatch: which job a free worker gets (LoRA-set affinity: swaps are rare)
- worker: ``SweepWorker``, the Ray actor (pipeline loaded once, MP4 bytes back)
- pool: the actors and the loop over their results
- manifest: ``manifest.jsonl`` (one line per job; resumable)
- report: ``contact_sheet.png`` and ``index.html``
- run: ``run_sweep``, all of it in order

Names load lazily: reading a plan imports neither torch nor Ray.
"""

from __future__ import annotations

from vidlora.common.lazy import lazy_exports

__all__ = ["run_sweep", "SweepResult", "load_plan", "parse_plan", "SweepPlan", "JobSpec", "LoraSpec",
           "MANIFEST", "MANIFEST_KEYS", "CONTACT_SHEET", "INDEX", "Dispatcher"]  # fmt: skip

_LAZY = {
    "run_sweep": "run",
    "SweepResult": "run",
    "load_plan": "plan_file",
    "parse_plan": "plan_file",
    "SweepPlan": "plan_file",
    "JobSpec": "plan_file",
    "LoraSpec": "plan_file",
    "MANIFEST": "manifest",
    "MANIFEST_KEYS": "manifest",
    "CONTACT_SHEET": "report",
    "INDEX": "report",
    "Dispatcher": "dispatch",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)


