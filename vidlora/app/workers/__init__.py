"""What ``vidlora sweep`` and ``vidlora serve`` share: a pipeline loaded once and kept,
running the CLI's own generate path (``session``), and Ray (``ray_setup``: the optional
extra, the cluster, each worker's CPUs/GPUs and torch threads).

``session`` imports torch when a session is made; ``ray_setup`` imports Ray only when
called, so the commands say what to install when it is missing.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
