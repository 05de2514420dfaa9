"""sm_90 persistent TMA GEMM (placeholder until the kernel lands)."""

from __future__ import annotations

__all__ = ["applies", "pdl_available", "lora_linear_persistent"]


def applies(x, weight, lora_a, lora_b, cap) -> bool:
    return False


def pdl_available(cap) -> bool:
    return False


def lora_linear_persistent(*args, **kwargs):
    raise NotImplementedError
