"""The sweep worker: a plain class that Ray runs as an actor (``ray.remote(SweepWorker)``).

It loads and attaches the pipeline on its first job and keeps it (``WorkerSession``), then
runs job after job. The MP4 is written in the worker's own temporary folder and its bytes
go back to the driver, which puts them into the sweep folder: a cluster needs no shared
filesystem. A failing job comes back as its error text; the worker lives on.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from vidlora.errors import VidloraError

from ..cli.stages import StageError
from ..messages import first_line

__all__ = ["SweepWorker"]


def _error_text(exc: BaseException) -> str:
    """One line for the manifest: vidlora's own message, or the stage and the exception."""
    if isinstance(exc, (VidloraError, StageError)):
        return str(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"


class SweepWorker:
    """``threads``: torch intra-op threads for this worker (its share of the CPUs)."""

    def __init__(self, threads: int | None = None):
        self._threads = threads
        self._session = None
        self._tmp = Path(tempfile.mkdtemp(prefix="vidlora-sweep-"))

    def run(self, plan, file: str) -> dict[str, Any]:
        """One job -> {"ok", "mp4", "sidecar", "seconds", "swapped", "load_seconds"} or
        {"ok": False, "error", "seconds"}."""
        started = time.perf_counter()
        load = 0.0
        try:
            if self._session is None:
                from ..workers.session import WorkerSession

                self._session = WorkerSession(plan, threads=self._threads)
                load = self._session.load_seconds
            job_started = time.perf_counter()
            target = self._tmp / file
            path, swapped = self._session.run(plan, out=target)
            sidecar = path.with_name(path.name + ".json")
            result = {"ok": True, "mp4": path.read_bytes(), "sidecar": sidecar.read_bytes(), "swapped": swapped,
                      "seconds": time.perf_counter() - job_started, "load_seconds": load}  # fmt: skip
            path.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            return result
        except Exception as exc:  # noqa: BLE001 - a job's failure is recorded, the worker lives on
            return {"ok": False, "error": _error_text(exc), "seconds": time.perf_counter() - started,
                    "load_seconds": load}  # fmt: skip

    def stats(self) -> dict[str, Any]:
        s = self._session
        return {"swaps": s.swaps if s else 0, "device": s.device if s else None}
