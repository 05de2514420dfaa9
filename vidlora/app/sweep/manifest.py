"""``DIR/manifest.jsonl``: one JSON line per job, flat keys other tools read (DESIGN.md):
``file, prompt, seed, loras [{model, weight, sha256}], steps, frames, size, guidance,
seconds, error`` (``error`` is null for a job that made its MP4).

Lines are appended as jobs finish (a stopped sweep keeps what it made) and the file is
rewritten once at the end, atomically, with one line per job in plan order. A re-run skips
a job whose MP4 exists and whose line has no error; a last line cut short by a crash is
ignored.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST", "MANIFEST_KEYS", "read_manifest", "append_line", "write_manifest", "job_line", "is_done"]

MANIFEST = "manifest.jsonl"
MANIFEST_KEYS = ("file", "prompt", "seed", "loras", "steps", "frames", "size", "guidance", "seconds", "error")


def read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """file -> its latest line (later lines win)."""
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue  # a line cut short when a run was stopped
        if isinstance(line, dict) and isinstance(line.get("file"), str):
            out[line["file"]] = line
    return out


def is_done(folder: Path, line: dict[str, Any] | None) -> bool:
    return bool(line) and line.get("error") is None and (folder / line["file"]).is_file()


def job_line(job, seconds: float | None, error: str | None) -> dict[str, Any]:
    """The manifest line of a SweepJob (checked values when it was planned, else as asked)."""
    spec, plan = job.spec, job.plan
    loras = [{"model": lo.source, "weight": lo.weight_value, "sha256": sha or None} for lo, sha in zip(spec.loras, job.lora_sha)]
    if plan is not None:
        steps, frames, size, guidance = plan.steps, plan.frames, f"{plan.width}x{plan.height}", plan.guidance
    else:
        steps, frames, guidance = spec.steps, spec.frames, spec.guidance
        size = f"{spec.size[0]}x{spec.size[1]}" if spec.size else None
    return {
        "file": job.file, "prompt": spec.prompt, "seed": spec.seed, "loras": loras, "steps": steps, "frames": frames,
        "size": size, "guidance": guidance, "seconds": None if seconds is None else round(seconds, 3), "error": error,
    }  # fmt: skip


def append_line(folder: Path, line: dict[str, Any]) -> None:
    with open(folder / MANIFEST, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_manifest(folder: Path, lines: list[dict[str, Any]]) -> None:
    """Replace the manifest with ``lines``, atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(json.dumps(line) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / MANIFEST)
    finally:
        Path(tmp).unlink(missing_ok=True)
