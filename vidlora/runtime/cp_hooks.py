"""diffusers' context-parallel hooks stay on the module that runs.

diffusers' context parallelism splits and gathers the sequence with hooks on named modules:
``cp_input---<path>`` cuts a module's inputs (or outputs) into one piece per rank,
``cp_output---<path>`` all-gathers a module's output. A hook lives in the module *object*
(its ``_diffusers_hook`` registry, which also rewrites its ``forward``). vidlora swaps
Linears for units: had it swapped Wan's ``proj_out`` (a LoRA with a head key, added after
``context_parallel``) and left the gather hook on the detached Linear, every rank would
return only its share of the tokens. So every swap goes through :func:`carry_cp_hooks`:
the hooks move, in order, to the module put in its place, and back at detach.

A hooked module is never fused away (``has_cp_hooks`` keeps its siblings separate): a
part of a fused unit never runs its own forward, so its hooks would never fire.
"""

from __future__ import annotations

import inspect

from torch import nn

from vidlora.errors import VidloraError

__all__ = ["has_cp_hooks", "carry_cp_hooks"]

_PREFIXES = ("cp_input---", "cp_output---")


def _names(module: nn.Module) -> list[str]:
    registry = module.__dict__.get("_diffusers_hook")  # instance dict: no nn.Module lookup cost
    if registry is None:
        return []
    return [n for n in registry._hook_order if n.startswith(_PREFIXES)]


def has_cp_hooks(module: nn.Module) -> bool:
    """Whether diffusers' context parallelism hooked this module."""
    return bool(_names(module))


def carry_cp_hooks(old: nn.Module, new: nn.Module, path: str) -> None:
    """Move ``old``'s context-parallel hooks onto ``new`` (which replaces it at ``path``)."""
    names = _names(old)
    if not names:
        return
    registry = old._diffusers_hook
    params = set(inspect.signature(type(new).forward).parameters)
    for name in names:
        # a split hook finds inputs by their parameter name in the module's forward
        wanted = [k for k in getattr(registry.hooks[name], "metadata", {}) if isinstance(k, str)]
        missing = [k for k in wanted if k not in params]
        if missing:
            raise VidloraError(
                f"{path} carries diffusers' context-parallel hook {name}, which splits its input {missing[0]!r}; "
                f"{type(new).__name__}.forward has no such parameter, so the split cannot follow the swap. "
                "Split at the enclosing module instead (its block), where vidlora swaps nothing"
            )
    from diffusers.hooks import HookRegistry

    target = HookRegistry.check_if_exists_or_initialize(new)
    for name in names:
        hook = registry.hooks[name]
        registry.remove_hook(name, recurse=False)
        target.register_hook(hook, name)
