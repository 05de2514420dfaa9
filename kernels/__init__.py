"""vidlora.kernels: the fused LoRA linear op, its Triton kernels and pure-torch references.

    y = lora_linear(x, weight, bias, lora_a, lora_b, lora_scale)
      = x W^T + b + ((x A^T) * c) B^T

x [..., K] (any leading shape, rows may be strided), weight [N, K], bias [N] or None,
lora_a [R, K], lora_b [N, R], lora_scale [R] float32 (R may be 0); one dtype of float16,
bfloat16, float32 for x, weight, lora_a, lora_b, bias; the result has x's dtype and shape
[..., N]. It runs ``torch.ops.vidlora.lora_linear`` (ops.py), which dispatches to the
Triton kernels (lora_gemm.py) or the torch reference (reference.py) as ``backend.py``
selects.

FP8 bases: ``lora_linear_fp8(x, weight_fp8, weight_scale, bias, lora_a, lora_b,
lora_scale, act_quant=False)`` runs ``torch.ops.vidlora.lora_linear_fp8`` (fp8_ops.py):
W8A16 or, with ``act_quant``, W8A8 (fp8_gemm.py; reference: fp8_reference.py; the storage
format and its constants: fp8_format.py).

On a CUDA device both ops pick their path at first use per shape class (selection.py:
every Triton kernel that applies and the cuBLAS path, checked on the device against an fp32
reference, the fastest correct one kept and cached on disk): ``warm_up([ShapeCase(m, n, k,
r), ...])`` measures ahead of time, ``path_choices()`` returns what was chosen with the
timings, ``kernel_cache_dir()`` where the cache lives.

Importing this package imports neither torch, Triton nor CUDA: the names below load on
first use (PEP 562), so ``vidlora.kernels.errors`` costs nothing.

This folder is only ever ``vidlora.kernels``. When the repository root is on sys.path
(``python -m pytest`` or a script run from a checkout), ``import kernels`` also finds it,
and transformers does exactly that while probing for Hugging Face's hub ``kernels``
package (``_is_package_available("kernels")`` imports it to read a version). Executed
under that second name, the package stays empty: registering ``vidlora::lora_linear``
again from a second copy would replace the op with one bound to a second copy of the
backend state, so ``use_backend`` would silently stop working (seen: a patched model under
``use_backend("triton")`` ran the torch reference). It cannot raise instead: that import
is not guarded, so ``import transformers`` would fail.
"""

from __future__ import annotations

import importlib
from typing import Any

if __name__ == "vidlora.kernels":
    __all__ = ["lora_linear", "lora_linear_reference", "lora_delta_reference", "lora_linear_fp8",
               "lora_linear_fp8_reference", "warm_up", "path_choices", "ShapeCase", "kernel_cache_dir"]  # fmt: skip
    _LAZY = {
        "lora_linear": ".ops",
        "lora_linear_reference": ".reference",
        "lora_delta_reference": ".reference",
        "lora_linear_fp8": ".fp8_ops",
        "lora_linear_fp8_reference": ".fp8_reference",
        "warm_up": ".selection",
        "path_choices": ".selection",
        "ShapeCase": ".selection",
        "kernel_cache_dir": ".path_cache",
    }

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'vidlora.kernels' has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(__all__)

else:  # imported as top-level "kernels" (see above): define nothing
    __all__ = []
