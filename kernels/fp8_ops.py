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

from .backend import resolve_backend
from .fp8_reference import lora_linear_fp8_reference

__all__ = ["lora_linear_fp8", "lora_linear_fp8_op", "check_lora_linear_fp8_args"]

_COMPUTE = (torch.float16, torch.bfloat16, torch.float32)


def check_lora_linear_fp8_args(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale) -> tuple[int, int, int]:
    """Validate a call and return (K, N, R); same conventions as ``check_lora_linear_args``
    except that weight is float8_e4m3fn [N, K] with an fp32 weight_scale [N]."""
    if weight.dtype != torch.float8_e4m3fn or weight.dim() != 2:
        raise TypeError(f"lora_linear_fp8: weight must be float8_e4m3fn [N, K], got {weight.dtype} {list(weight.shape)}")
    n, k = weight.shape
    if x.dtype not in _COMPUTE:
        raise TypeError(f"lora_linear_fp8: x has dtype {x.dtype}; expected float16, bfloat16 or float32")
    if x.shape[-1] != k:
        raise ValueError(f"lora_linear_fp8: x has {x.shape[-1]} features, weight expects K = {k}")
    if weight_scale.dtype != torch.float32 or tuple(weight_scale.shape) != (n,):
        raise ValueError(f"lora_linear_fp8: weight_scale must be float32 [{n}], got {weight_scale.dtype} {list(weight_scale.shape)}")
    if bias is not None and (bias.dtype != x.dtype or tuple(bias.shape) != (n,)):
        raise ValueError(f"lora_linear_fp8: bias must be {x.dtype} [{n}], got {bias.dtype} {list(bias.shape)}")
    r = lora_a.shape[0]
    if lora_a.dtype != x.dtype or lora_b.dtype != x.dtype or tuple(lora_a.shape) != (r, k) or tuple(lora_b.shape) != (n, r):
        raise ValueError(
            f"lora_linear_fp8: lora_a/lora_b must be {x.dtype} [R, {k}] / [{n}, R], got "
            f"{lora_a.dtype} {list(lora_a.shape)} / {lora_b.dtype} {list(lora_b.shape)}"
        )
    if lora_scale.dtype != torch.float32 or tuple(lora_scale.shape) != (r,):
        raise ValueError(f"lora_linear_fp8: lora_scale must be float32 [{r}]")
    for name, t in (("weight", weight), ("weight_scale", weight_scale), ("lora_a", lora_a), ("lora_b", lora_b),
                    ("lora_scale", lora_scale), ("bias", bias)):
        if t is not None and t.device != x.device:
            raise ValueError(f"lora_linear_fp8: {name} is on {t.device} but x is on {x.device}")
    return int(k), int(n), int(r)


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
    check_lora_linear_fp8_args(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale)
    if resolve_backend(x.device) == "triton":
        from .fp8_gemm import lora_linear_fp8_triton

        return lora_linear_fp8_triton(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale, act_quant)
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
