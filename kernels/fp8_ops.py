"""The torch op ``torch.ops.vidlora.lora_linear_fp8``: the FP8-base variant of lora_linear.

Same registration choice and reasons as ``ops.py`` (``custom_op`` + ``register_fake``:
the backend and kernel variant are picked at run time; graph-break free under
torch.compile). ``act_quant`` False is W8A16 (FP8 weights upcast in registers, MMA in
the compute dtype), True is W8A8 (x quantized per token to e4m3, FP8 MMA; sm_89+).
Inference only.
"""

from typing import Optional

import torch

if __name__ != "vidlora.kernels.fp8_ops":
    # A second copy (imported as kernels.fp8_ops from a checkout's root) would re-register
    # the op bound to a second backend state: see vidlora/kernels/__init__.py.
    raise ImportError(f"import vidlora.kernels.fp8_ops, not {__name__} (this folder is vidlora.kernels)")

from .backend import get_backend, resolve_backend
from .checks import check_lora_linear_fp8_args
from .fp8_reference import lora_linear_fp8_reference

__all__ = ["lora_linear_fp8", "lora_linear_fp8_op"]


@torch.library.custom_op("vidlora::lora_linear_fp8", mutates_args=())
def lora_linear_fp8_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: Optional[torch.Tensor],
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    lora_scale: torch.Tensor,
    act_quant: bool,
) -> torch.Tensor:
    """y = (x W8^T) * w_s + b + ((x A^T) * c) B^T (W8A8 when act_quant)."""
    dims = check_lora_linear_fp8_args(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale)
    if resolve_backend(x.device) == "triton":
        if x.device.type == "cuda":
            from .selection import run_chosen  # the first-use choice, as in ops.py

            op = "lora_linear_fp8.w8a8" if act_quant else "lora_linear_fp8.w8a16"
            return run_chosen(op, (x, weight, weight_scale, bias, lora_a, lora_b, lora_scale),
                              forced=get_backend() == "triton")  # fmt: skip
        from .fp8_gemm import lora_linear_fp8_triton

        return lora_linear_fp8_triton(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale, act_quant, dims=dims)
    return lora_linear_fp8_reference(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale, act_quant)


@lora_linear_fp8_op.register_fake
def _fake(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale, act_quant):
    _, n, _ = check_lora_linear_fp8_args(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale)
    return x.new_empty((*x.shape[:-1], n))


def lora_linear_fp8(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    lora_scale: torch.Tensor,
    act_quant: bool = False,
) -> torch.Tensor:
    """y = (x W8^T) * w_s + b + ((x A^T) * c) B^T through ``torch.ops.vidlora.lora_linear_fp8``.

    weight float8_e4m3fn [N, K] with fp32 per-output-channel scales weight_scale [N]; x,
    bias, lora_a, lora_b in one compute dtype (float16, bfloat16, float32); lora_scale fp32
    [R]. ``act_quant`` False: W8A16 (exact FP8 weights, MMA in x's dtype); True: W8A8 (x
    quantized per token to e4m3, fp8 MMA; sm_89+ on CUDA). The LoRA term always reads the
    unquantized x. Inference only (no autograd formula).
    """
    return torch.ops.vidlora.lora_linear_fp8(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale, act_quant)
