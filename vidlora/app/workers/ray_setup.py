"""Ray for ``vidlora sweep`` and ``vidlora serve``: the optional extra, the cluster, and what
each worker is given.

- Ray is optional (``pip install "vidlora[ray]"``, which brings ``ray[serve]``); without it
  both commands stop with that line, before any model is read.
- Without ``--address`` a real local Ray cluster is started on this machine
  (``ray.init(num_cpus=...)``: Ray 2.60 has no local mode any more) and shut down at the
  end; with it, the command joins that cluster (``auto``, ``ray://host:10001``...), whose
  nodes need the same Python environment with vidlora installed.
- Workers: one per GPU by default; on a CPU-only cluster one, or ``--workers N`` processes
  sharing the CPUs (fractional ``num_cpus``). Ray sets OMP_NUM_THREADS to an actor's whole
  CPUs (1 for a fraction), so each worker sets torch's threads explicitly to its share.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

from vidlora.errors import VidloraError

__all__ = ["RAY_EXTRA", "require_ray", "connect", "disconnect", "WorkerShape", "worker_shape"]

RAY_EXTRA = 'pip install "vidlora[ray]"'
# The local cluster's object store: the MP4s and job plans that pass through it are a few
# MB each; Ray's default (30% of memory, in /dev/shm) would reserve gigabytes for nothing.
_LOCAL_OBJECT_STORE = 512 * 1024 * 1024


def require_ray(command: str):
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise VidloraError(f"vidlora {command} runs on Ray, which is not installed: {RAY_EXTRA} "
                           "(brings ray[serve])") from None  # fmt: skip
    return ray


def connect(address: str | None, command: str, num_cpus: int | None = None) -> bool:
    """Join ``address`` or start a local cluster; True when this call started Ray (and the
    caller should :func:`disconnect` at the end). A Ray already initialised in this process
    (a test's, a notebook's) is used as it is."""
    ray = require_ray(command)
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reporting from an offline machine
    kwargs = dict(log_to_driver=False, logging_level=logging.WARNING, include_dashboard=False)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, object_store_memory=_LOCAL_OBJECT_STORE, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise VidloraError(f"vidlora {command}: cannot start or join {where}: {str(exc).splitlines()[0]}") from None
    return True


def disconnect(started: bool) -> None:
    if started:
        import ray

        ray.shutdown()


@dataclass(frozen=True)
class WorkerShape:
    """How many workers, and what Ray gives each one."""

    count: int
    num_cpus: float
    num_gpus: float
    threads: int  # torch intra-op threads

    def describe(self, noun: str = "worker") -> str:
        what = f"{self.num_gpus:g} GPU + " if self.num_gpus else ""
        plural = "s" if self.count != 1 else ""
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return f"{self.count} {noun}{plural} ({what}{self.num_cpus:g} CPU, {threads} each)"


def worker_shape(requested: int | None, at_most: int | None = None) -> WorkerShape:
    """Workers for the connected cluster: ``requested`` or one per GPU (one on CPU only),
    never more than ``at_most`` (the jobs to run). CPUs are shared out evenly."""
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    count = requested or (int(gpus) if gpus >= 1 else 1)
    if at_most is not None:
        count = max(1, min(count, at_most))
    per_cpu = cpus / count
    # whole CPUs stay whole (Ray places them exactly); a share below one stays fractional
    num_cpus = math.floor(per_cpu) if per_cpu >= 1 else round(per_cpu, 3)
    num_gpus = 0.0 if gpus < 1 else (1.0 if count <= gpus else round(gpus / count, 3))
    return WorkerShape(count=count, num_cpus=max(num_cpus, 0.001), num_gpus=num_gpus, threads=max(1, int(per_cpu)))
