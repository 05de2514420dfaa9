"""``LoRALinear``: one base GEMM plus the stacked low-rank deltas of every adapter on it.

A unit wraps either one ``nn.Linear`` or a fused group of sibling projections that read
the same input (Wan's self-attention q/k/v as one N = 3*dim GEMM; cross-attention k/v; the
I2V image k/v). Its forward is one call of the ``vidlora::lora_linear`` op:

    y = x W^T + b + ((x A^T) * c) B^T

with A [Rb, K], B [N, Rb] and c [Rb] every adapter's ranks side by side, held by the
unit's :class:`~vidlora.runtime.rank_stack.RankStack` (``unit.stack``).

A dense full-rank delta on a unit's weight (a ``diff``, or a LoHa whose exact LoRA form
would be larger than the weight) is kept as an optional dense side term ``x dW^T`` (one
extra GEMM): never folded into the base weight. A LoKr with two full factors is a
:class:`~vidlora.runtime.kron_term.KronTerm` side term (two small matmuls on a reshaped x);
every other LoHa / LoKr is ordinary ranks in the stack (their exact LoRA forms).

FP8 bases (``quantize_`` / ``adopt_fp8``): the weight becomes float8_e4m3fn [N, K] with a
per-output-channel fp32 ``weight_scale`` [N]; bias, stacks and the computation stay in the
compute dtype, and forward calls ``vidlora::lora_linear_fp8`` instead.

Not thread-safe: change adapters from one thread while no forward runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidlora.kernels import lora_linear
from vidlora.kernels.fp8_format import dequantize_weight, quantize_weight
from vidlora.kernels.fp8_ops import lora_linear_fp8_op

from vidlora.lora.factored import KronDelta

from .kron_term import KronTerm
from .rank_stack import Part, RankStack

__all__ = ["LoRALinear", "FusedAway"]


class FusedAway(nn.Module):
    """Placeholder left where a projection was folded into a fused unit.

    It holds no parameters (the weight lives once, in the fused unit) and is not None, so
    code that tests ``attn.add_k_proj is not None`` (Wan's I2V switch) still sees it.
    """

    def __init__(self, fused_name: str, start: int, stop: int):
        super().__init__()
        self.fused_name = fused_name
        self.start = start
        self.stop = stop

    def forward(self, *args, **kwargs):  # pragma: no cover - reached only by foreign code
        raise RuntimeError(
            f"this projection is fused into {self.fused_name}[{self.start}:{self.stop}] by vidlora; "
            "call the fused module, or vidlora's Adapters.detach() to restore it"
        )

    def extra_repr(self) -> str:
        return f"fused into {self.fused_name}[{self.start}:{self.stop}]"


class LoRALinear(nn.Module):
    """A Linear (or fused sibling group) whose forward adds every active adapter's delta.

    ``weight`` / ``bias`` are registered under the same names as an ``nn.Linear``'s, so
    ``state_dict`` keys of a single-Linear unit are unchanged by attach.
    """

    def __init__(
        self,
        weight: nn.Parameter,
        bias: nn.Parameter | None,
        parts: list[Part],
        name: str,
        compute_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.weight = weight
        self.bias = bias
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.parts = tuple(parts)
        self.unit_name = name
        self._compute_dtype = compute_dtype or weight.dtype
        self.fp8_mode: str | None = None  # None | "w8a16" | "w8a8"
        self.fp8_origin: str | None = None  # "quantized" (by attach) | "adopted" (loaded as FP8)
        self._kept_weight: torch.Tensor | None = None  # keep_original=True: the weight before FP8
        self._bias_storage_dtype = bias.dtype if bias is not None else None
        self.register_buffer("weight_scale", None)
        dev, dt = weight.device, self.compute_dtype
        self.register_buffer("lora_a", torch.zeros(0, self.in_features, device=dev, dtype=dt), persistent=False)
        self.register_buffer("lora_b", torch.zeros(self.out_features, 0, device=dev, dtype=dt), persistent=False)
        self.register_buffer("lora_scale", torch.zeros(0, device=dev, dtype=torch.float32), persistent=False)
        # Optional dense side term (LoHa/LoKr/diff on this weight); None when unused.
        self.register_buffer("dense_delta", None, persistent=False)
        self.kron_terms = nn.ModuleList()  # full-factor LoKr side terms, one per (adapter, part)
        self.stack = RankStack(self, self.parts)

    # ------------------------------------------------------------------ forward
    @property
    def compute_dtype(self) -> torch.dtype:
        return self._compute_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp8_mode is None:
            y = lora_linear(x, self.weight, self.bias, self.lora_a, self.lora_b, self.lora_scale)
        else:
            y = lora_linear_fp8_op(
                x, self.weight, self.weight_scale, self.bias, self.lora_a, self.lora_b, self.lora_scale,
                self.fp8_mode == "w8a8",
            )
        if self.dense_delta is not None:
            y = y + F.linear(x, self.dense_delta)
        for term in self.kron_terms:
            y = term(x, y)
        return y

    def part_index(self, path: str) -> int:
        for i, p in enumerate(self.parts):
            if p.path == path:
                return i
        raise KeyError(path)

    # ------------------------------------------------------------------ dense side term
    @torch.no_grad()
    def set_dense_delta(self, delta: torch.Tensor | None) -> None:
        """Set (or clear with None) the dense side term dW [N, K]: y += x dW^T."""
        if delta is None:
            self.dense_delta = None
            return
        # the stack's device, not the weight's: under sequential offload the weight sits on
        # the meta device between forwards while buffers stay on the execution device
        delta = delta.to(device=self.lora_a.device, dtype=self.compute_dtype)
        if self.dense_delta is not None and self.dense_delta.shape == delta.shape:
            self.dense_delta.copy_(delta)
        else:
            self.dense_delta = delta

    # ------------------------------------------------------------------ Kronecker side terms
    def add_kron(self, adapter: str, part_path: str, delta: KronDelta) -> None:
        """Add an adapter's full-factor LoKr on one part (inactive until set_kron_weight)."""
        part = self.parts[self.part_index(part_path)]
        term = KronTerm(adapter, part_path, delta, part.start, part.stop, self.lora_a.device, self.compute_dtype)
        self.kron_terms.append(term)

    def remove_kron(self, adapter: str) -> None:
        kept = [t for t in self.kron_terms if t.adapter != adapter]
        if len(kept) != len(self.kron_terms):
            self.kron_terms = nn.ModuleList(kept)

    def set_kron_weight(self, adapter: str, weight: float) -> None:
        for term in self.kron_terms:
            if term.adapter == adapter:
                term.set_weight(weight)

    def kron_nbytes(self, adapter: str) -> int:
        return sum(t.w1.numel() * t.w1.element_size() + t.w2.numel() * t.w2.element_size()
                   for t in self.kron_terms if t.adapter == adapter)  # fmt: skip

    # ------------------------------------------------------------------ FP8 base
    @torch.no_grad()
    def quantize_(self, mode: str, device: torch.device | str | None = None, keep_original: bool = False) -> None:
        """Store the weight in FP8 (per-output-channel scales), on ``device`` if given
        (the caller moves the small rest of the module, e.g. with ``model.to``).

        The high-precision data is released at once (the Parameter object, which the
        original Linear may share, is emptied; detach refills it), so quantizing layer
        by layer never holds two full copies.
        """
        if self.fp8_mode is not None:
            self.fp8_mode = mode
            return
        old = self.weight
        if keep_original:
            self._kept_weight = old.detach().to("cpu", copy=True)
        w8, scale = quantize_weight(old.data, device=device)
        old.data = torch.empty(0, dtype=old.dtype, device=old.device)
        self.weight = nn.Parameter(w8, requires_grad=False)
        self.weight_scale = scale
        self.fp8_mode, self.fp8_origin = mode, "quantized"

    @torch.no_grad()
    def adopt_fp8(self, mode: str, scale: torch.Tensor | None) -> None:
        """Use a weight that is already float8_e4m3fn (an FP8 checkpoint) as is: no round
        trip through bf16. ``scale``: its per-channel (or per-tensor) scale, 1 if None."""
        n = self.out_features
        if scale is None:
            scale = torch.ones(n, dtype=torch.float32, device=self.weight.device)
        scale = scale.to(device=self.weight.device, dtype=torch.float32).reshape(-1)
        if scale.numel() == 1:
            scale = scale.expand(n).clone()
        if scale.numel() != n:
            raise ValueError(f"{self.unit_name}: weight scale has {scale.numel()} entries, expected 1 or {n}")
        self.weight.requires_grad_(False)
        self.weight_scale = scale
        if self.bias is not None and self.bias.dtype != self.compute_dtype:
            # FP8-stored bias (layerwise casting stores every parameter): a compute-dtype
            # copy for the epilogue; the stored one stays with the original module
            self.bias = nn.Parameter(self.bias.data.to(self.compute_dtype), requires_grad=False)
        self.fp8_mode, self.fp8_origin = mode, "adopted"

    def base_weight(self) -> torch.Tensor:
        """The weight to give back at detach: the original (kept, or never quantized),
        the stored FP8 data of an adopted checkpoint, or the dequantized FP8 weight."""
        if self.fp8_origin != "quantized":
            return self.weight.data
        if self._kept_weight is not None:
            return self._kept_weight.to(self.weight.device)
        return dequantize_weight(self.weight.data, self.weight_scale, self.compute_dtype)

    def base_bias(self) -> torch.Tensor | None:
        """The bias in the dtype the original module stored it in."""
        if self.bias is None:
            return None
        return self.bias.data.to(self._bias_storage_dtype)

    def base_nbytes(self) -> int:
        """Bytes of the base weight as stored (FP8: 1 per element + the scales)."""
        n = self.weight.numel() * self.weight.element_size()
        if self.weight_scale is not None:
            n += self.weight_scale.numel() * 4
        return n

    # ------------------------------------------------------------------ display
    def extra_repr(self) -> str:
        parts = ", ".join(p.path.rsplit(".", 1)[-1] if not p.path.endswith("to_out.0") else "to_out.0" for p in self.parts)
        adapters = ", ".join(f"{s.name}(r{s.rank})" for s in self.stack.slots) or "none"
        text = (
            f"in={self.in_features}, out={self.out_features}, parts=[{parts}], "
            f"base={str(self.weight.dtype).replace('torch.', '')}{'/' + self.fp8_mode if self.fp8_mode else ''}, "
            f"rank={self.stack.used_rank}/{self.stack.stored_rank}, adapters=[{adapters}]"
        )
        if self.dense_delta is not None:
            text += ", dense_delta"
        if len(self.kron_terms):
            text += f", kron_terms={len(self.kron_terms)}"
        return text
