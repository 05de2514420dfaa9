"""Asynchronous jobs of ``vidlora serve``: submit now, fetch the video later.

    POST   /v1/jobs            the /v1/generate body -> 202 {"id", "status", "url", "video_url"}
    GET    /v1/jobs            the jobs held, newest first
    GET    /v1/jobs/ID         {"id", "status": queued | running | done | failed, "error", ...}
    GET    /v1/jobs/ID/video   the MP4 once done; 409 before; a failed job's own 4xx/5xx
    DELETE /v1/jobs/ID         forget a finished job (its MP4 freed), cancel a queued one;
                               409 while it runs (a replica cannot stop mid-video)

The ingress checks the body and resolves its LoRA sources before answering 202, so a bad
request gets the same 4xx as ``/v1/generate`` and never becomes a job. Jobs run at most one
per model replica at a time, so they never fill the replicas' queue that synchronous
requests wait in; if a burst of ``/v1/generate`` fills it anyway, a job waits and retries
instead of failing. The ingress holds at most ``max_jobs`` jobs (queued, running and
finished together): to make room the oldest finished ones are dropped, MP4 and all; with
every slot queued or running a new job is 503 naming the limit. Jobs live in the ingress
process: restarting the server forgets them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..messages import first_line
from .request import RequestError

__all__ = ["Job", "JobStore", "RETRY_S"]

RETRY_S = 0.5  # a job whose replica queue is full tries again after this long

ModelCall = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]


def _stamp(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class Job:
    id: str
    created: float
    request: dict[str, Any]  # what was asked, for the status (no image bytes)
    status: str = "queued"
    started: float | None = None
    finished: float | None = None
    reply: dict[str, Any] | None = None  # the replica's answer (``replica.py``)
    task: asyncio.Task | None = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        reply = self.reply or {}
        out = {
            "id": self.id, "status": self.status, "url": f"/v1/jobs/{self.id}",
            "video_url": f"/v1/jobs/{self.id}/video", "created": _stamp(self.created),
            "started": _stamp(self.started), "finished": _stamp(self.finished),
            "seconds": None if self.finished is None or self.started is None else round(self.finished - self.started, 3),
            "request": self.request, "headers": reply.get("headers", {}),
        }  # fmt: skip
        if self.status == "failed":
            out.update(error=reply.get("error"), field=reply.get("field"), http_status=reply.get("status"))
        return out


class JobStore:
    """The ingress's jobs. ``call``: the coroutine that sends one payload to the model
    deployment (it raises RequestError 503 when the replicas' queue is full)."""

    def __init__(self, call: ModelCall, max_jobs: int, concurrency: int):
        self._call, self._max = call, max_jobs
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._jobs: dict[str, Job] = {}  # in submission order

    def check_room(self) -> None:
        """Raise the 503 a submit would, before the body is read and its LoRAs resolved."""
        if len(self._jobs) >= self._max and not any(j.status in ("done", "failed") for j in self._jobs.values()):
            raise self._full()

    def submit(self, payload: dict[str, Any], set_id: str) -> Job:
        self._make_room()
        request = {k: v for k, v in payload.items() if k not in ("image", "set_id")}
        request["loras"] = [{"model": e["source"], "weight": e["weight"], "sha256": e["sha256"]} for e in payload["loras"]]
        job = Job(id=uuid.uuid4().hex, created=time.time(), request=request)
        self._jobs[job.id] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job, payload, set_id))
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise RequestError(404, f"no job {job_id!r} on this server (finished jobs are dropped oldest first past "
                               f"{self._max}; a restart forgets them all)")  # fmt: skip
        return job

    def listing(self) -> list[dict[str, Any]]:
        return [j.describe() for j in reversed(self._jobs.values())]

    def delete(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.status == "running":
            raise RequestError(409, f"job {job_id} is running; a replica cannot stop mid-video (fetch or delete it "
                               "once it is done)")  # fmt: skip
        if job.status == "queued" and job.task is not None:
            job.task.cancel()
            job.status = "cancelled"
        del self._jobs[job_id]
        return job

    def _make_room(self) -> None:
        while len(self._jobs) >= self._max:
            oldest = next((j for j in self._jobs.values() if j.status in ("done", "failed")), None)
            if oldest is None:
                raise self._full()
            del self._jobs[oldest.id]

    def _full(self) -> RequestError:
        return RequestError(503, f"the server holds {self._max} jobs, all queued or running (--max-jobs {self._max}); "
                            "retry later or delete finished ones")  # fmt: skip

    async def _run(self, job: Job, payload: dict[str, Any], set_id: str) -> None:
        async with self._slots:
            reply = None
            while reply is None:
                job.status, job.started = "running", time.time()
                try:
                    reply = await self._call(payload, set_id)
                except RequestError as exc:
                    if exc.status == 503:  # the replicas' queue is full of synchronous requests: wait
                        job.status, job.started = "queued", None  # (and may be cancelled meanwhile)
                        await asyncio.sleep(RETRY_S)
                        continue
                    reply = {"status": exc.status, "error": exc.message, "field": exc.field, "headers": {}}
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded in the job, never a dead ingress
                    reply = {"status": 500, "error": f"{type(exc).__name__}: {first_line(exc)}", "field": None,
                             "headers": {}}  # fmt: skip
        job.reply, job.finished = reply, time.time()
        job.status = "done" if reply.get("status") == 200 else "failed"
