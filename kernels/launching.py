"""What every launcher shares: the device's facts, x as batched rows, and the checked launch.

``launch`` is the one way a kernel is started: on a CUDA device it compiles the
specialisation first (``JITFunction.warmup``, no launch) and compares the compiled
``metadata.shared`` with the device's opt-in limit per block, so a config whose shared
memory does not fit fails with :class:`KernelResourceError` naming the kernel, its
constexprs and both numbers, before anything runs (fp32 inputs at 2-byte tile sizes needed
288 KB on sm_90 against 227 KB). The check runs once per specialisation and device; later
calls cost one dict lookup.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import triton

from .errors import KernelResourceError
from .tile_ops import _mma

__all__ = ["INTERPRETED", "launch", "device_facts", "as_batched_rows", "precision", "capability", "on_device"]

# True when the kernels were wrapped by the interpreter (TRITON_INTERPRET was set when the
# kernel modules were imported): only then can they run on CPU tensors.
INTERPRETED = not isinstance(_mma, triton.runtime.JITFunction)

_CHECKED: set = set()


def capability(device: torch.device) -> tuple[int, int] | None:
    """The CUDA compute capability of ``device`` (None for CPU: the interpreter)."""
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_capability(device)


@functools.lru_cache(maxsize=16)
def device_facts(index: int) -> dict:
    """SM count, L2 bytes and opt-in shared memory per block of CUDA device ``index``."""
    props = torch.cuda.get_device_properties(index)
    return {
        "sm_count": props.multi_processor_count,
        "l2_bytes": getattr(props, "L2_cache_size", None),
        "smem_per_block": getattr(props, "shared_memory_per_block_optin", None),
        "name": props.name,
    }


def on_device(device: torch.device):
    """Triton launches on the current CUDA device: make it x's (cuda:1 tensors while
    cuda:0 is current would otherwise fault)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def as_batched_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """x [..., K] as a [B, S, K] view (no copy) and S; copies only if no such view exists."""
    k = x.shape[-1]
    if x.dim() == 1:
        return x.view(1, 1, k), 1
    if x.dim() == 2:
        return x.unsqueeze(0), x.shape[0]
    s = x.shape[-2]
    # The batch count spelled out (not -1): with S = 0 (an empty token set) -1 is ambiguous.
    b = math.prod(x.shape[:-2])
    try:
        return x.view(b, s, k), s  # leading dims collapse onto one stride
    except RuntimeError:
        # e.g. a 4-D x whose two leading dims cannot merge: one copy, documented cost.
        return x.reshape(b, s, k), s


def precision(dtype: torch.dtype) -> str:
    """``input_precision`` of the dots: IEEE fp32 unless torch itself allows TF32 for fp32
    matmuls (``torch.set_float32_matmul_precision("high")``), as torch's own matmul does;
    ignored by Triton for fp16/bf16 operands. Never a silent TF32."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def _signature(args: tuple) -> tuple:
    return tuple(str(a.dtype) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args)


def launch(kernel, grid, args: tuple, kwargs: dict, device: torch.device) -> None:
    """``kernel[grid](*args, **kwargs)``, after the shared-memory check (module doc)."""
    if device.type == "cuda" and not INTERPRETED:
        key = (getattr(kernel, "fn", kernel).__name__, device.index,
               tuple(sorted(kwargs.items())), _signature(args))  # fmt: skip
        if key not in _CHECKED:
            compiled = kernel.warmup(*args, grid=grid, **kwargs)
            index = device.index if device.index is not None else torch.cuda.current_device()
            limit = device_facts(index)["smem_per_block"]
            shared = int(getattr(compiled.metadata, "shared", 0))
            if limit is not None and shared > limit:
                consts = {k: v for k, v in kwargs.items() if k.isupper() or k.startswith("num_")}
                raise KernelResourceError(
                    f"kernel {key[0]} with {consts} needs {shared} bytes of shared memory per block; "
                    f"{device_facts(index)['name']} allows {limit}"
                )
            _CHECKED.add(key)
    kernel[grid](*args, **kwargs)
