"""Small checks on a file's tensors, shared by the LoRA and LyCORIS assemblers; each
raises one precise :class:`LoRAFormatError` naming the file and the key."""

from __future__ import annotations

import torch

from vidlora.errors import LoRAFormatError

__all__ = ["MAX_DENSE", "alpha_value", "need_2d", "check_dense"]

# Largest delta a file's factors may stand for: 2**28 elements (1 GiB in fp32). The largest
# real target, a Wan 14B FFN weight, is 13824 x 5120 = 70.8 M; factors that multiply out to
# more are malformed (or hostile), not a LoRA. Checked on shapes only: nothing is allocated.
MAX_DENSE = 1 << 28


def check_dense(path: str, module: str, what: str, shape) -> None:
    n = 1
    for s in shape:
        n *= int(s)
    if n > MAX_DENSE:
        raise LoRAFormatError(
            f"{path}: {what} {module!r} multiplies out to shape {tuple(int(s) for s in shape)} ({n} elements); "
            f"no Wan/HunyuanVideo weight is larger than {MAX_DENSE}"
        )


def alpha_value(path: str, key: str, t: torch.Tensor) -> float:
    if t.numel() != 1:
        raise LoRAFormatError(f"{path}: alpha {key!r} has shape {tuple(t.shape)}; expected a single number")
    return float(t.reshape(()).item())


def need_2d(path: str, key: str, t: torch.Tensor) -> None:
    if t.ndim != 2:
        raise LoRAFormatError(f"{path}: {key!r} has shape {tuple(t.shape)}; expected a matrix")
