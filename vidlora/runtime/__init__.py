"""The runtime layer: the patched unit and its rank stack, patching and unpatching, the
install plan, full-tensor deltas, schedules, offload, FP8 storage, and the thin
``Adapters`` handle that asks for a plan and applies it."""

from .adapters import Adapters, attach
from .report import Report

__all__ = ["attach", "Adapters", "Report"]
