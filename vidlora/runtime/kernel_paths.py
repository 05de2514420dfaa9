"""The kernels' first-use path choice, seen from a patched model: the Linear shape classes
it uses, measuring them ahead of time, and the recorded choices that concern it."""

from __future__ import annotations

import torch

from vidlora.errors import VidloraError

from .patching import PatchedModel

__all__ = ["kernel_shapes", "warm_up", "model_choices", "on_cuda"]


def kernel_shapes(patched: dict[str, PatchedModel], tokens: int, context_tokens: int | None = None,
                  ranks: tuple[int, ...] | None = None) -> list:  # fmt: skip
    """One ``vidlora.kernels.ShapeCase`` per distinct (M, N, K, stored rank, dtype, bias, FP8
    mode) of the patched units. M is the row count each Linear really sees (the family
    spec's ``input_rows``): ``tokens`` video tokens (x2 for a CFG batch is the caller's
    choice), ``context_tokens`` for the text / image-embedding side (those units are left
    out when it is None), 1 for the per-sample modulation Linears. ``ranks``: instead of
    the stored ranks, one case per rank of an adapter on every Linear (0: no adapter; a
    fused unit stores its parts' ranks together, padded to 16)."""
    from vidlora.kernels import ShapeCase

    from .rank_stack import rank_bucket

    cases = {}
    for pm in patched.values():
        for u in pm.units.values():
            rows = pm.inv.spec.input_rows(u.parts[0].path)
            m = {"video": tokens, "context": context_tokens, "one": 1}[rows]
            if m is None:
                continue
            stored = [u.stack.stored_rank] if ranks is None else [rank_bucket(r * len(u.parts)) for r in ranks]
            for r in stored:
                case = ShapeCase(m=int(m), n=u.out_features, k=u.in_features, r=r, dtype=u.compute_dtype,
                                 bias=u.bias is not None, fp8=u.fp8_mode)  # fmt: skip
                cases[case] = None
    return list(cases)


def on_cuda(patched: dict[str, PatchedModel]) -> bool:
    return any(u.weight.is_cuda for pm in patched.values() for u in pm.units.values())


def warm_up(patched: dict[str, PatchedModel], tokens: int, device=None, context_tokens: int | None = None) -> list[dict]:
    """Measure the path of every shape class now (CUDA only); returns the choice records."""
    from vidlora.kernels import warm_up as kernels_warm_up

    if device is None:
        device = next(iter(patched.values())).model.device
    if torch.device(device).type != "cuda":
        raise VidloraError(f"warm_up measures GPU kernel paths; {device} has none (CPU runs the torch reference)")
    return kernels_warm_up(kernel_shapes(patched, tokens, context_tokens), device)


def model_choices(patched: dict[str, PatchedModel]) -> list[dict]:
    """The recorded choices (vidlora.kernels.path_choices) for this model's Linear shapes:
    empty until a CUDA forward (or warm_up) measured them, and on CPU models."""
    if not on_cuda(patched):
        return []
    from vidlora.kernels import path_choices

    shapes = {(u.out_features, u.in_features) for pm in patched.values() for u in pm.units.values()}
    return [c for c in path_choices() if (c.get("n"), c.get("k")) in shapes]
