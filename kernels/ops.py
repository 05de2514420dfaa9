"""The torch op ``torch.ops.vidlora.lora_linear``: one registered entry point for every device.

Registered with ``torch.library.custom_op`` + ``register_fake`` (opaque to torch.compile)
rather than ``triton_op`` + ``wrap_triton`` (traced into), because:
- the implementation is chosen at *run* time: the backend (``use_backend`` /
  ``VIDLORA_BACKEND``), the strategy and the tile config depend on the device and on M,
  and tuned configs are looked up per GPU. Traced into a graph, those choices would be
  frozen at compile time (switching backend would silently keep the old one);
- on CPU the op must run either the torch reference or the Triton interpreter, and a
  traced ``triton_op`` whose Triton branch runs under the interpreter fails inside
  torch.compile (fake tensors have no data pointer: notes/triton-without-gpu.md);
- the kernel is a whole GEMM with its epilogue already fused: there is nothing around it
  that Inductor could fuse into it. The cost is Python dispatch, ~20-30 us per call,
  against ~2.5 ms for one Wan 14B 5120x5120 projection at 32,760 tokens (< 1.5%), and
  zero inside CUDA graphs.
The fake implementation checks the arguments and returns an empty [..., N] tensor, so
``torch.compile(fullgraph=True)`` traces a model calling the op with no graph break, and
since lora_scale is a tensor, changing adapter strengths never recompiles.

Inference only: no autograd formula is registered; calling the op on tensors that
require grad works in forward, and backward raises.
"""

from __future__ import annotations

from typing import Optional

import torch

if __name__ != "vidlora.kernels.ops":
    # A second copy (imported as kernels.ops from a checkout's root) would re-register the
    # op bound to a second backend state: see vidlora/kernels/__init__.py.
    raise ImportError(f"import vidlora.kernels.ops, not {__name__} (this folder is vidlora.kernels)")

from .backend import get_backend, resolve_backend
from .checks import check_lora_linear_args
from .reference import lora_linear_reference

__all__ = ["lora_linear", "lora_linear_op"]


@torch.library.custom_op("vidlora::lora_linear", mutates_args=())
def lora_linear_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    lora_scale: torch.Tensor,
) -> torch.Tensor:
    """y = x W^T + b + ((x A^T) * c) B^T on the backend selected for x's device."""
    dims = check_lora_linear_args(x, weight, bias, lora_a, lora_b, lora_scale)
    if resolve_backend(x.device) == "triton":
        if x.device.type == "cuda":
            # The first-use choice (selection.py): the fastest correct path of this shape
            # class on this GPU, Triton or cuBLAS; only Triton when VIDLORA_BACKEND=triton.
            from .selection import run_chosen

            return run_chosen("lora_linear", (x, weight, bias, lora_a, lora_b, lora_scale),
                              forced=get_backend() == "triton")  # fmt: skip
        # Imported on first use: importing Triton costs ~0.5 s and is never needed on CPU.
        from .lora_gemm import lora_linear_triton

        return lora_linear_triton(x, weight, bias, lora_a, lora_b, lora_scale, dims=dims)
    return lora_linear_reference(x, weight, bias, lora_a, lora_b, lora_scale)


@lora_linear_op.register_fake
def _lora_linear_fake(x, weight, bias, lora_a, lora_b, lora_scale):
    _, n, _ = check_lora_linear_args(x, weight, bias, lora_a, lora_b, lora_scale)
    return x.new_empty((*x.shape[:-1], n))


def lora_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    lora_scale: torch.Tensor,
) -> torch.Tensor:
    """y = x W^T + b + ((x A^T) * c) B^T through ``torch.ops.vidlora.lora_linear``.

    Shapes and dtypes: see the package docstring. Inference only (no autograd formula).
    """
    return torch.ops.vidlora.lora_linear(x, weight, bias, lora_a, lora_b, lora_scale)
