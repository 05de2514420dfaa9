"""Argument checks of the ops ``vidlora::lora_linear`` and ``vidlora::lora_linear_fp8``.

One check per op, run once per call: the op (and its fake, meta implementation) calls it
and hands the dimensions to the backend it dispatches to; the Triton launchers check only
when called directly (tests, benchmarks). So a bad call fails the same way on CPU, on a
GPU and while ``torch.compile`` traces (where only shapes, dtypes and devices exist). Wrong shapes raise
``ValueError``, wrong dtypes ``TypeError``: these are programming errors of the caller
(vidlora's own layers build these tensors), not user input.
"""

from __future__ import annotations

import torch

from .fp8_format import FP8_DTYPE

__all__ = ["COMPUTE_DTYPES", "check_lora_linear_args", "check_lora_linear_fp8_args"]

# fp16/bf16 are the production dtypes (fp32 accumulation); fp32 is accepted because the
# tiny CPU test models are fp32.
COMPUTE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def check_lora_linear_args(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    lora_scale: torch.Tensor,
) -> tuple[int, int, int]:
    """Validate a ``lora_linear`` call and return (K, N, R).

    x [..., K]; weight [N, K]; bias [N] or None; lora_a [R, K]; lora_b [N, R];
    lora_scale [R] float32; x, weight, lora_a, lora_b, bias share one dtype of
    float16/bfloat16/float32; every tensor on x's device.
    """
    if x.dim() < 1:
        raise ValueError("lora_linear: x must have at least one dimension [..., K], got a scalar")
    if weight.dim() != 2:
        raise ValueError(f"lora_linear: weight must be [N, K], got {_shape(weight)}")
    n, k = weight.shape
    if x.shape[-1] != k:
        raise ValueError(
            f"lora_linear: x {_shape(x)} has {x.shape[-1]} features but weight {_shape(weight)} "
            f"expects K = {k}"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != n):
        raise ValueError(f"lora_linear: bias must be [{n}] (N of weight), got {_shape(bias)}")
    if lora_a.dim() != 2 or lora_a.shape[1] != k:
        raise ValueError(f"lora_linear: lora_a must be [R, {k}], got {_shape(lora_a)}")
    r = lora_a.shape[0]
    if lora_b.dim() != 2 or lora_b.shape[0] != n or lora_b.shape[1] != r:
        raise ValueError(
            f"lora_linear: lora_b must be [{n}, {r}] (N of weight, R of lora_a), "
            f"got {_shape(lora_b)}"
        )
    if lora_scale.dim() != 1 or lora_scale.shape[0] != r:
        raise ValueError(
            f"lora_linear: lora_scale must be [{r}] (R of lora_a), got {_shape(lora_scale)}"
        )
    if x.dtype not in COMPUTE_DTYPES:
        raise TypeError(
            f"lora_linear: x has dtype {x.dtype}; expected one of float16, bfloat16, float32"
        )
    named = {"weight": weight, "lora_a": lora_a, "lora_b": lora_b}
    if bias is not None:
        named["bias"] = bias
    for name, t in named.items():
        if t.dtype != x.dtype:
            raise TypeError(f"lora_linear: {name} has dtype {t.dtype} but x has {x.dtype}")
    if lora_scale.dtype != torch.float32:
        raise TypeError(f"lora_linear: lora_scale must be float32, got {lora_scale.dtype}")
    named["lora_scale"] = lora_scale
    for name, t in named.items():
        if t.device != x.device:
            raise ValueError(f"lora_linear: {name} is on {t.device} but x is on {x.device}")
    return int(k), int(n), int(r)


def check_lora_linear_fp8_args(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    lora_scale: torch.Tensor,
) -> tuple[int, int, int]:
    """Validate a ``lora_linear_fp8`` call and return (K, N, R): as
    :func:`check_lora_linear_args`, except that weight is float8_e4m3fn [N, K] with an fp32
    per-output-channel weight_scale [N]."""
    if weight.dtype != FP8_DTYPE or weight.dim() != 2:
        raise TypeError(f"lora_linear_fp8: weight must be float8_e4m3fn [N, K], got {weight.dtype} {_shape(weight)}")
    n, k = weight.shape
    if x.dim() < 1 or x.shape[-1] != k:
        raise ValueError(f"lora_linear_fp8: x {_shape(x)} must be [..., {k}] (K of weight)")
    if x.dtype not in COMPUTE_DTYPES:
        raise TypeError(f"lora_linear_fp8: x has dtype {x.dtype}; expected one of float16, bfloat16, float32")
    if weight_scale.dtype != torch.float32 or tuple(weight_scale.shape) != (n,):
        raise ValueError(
            f"lora_linear_fp8: weight_scale must be float32 [{n}], got {weight_scale.dtype} {_shape(weight_scale)}"
        )
    if bias is not None and (bias.dtype != x.dtype or tuple(bias.shape) != (n,)):
        raise ValueError(f"lora_linear_fp8: bias must be {x.dtype} [{n}], got {bias.dtype} {_shape(bias)}")
    r = lora_a.shape[0] if lora_a.dim() == 2 else -1
    if (lora_a.dtype != x.dtype or lora_b.dtype != x.dtype or tuple(lora_a.shape) != (r, k)
            or tuple(lora_b.shape) != (n, r)):  # fmt: skip
        raise ValueError(
            f"lora_linear_fp8: lora_a/lora_b must be {x.dtype} [R, {k}] / [{n}, R], got "
            f"{lora_a.dtype} {_shape(lora_a)} / {lora_b.dtype} {_shape(lora_b)}"
        )
    if lora_scale.dtype != torch.float32 or tuple(lora_scale.shape) != (r,):
        raise ValueError(f"lora_linear_fp8: lora_scale must be float32 [{r}], got {lora_scale.dtype} {_shape(lora_scale)}")
    named = {"weight": weight, "weight_scale": weight_scale, "lora_a": lora_a, "lora_b": lora_b,
             "lora_scale": lora_scale, "bias": bias}  # fmt: skip
    for name, t in named.items():
        if t is not None and t.device != x.device:
            raise ValueError(f"lora_linear_fp8: {name} is on {t.device} but x is on {x.device}")
    return int(k), int(n), int(r)
