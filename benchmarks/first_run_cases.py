"""Which cases each phase of the first GPU run measures (GPU sizes, dry-run sizes)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Case", "correctness_cases", "timing_shapes", "make_inputs", "SWEEP_SHAPE"]

# (name, N, K): Wan 2.1 14B width 5120, fused q/k/v, FFN 13824; HunyuanVideo 3072.
_WAN = (("wan14b.proj", 5120, 5120), ("wan14b.qkv", 15360, 5120), ("wan14b.ffn_up", 13824, 5120),
        ("wan14b.ffn_down", 5120, 13824))  # fmt: skip
_HUNYUAN = (("hunyuan.proj", 3072, 3072), ("hunyuan.ffn_up", 12288, 3072))
_TOKENS = 32760  # Wan 480x832, 81 frames
SWEEP_SHAPE = ("wan14b.proj", _TOKENS, 5120, 5120)


@dataclass(frozen=True)
class Case:
    """One call: op ("lora_linear", "lora_linear_fp8.w8a16", "lora_linear_fp8.w8a8"), shape, layout."""

    id: str
    op: str
    m: int
    n: int
    k: int
    r: int
    dtype: str = "bfloat16"
    layout: str = "contiguous"  # "contiguous" | "strided" (every other row of a wider buffer) | "offset2" (2-byte offset)
    bias: bool = True


def correctness_cases(dry_run: bool, quick: bool) -> list[Case]:
    if dry_run:
        cases = [Case("c.small.r16", "lora_linear", 70, 48, 64, 16, "float16"),
                 Case("c.small.r0", "lora_linear", 33, 40, 64, 0, "bfloat16"),
                 Case("c.small.r48.strided", "lora_linear", 40, 40, 64, 48, "float16", "strided"),
                 Case("c.small.r4.offset2", "lora_linear", 24, 32, 64, 4, "float16", "offset2"),
                 Case("c.small.fp32", "lora_linear", 20, 24, 40, 16, "float32"),
                 Case("c.small.w8a16", "lora_linear_fp8.w8a16", 40, 32, 64, 16, "float16"),
                 Case("c.small.w8a8", "lora_linear_fp8.w8a8", 40, 32, 64, 16, "float16")]  # fmt: skip
        return cases[:3] + cases[5:] if quick else cases
    cases = []
    for name, n, k in _WAN + _HUNYUAN:
        cases.append(Case(f"c.{name}.r32", "lora_linear", _TOKENS, n, k, 32))
    cases += [Case("c.wan14b.qkv.r0", "lora_linear", _TOKENS, 15360, 5120, 0),
              Case("c.wan14b.qkv.m65520", "lora_linear", 65520, 15360, 5120, 32),
              Case("c.wan14b.proj.ragged", "lora_linear", _TOKENS + 1, 5120, 5120, 16),
              Case("c.wan14b.proj.strided", "lora_linear", 8192, 5120, 5120, 32, layout="strided"),
              Case("c.wan14b.proj.offset2", "lora_linear", 8192, 5120, 5120, 32, layout="offset2"),
              Case("c.k5121", "lora_linear", 4096, 5120, 5121, 32)]  # fmt: skip
    for r in (4, 16, 48, 128):
        cases.append(Case(f"c.wan14b.qkv.r{r}", "lora_linear", _TOKENS, 15360, 5120, r))
    cases += [Case("c.wan14b.proj.m256.r32", "lora_linear", 256, 5120, 5120, 32),
              Case("c.wan14b.proj.m64.r64", "lora_linear", 64, 5120, 5120, 64),
              Case("c.wan14b.proj.fp16", "lora_linear", _TOKENS, 5120, 5120, 32, "float16"),
              Case("c.wan14b.proj.fp32", "lora_linear", 4096, 5120, 5120, 32, "float32")]  # fmt: skip
    for name, n, k in _WAN:
        for op in ("lora_linear_fp8.w8a16", "lora_linear_fp8.w8a8"):
            cases.append(Case(f"c.{name}.{op.split('.')[-1]}", op, _TOKENS, n, k, 32))
    cases.append(Case("c.wan14b.proj.w8a16.m1024", "lora_linear_fp8.w8a16", 1024, 5120, 5120, 32))
    return cases[:8] if quick else cases


def timing_shapes(dry_run: bool, quick: bool) -> list[tuple[str, int, int, int]]:
    """(name, M, N, K) of the timing phase."""
    if dry_run:
        return [("small.proj", 64, 64, 64)]
    shapes = [(name, _TOKENS, n, k) for name, n, k in _WAN + _HUNYUAN]
    return shapes[:2] if quick else shapes


def make_inputs(case: Case, device: torch.device, seed: int = 0) -> tuple[str, tuple]:
    """The op's arguments, generated on ``device`` (no host copy at real sizes)."""
    dtype = getattr(torch, case.dtype)
    g = torch.Generator(device=device).manual_seed(seed)

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * scale).to(dt)

    if case.layout == "strided":
        x = rnd(2 * case.m, case.k + 8)[::2, : case.k]  # rows 2 apart, each a slice: not 16-byte strided
    elif case.layout == "offset2":
        x = rnd(case.m * case.k + 1)[1:].view(case.m, case.k)  # data pointer 2 bytes past alignment
    else:
        x = rnd(case.m, case.k)
    w = rnd(case.n, case.k, scale=case.k**-0.5, dt=torch.float32)
    bias = rnd(case.n) if case.bias else None
    a = rnd(case.r, case.k, scale=case.k**-0.5)
    b = rnd(case.n, case.r, scale=max(case.r, 1) ** -0.5)
    c = torch.rand(case.r, generator=g, device=device) * 0.5 + 0.5
    if case.op == "lora_linear":
        return case.op, (x, w.to(dtype), bias, a, b, c)
    from vidlora.kernels.fp8_format import quantize_weight

    w8, ws = quantize_weight(w)
    return case.op, (x, w8, ws, bias, a, b, c)
