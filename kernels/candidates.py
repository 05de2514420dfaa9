"""The candidate paths of each op on a device, for the first-use choice (selection.py).

``lora_linear``:
- ``triton.classic.<strategy>``: lora_gemm.py with its heuristic tiles (or a tuned config),
  first the strategy its cost model picks, then the other one that applies (fused only for
  R <= 64): the measurement decides between them on this GPU;
- ``triton.persistent.<strategy>`` (sm_90, and the interpreter): persistent_gemm.py, when
  its tensor descriptors can take the operands (else it is not offered); plus ``.pdl``
  (programmatic dependent launch after the shrink) for shrink+expand on sm_90;
- ``torch``: the reference, cuBLAS ``addmm`` plus the two low-rank matmuls (plain cuBLAS
  at R = 0: then the base path is never slower than ``F.linear``).

``lora_linear_fp8.w8a16``: ``triton.classic`` (weights upcast in registers),
``triton.dequant`` (W8 dequantized once per call into a reusable bf16 scratch, then the
16-bit kernel: wins at large M, where ~1% of the GEMM time pays for it), ``torch``.
``lora_linear_fp8.w8a8`` (sm_89+): ``triton.classic``, ``triton.persistent`` (sm_90), and
``torch`` (the exact reference: a correct, slow last resort).

The first Triton candidate of each list is the default (what runs unmeasured: during
CUDA-graph capture, under ``VIDLORA_PATH_CHOICE=off``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator

import torch

from .backend import triton_installed

__all__ = ["Candidate", "candidates_for"]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One way to compute an op: ``run(*op_args) -> y``; backend "triton" or "torch"."""

    name: str
    backend: str
    run: Callable[..., torch.Tensor]


def _triton_ready(device: torch.device) -> bool:
    if not triton_installed():
        return False
    if device.type == "cuda":
        return True
    from .launching import INTERPRETED

    return INTERPRETED


def _lora_linear(args: tuple) -> Iterator[Candidate]:
    x, weight, bias, lora_a, lora_b, lora_scale = args
    if _triton_ready(x.device):
        from .heuristics import FUSED_MAX_RANK
        from .launching import capability
        from .lora_gemm import lora_linear_triton, plan_launch

        m, (n, k), r = x.numel() // x.shape[-1], weight.shape, lora_a.shape[0]
        cap = capability(x.device)
        first = plan_launch(m, n, k, r, x.dtype, x.device).strategy
        strategies = [first] + [s for s in ("shrink_expand", "fused") if r and s != first and (s != "fused" or r <= FUSED_MAX_RANK)]
        from . import persistent_gemm as pg

        persistent = pg.applies(x, weight, lora_a, lora_b, cap)
        for strategy in strategies if persistent else ():
            yield Candidate(f"triton.persistent.{strategy}", "triton",
                            functools.partial(pg.lora_linear_persistent, strategy=strategy))  # fmt: skip
            if strategy == "shrink_expand" and pg.pdl_available(cap):
                yield Candidate(f"triton.persistent.{strategy}.pdl", "triton",
                                functools.partial(pg.lora_linear_persistent, strategy=strategy, pdl=True))  # fmt: skip
        for strategy in strategies:
            yield Candidate(f"triton.classic.{strategy}", "triton", functools.partial(lora_linear_triton, strategy=strategy))
    from .reference import lora_linear_reference

    yield Candidate("torch", "torch", lora_linear_reference)


def _lora_linear_fp8(args: tuple, act_quant: bool) -> Iterator[Candidate]:
    x = args[0]
    if _triton_ready(x.device):
        from .fp8_gemm import W8A8_MIN_CAPABILITY, lora_linear_fp8_triton
        from .launching import capability

        cap = capability(x.device)
        if act_quant:
            from .fp8_persistent import lora_linear_w8a8_persistent, w8a8_persistent_applies

            if w8a8_persistent_applies(x, args[1], cap):
                yield Candidate("triton.persistent", "triton", lora_linear_w8a8_persistent)
                if cap is not None:  # the interpreter sums exactly: the fast variant is the same there
                    yield Candidate("triton.persistent.fastacc", "triton",
                                    functools.partial(lora_linear_w8a8_persistent, fp8_acc=0))  # fmt: skip
        if not act_quant or cap is None or cap >= W8A8_MIN_CAPABILITY:
            yield Candidate("triton.classic", "triton", functools.partial(lora_linear_fp8_triton, act_quant=act_quant))
        if not act_quant:
            from .fp8_dequant import lora_linear_w8a16_dequant

            yield Candidate("triton.dequant", "triton", lora_linear_w8a16_dequant)
    from .fp8_reference import lora_linear_fp8_reference

    yield Candidate("torch", "torch", functools.partial(lora_linear_fp8_reference, act_quant=act_quant))


def candidates_for(op: str, args: tuple) -> list[Candidate]:
    """Every candidate of ``op`` for these arguments' device and shape (module doc)."""
    if op == "lora_linear":
        return list(_lora_linear(args))
    if op in ("lora_linear_fp8.w8a16", "lora_linear_fp8.w8a8"):
        return list(_lora_linear_fp8(args, op.endswith("w8a8")))
    raise ValueError(f"unknown op {op!r}")
