"""Living with diffusers' and accelerate's CPU offloading.

The rule: ``attach`` first, offload after (the CLI does it in that order). Then

* model offload (``enable_model_cpu_offload``) moves the whole transformer with ``.to()``:
  the units' stack tensors are buffers and move with it;
* group offloading (``enable_group_offload`` / ``apply_group_offloading``) records the
  parameters and buffers of each group when it is set up and moves their ``.data``: the
  stack buffers keep their objects (only ``.data`` changes), so they are found;
* sequential offload (accelerate's ``cpu_offload``) keeps each parameter on the meta device
  between forwards and the real values in the hook's ``weights_map``: full-tensor deltas
  (norms, biases, modulation tables) are written there (:func:`storage_of`).

``attach`` after offloading is refused: swapping a hooked Linear for a unit would drop the
hook, and a group set up earlier would not know the fused weights.

One case needs care after offloading: group offloading with ``use_stream=True`` restores
each tensor from a pinned CPU copy it made at setup, so a stack that changes *shape*
afterwards would silently come back at its old shape. Under it, vidlora never shrinks a
stack and refuses an add that needs more rank rows than reserved (:func:`pinned_copies`).
"""

from __future__ import annotations

import torch
from torch import nn

from vidlora.errors import VidloraError

__all__ = ["refuse_offload_hooks", "storage_of", "pinned_copies", "group_offloaded"]


# Hooks live in the instance __dict__; reading it there skips nn.Module.__getattr__'s
# failed lookups (a whole-model scan per add() would otherwise cost ~1 ms per 1000 modules).
def _accelerate_hooks(module: nn.Module) -> list:
    hook = module.__dict__.get("_hf_hook")
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])


def _group_hook(module: nn.Module):
    registry = module.__dict__.get("_diffusers_hook")
    if registry is None:
        return None
    return registry.get_hook("group_offloading")


def _modules(model: nn.Module):
    """Every module under ``model`` once, without the path strings ``modules()`` builds:
    this scan runs on every add and remove."""
    todo, seen = [model], set()
    while todo:
        m = todo.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        yield m
        todo.extend(c for c in m._modules.values() if c is not None)


def refuse_offload_hooks(key: str, model: nn.Module) -> None:
    """Raise when offloading hooks sit inside ``model`` (below its top level)."""
    for name, m in model.named_modules():
        per_module = name and _accelerate_hooks(m)
        if per_module or _group_hook(m) is not None:
            kind = "group offloading" if _group_hook(m) is not None else "sequential CPU offload"
            raise VidloraError(
                f"{key} already has {kind} hooks (at {name or 'the top level'}); call vidlora.attach() "
                "before enabling offloading, or remove the hooks first (pipe.remove_all_hooks())"
            )


def storage_of(module: nn.Module, name: str) -> torch.Tensor:
    """The tensor that really holds ``module``'s parameter/buffer ``name``.

    Normally the parameter's own data. Under accelerate's sequential offload the
    parameter sits on the meta device between forwards and the values live in the hook's
    ``weights_map``; writes must go there to reach the next forward.
    """
    tensor = getattr(module, name)
    if tensor.device.type != "meta":
        return tensor.data
    for hook in _accelerate_hooks(module):
        weights = getattr(hook, "weights_map", None)
        if getattr(hook, "offload", False) and weights is not None and name in weights:
            return weights[name]
    return tensor.data  # a meta-device model: nothing to write, nothing lost


def pinned_copies(model: nn.Module) -> bool:
    """Whether group offloading with CUDA streams (pinned copies made at setup) is on."""
    for m in _modules(model):
        hook = _group_hook(m)
        if hook is not None and getattr(getattr(hook, "group", None), "stream", None) is not None:
            return True
    return False


def group_offloaded(model: nn.Module) -> bool:
    """Whether group offloading hooks sit in ``model`` (they move what they saw at setup)."""
    return any(_group_hook(m) is not None for m in _modules(model))
