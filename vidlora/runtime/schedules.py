"""Adapter strengths: a constant, a list spread over the denoising steps, or a callable.

Rules (the public API's contract):

* a float (any sign) is a constant strength;
* a list of L floats is spread evenly over the n steps: step i uses value
  ``floor(i * L / n)``; L == n means one value per step;
* a callable ``f(step, n_steps) -> float`` is evaluated at every step.

The step index during a pipeline run comes from the pipeline's scheduler
(:func:`current_step`): diffusers schedulers count ``step_index`` from the first
``scheduler.step`` after ``set_timesteps``, so the transformer call(s) of step i (two with
classifier-free guidance, or one per Wan 2.2 expert) all see i, and no callback is needed.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch

from vidlora.errors import VidloraError

__all__ = ["WeightSpec", "check_weight", "weight_at", "is_schedule", "current_step", "describe_weight"]

WeightSpec = Union[float, list, Callable[[int, int], float]]


def check_weight(w, what: str = "weight") -> WeightSpec:
    """Validate a strength spec; returns a float, a tuple of floats or the callable."""
    if callable(w):
        return w
    if isinstance(w, bool):
        raise VidloraError(f"{what} must be a number, a list of numbers or a callable(step, n_steps); got {w!r}")
    if isinstance(w, (int, float)):
        w = float(w)
        if not math.isfinite(w):
            raise VidloraError(f"{what} must be finite; got {w}")
        return w
    if isinstance(w, (list, tuple)):
        if not w:
            raise VidloraError(f"{what}: an empty list of strengths; give at least one value")
        out = []
        for v in w:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise VidloraError(f"{what}: every strength in a schedule must be a finite number; got {v!r}")
            out.append(float(v))
        return tuple(out)
    raise VidloraError(f"{what} must be a number, a list of numbers or a callable(step, n_steps); got {type(w).__name__}")


def is_schedule(w: WeightSpec) -> bool:
    return not isinstance(w, float)


def weight_at(w: WeightSpec, step: int, n_steps: int) -> float:
    """The strength of spec ``w`` at ``step`` of ``n_steps``."""
    if isinstance(w, float):
        return w
    n_steps = max(int(n_steps), 1)
    step = min(max(int(step), 0), n_steps - 1)
    if isinstance(w, tuple):
        return w[min(step * len(w) // n_steps, len(w) - 1)]
    value = w(step, n_steps)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise VidloraError(f"a strength schedule returned {value!r} at step {step}/{n_steps}; expected a number") from None
    if not math.isfinite(value):
        raise VidloraError(f"a strength schedule returned {value} at step {step}/{n_steps}")
    return value


def describe_weight(w: WeightSpec) -> str:
    if isinstance(w, float):
        return f"{w:g}"
    if isinstance(w, tuple):
        return "schedule[" + ",".join(f"{v:g}" for v in w) + "]"
    return f"schedule({getattr(w, '__name__', 'callable')})"


def current_step(scheduler, timestep) -> tuple[int, int] | None:
    """(step, n_steps) of a running diffusers pipeline, or None when it cannot be told.

    Prefers the scheduler's own counter; falls back to the nearest entry of
    ``scheduler.timesteps`` to the timestep the transformer received.
    """
    timesteps = getattr(scheduler, "timesteps", None)
    if timesteps is None or len(timesteps) == 0:
        return None
    n = len(timesteps)
    idx = getattr(scheduler, "step_index", None)
    if idx is None and hasattr(scheduler, "step_index"):
        idx = getattr(scheduler, "begin_index", None) or 0
    if idx is not None:
        return min(int(idx), n - 1), n
    if timestep is None:
        return None
    t = float(torch.as_tensor(timestep).detach().float().max())
    ts = torch.as_tensor(timesteps).detach().float().cpu()
    return int(torch.argmin((ts - t).abs())), n
