"""Running the jobs on Ray actors: one ``SweepWorker`` per worker, each with at most one job
in flight, the next job chosen by the ``Dispatcher`` (LoRA-set affinity).

A worker that dies (killed for memory, a crash in a native library) fails the job it had
with the reason; a new worker takes its place, up to as many replacements as there are
workers, so one poisoned job cannot take the sweep down with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .dispatch import Dispatcher
from .worker import SweepWorker

__all__ = ["PoolStats", "run_on_ray"]


@dataclass
class PoolStats:
    workers_started: int = 0
    swaps: int = 0
    load_seconds: float = 0.0
    worker_deaths: int = 0


def run_on_ray(jobs: list, shape, on_result: Callable[[Any, dict[str, Any]], None]) -> PoolStats:
    """Run ``jobs`` (SweepJob with a plan) on ``shape.count`` workers; ``on_result(job,
    result)`` is called on the driver as each one finishes."""
    import ray

    stats = PoolStats()
    if not jobs:
        return stats
    remote = ray.remote(SweepWorker).options(num_cpus=shape.num_cpus, num_gpus=shape.num_gpus or None, max_restarts=0)
    by_id = {i: job for i, job in enumerate(jobs)}
    dispatcher = Dispatcher([(i, job.lora_set) for i, job in by_id.items()])
    workers: dict[int, Any] = {}
    in_flight: dict[Any, tuple[int, int]] = {}  # ref -> (worker, job id)
    spare = shape.count

    def start_worker(slot: int) -> None:
        workers[slot] = remote.remote(shape.threads)
        stats.workers_started += 1

    def give(slot: int) -> None:
        job_id = dispatcher.next_for(slot)
        if job_id is None:
            return
        job = by_id[job_id]
        in_flight[workers[slot].run.remote(job.plan, job.file)] = (slot, job_id)

    for slot in range(min(shape.count, len(jobs))):
        start_worker(slot)
        give(slot)
    try:
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            slot, job_id = in_flight.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:
                stats.worker_deaths += 1
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                result = {"ok": False, "error": f"the worker died while running this job: {reason}", "seconds": None}
                workers.pop(slot, None)
                if spare > 0:
                    spare -= 1
                    start_worker(slot)
            stats.load_seconds += float(result.get("load_seconds") or 0.0)
            stats.swaps += int(bool(result.get("swapped")))
            on_result(by_id[job_id], result)
            if slot in workers:
                give(slot)
        # every worker died and none was left to replace them: the rest cannot run
        while (job_id := dispatcher.next_for(None)) is not None:
            on_result(by_id[job_id], {"ok": False, "error": "not run: every worker died (see the errors above)"})
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        for actor in workers.values():
            ray.kill(actor)
    return stats
