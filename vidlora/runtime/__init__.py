"""The runtime layer: the patched unit and its rank stack, patching and unpatching, the
install plan, full-tensor deltas, schedules, offload, FP8 storage, context parallelism, and the thin
``Adapters`` handle that asks for a plan and applies it."""

from .adapters import Adapters, attach
from .parallel import ContextParallel, context_parallel
from .report import Report

__all__ = ["attach", "Adapters", "Report", "context_parallel", "ContextParallel"]
