"""The kernels' first-use path choice, seen from a patched model: the Linear shape classes
it uses, measuring them ahead of time, and the recorded choices that concern it."""

from __future__ import annotations

import torch

from vidlora.errors import VidloraError

from .patching import PatchedModel

__all__ = ["kernel_shapes", "warm_up", "model_choices", "on_cuda"]


def kernel_shapes(patched: dict[str, PatchedModel], tokens: int) -> list:
    """One ``vidlora.kernels.ShapeCase`` per distinct (N, K, stored rank, dtype, bias, FP8
    mode) of the patched units, at ``tokens`` rows (x2 for a CFG batch is the caller's choice)."""
    from vidlora.kernels import ShapeCase

    cases = {}
    for pm in patched.values():
        for u in pm.units.values():
            case = ShapeCase(m=int(tokens), n=u.out_features, k=u.in_features, r=u.stack.stored_rank,
                             dtype=u.compute_dtype, bias=u.bias is not None, fp8=u.fp8_mode)  # fmt: skip
            cases[case] = None
    return list(cases)


def on_cuda(patched: dict[str, PatchedModel]) -> bool:
    return any(u.weight.is_cuda for pm in patched.values() for u in pm.units.values())


def warm_up(patched: dict[str, PatchedModel], tokens: int, device=None) -> list[dict]:
    """Measure the path of every shape class now (CUDA only); returns the choice records."""
    from vidlora.kernels import warm_up as kernels_warm_up

    if device is None:
        device = next(iter(patched.values())).model.device
    if torch.device(device).type != "cuda":
        raise VidloraError(f"warm_up measures GPU kernel paths; {device} has none (CPU runs the torch reference)")
    return kernels_warm_up(kernel_shapes(patched, tokens), device)


def model_choices(patched: dict[str, PatchedModel]) -> list[dict]:
    """The recorded choices (vidlora.kernels.path_choices) for this model's Linear shapes:
    empty until a CUDA forward (or warm_up) measured them, and on CPU models."""
    if not on_cuda(patched):
        return []
    from vidlora.kernels import path_choices

    shapes = {(u.out_features, u.in_features) for pm in patched.values() for u in pm.units.values()}
    return [c for c in path_choices() if (c.get("n"), c.get("k")) in shapes]
