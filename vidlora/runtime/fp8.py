"""attach's ``fp8=`` argument. The FP8 format itself (constants, weight quantization) is
the kernels' (``vidlora.kernels.fp8_format``).

The LoRA path never touches FP8: adapter tensors stay in the compute dtype (bf16 on GPU)
and the delta is added to the GEMM result, never merged into W8 (re-quantizing a merged
weight rounds most of a small delta away: see benchmarks/fp8_lora_error.py).
"""

from __future__ import annotations

from vidlora.errors import VidloraError
from vidlora.kernels.fp8_format import FP8_MODES

__all__ = ["normalize_fp8_mode"]


def normalize_fp8_mode(fp8) -> str | None:
    """attach's ``fp8`` argument -> None | "w8a16" | "w8a8"."""
    if fp8 is None or fp8 is False:
        return None
    if fp8 is True:
        return "w8a16"
    if isinstance(fp8, str) and fp8.lower() in FP8_MODES:
        return fp8.lower()
    raise VidloraError(f"fp8= must be False, True, 'w8a16' or 'w8a8'; got {fp8!r}")
