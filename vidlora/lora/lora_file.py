"""The canonical, in-memory form of a LoRA file.

Every key scheme (PEFT/diffusers, original Wan/ComfyUI, kohya/musubi, Tencent Hunyuan,
...) is translated once, at read time, into this form. Names are the diffusers module
paths of the target model (``blocks.3.attn1.to_q``), because the model vidlora patches is
a diffusers model. Hunyuan's fused qkv / linear1 are already split into diffusers' pieces.

Math (see DESIGN.md): for a module with base weight W [N, K]

    W_eff = W + strength * (scale * up @ down)          scale = alpha / rank, or 1

and every full-tensor delta is additive: ``param += strength * delta``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import torch

from vidlora.model import module_counts

__all__ = ["LowRank", "Variant", "LoRAFile"]


@dataclass
class LowRank:
    """One low-rank delta on one Linear: ``scale * up @ down``.

    down: A, shape [r, in_features].  up: B, shape [out_features, r].
    alpha: the alpha stored in the file (None when absent); for display only.
    scale: the multiplier the reader derived from the file's own rules (alpha / r;
        1.0 when alpha is missing or already baked into the tensors; alpha / sqrt(r)
        for rsLoRA metadata). Strength is NOT included.
    source_keys: the file keys this delta came from (for error messages).
    """

    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None
    scale: float
    source_keys: tuple[str, ...] = ()

    def __repr__(self) -> str:  # the tensors themselves are too long to print
        return (f"LowRank(rank={self.rank}, in={self.in_features}, out={self.out_features}, "
                f"alpha={self.alpha}, scale={self.scale:g}, dtype={str(self.down.dtype).replace('torch.', '')})")

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.down.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.up.shape[0])

    def delta_weight(self) -> torch.Tensor:
        """The dense delta ``scale * up @ down`` in fp32 (tests and references only)."""
        return self.scale * (self.up.float() @ self.down.float())


@dataclass
class Variant:
    """What a file says about the model it was trained for. Each field is None unless
    the file's own signals say so; ``evidence`` lists those signals in words."""

    task: str | None = None  # "t2v" | "i2v"
    version: str | None = None  # "2.1" | "2.2"
    expert: str | None = None  # "high" | "low" (Wan 2.2 A14B)
    evidence: list[str] = field(default_factory=list)


@dataclass
class LoRAFile:
    """A LoRA file in canonical form.

    modules: canonical module path -> LowRank.
    deltas: canonical *parameter* path -> full additive delta with the parameter's shape
        (``blocks.0.norm2.weight`` from a ``diff``; ``blocks.0.attn1.to_q.bias`` from a
        ``diff_b`` or ``lora_B.bias``; ``blocks.0.scale_shift_table`` from a ``diff_m``;
        ``patch_embedding.weight``; ...). Strength multiplies them; alpha never does.
        A LyCORIS LoHa / LoKr module's weight delta is a
        :class:`~vidlora.lora.factored.FactoredDelta`: tensor-like (``shape``, ``numel()``,
        ``delta @ x``, ``to_dense()``) but holding only the file's factors, its scale inside.
    experts: only for files that carry both Wan 2.2 A14B experts in one file (ai-toolkit
        ``transformer_1.`` / ``transformer_2.``): {"high": LoRAFile, "low": LoRAFile};
        the top-level modules/deltas are then empty.
    ignored: (key, reason) pairs the reader skipped on purpose (e.g. text-encoder keys);
        always reported, never silent.
    """

    path: str
    scheme: str  # e.g. "W2 (original Wan names, kohya lora_down/lora_up)"
    arch: str  # "wan" | "hunyuan-video"
    family: str  # "wan-1.3b" | "wan-5b" | "wan-14b" | "hunyuan-video" | "wan (width 24)" ...
    width: int  # hidden size the file targets
    variant: Variant = field(default_factory=Variant)
    modules: dict[str, LowRank] = field(default_factory=dict)
    deltas: dict[str, torch.Tensor] = field(default_factory=dict)
    experts: dict[str, "LoRAFile"] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    trigger_words: list[str] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    dtype: torch.dtype | None = None
    size_bytes: int = 0
    # other families (spec names) whose names read this file identically: it fits their models too
    alternatives: tuple[str, ...] = ()
    _sha256: str | None = field(default=None, repr=False, compare=False)

    @property
    def sha256(self) -> str | None:
        """sha256 of the file's bytes, computed on first use and kept: hashing costs about
        as much as reading the file, and an add() or a swap has no use for it."""
        if self._sha256 is None and os.path.isfile(self.path):
            digest = hashlib.sha256()
            with open(self.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    digest.update(chunk)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def __repr__(self) -> str:  # a summary: the tensors themselves are too long to print
        parts = f", experts={sorted(self.experts)}" if self.experts else ""
        return (f"LoRAFile({self.path!r}, scheme={self.scheme!r}, family={self.family!r}, rank={self.rank}, "
                f"alpha={self.alpha}, modules={len(self.modules)}, deltas={len(self.deltas)}{parts}, "
                f"trigger_words={self.trigger_words})")

    @property
    def name(self) -> str:
        """The file stem: the default adapter name."""
        base = os.path.basename(self.path)
        return base[: -len(".safetensors")] if base.endswith(".safetensors") else base

    @property
    def rank(self) -> int | list[int] | None:
        """An int when every module has the same rank, else the sorted distinct ranks."""
        ranks = sorted({m.rank for m in self._all_modules()})
        if not ranks:
            return None
        return ranks[0] if len(ranks) == 1 else ranks

    @property
    def alpha(self) -> float | list[float] | None:
        alphas = sorted({m.alpha for m in self._all_modules() if m.alpha is not None})
        if not alphas:
            return None
        return alphas[0] if len(alphas) == 1 else alphas

    @property
    def module_counts(self) -> dict[str, int]:
        """Low-rank modules per kind: self-attn, cross-attn, image cross-attn, ffn, other."""
        parts = list(self.experts.values()) if self.experts else [self]
        return module_counts(self.arch, [path for part in parts for path in part.modules])

    def _all_modules(self) -> list[LowRank]:
        if self.experts:
            return [m for part in self.experts.values() for m in part.modules.values()]
        return list(self.modules.values())
