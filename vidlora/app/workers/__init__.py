"""What ``vidlora sweep`` and ``vidlora serve`` share: a pipeline loaded once and kept,
running the CLI's own generate path (``session``), and Ray (``ray_setup``: the optional
extra, the cluster, each worker's CPUs/GPUs and torch threads).

``session`` imports torch when a session is made; ``ray_setup`` imports Ray only when
called, so the commands say what to install when it is missing.
"""

from __future__ import annotations

from vidlora.common.lazy import lazy_exports

__all__ = ["WorkerSession", "SilentMessages", "adapter_names", "RAY_EXTRA", "require_ray", "connect", "disconnect",
           "WorkerShape", "worker_shape"]  # fmt: skip

_LAZY = {
    "WorkerSession": "session",
    "SilentMessages": "session",
    "adapter_names": "session",
    "RAY_EXTRA": "ray_setup",
    "require_ray": "ray_setup",
    "connect": "ray_setup",
    "disconnect": "ray_setup",
    "WorkerShape": "ray_setup",
    "worker_shape": "ray_setup",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)


