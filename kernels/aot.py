"""Ahead-of-time compilation of the LoRA kernels for real GPUs, on a machine without one.

``compile_variant`` builds the same specialisation Triton's JIT would build for a real
call (pointers 16-byte aligned, integer arguments equal to 1 turned into constants,
multiples of 16 marked divisible by 16) with the tile config the launcher would pick on
that architecture, and returns Triton's compiled kernel (``.asm["ptx"]``,
``.asm["cubin"]``, ``.metadata.shared``). The kernel audit (benchmarks/kernel_audit.py)
reads its SASS.

Must run in a process without ``TRITON_INTERPRET``: interpreted kernels cannot be compiled
(``'InterpretedFunction' object has no attribute 'cache_key'``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .heuristics import (
    GemmConfig,
    QuantConfig,
    ShrinkConfig,
    fp8_gemm_config,
    gemm_config,
    quant_config,
    shared_memory_limit,
    shrink_config,
)

__all__ = [
    "KERNEL_VARIANTS",
    "FP8_KERNEL_VARIANTS",
    "ARCHS",
    "FP8_ARCHS",
    "SHARED_MEMORY_LIMIT",
    "AuditShape",
    "REAL_SHAPES",
    "SMALL_M_SHAPES",
    "AUDIT_SHAPES",
    "compile_variant",
    "variant_archs",
]

# variant -> strategy: the four kernels a 16-bit call can launch.
KERNEL_VARIANTS = {
    "gemm_plain": "plain",  # R = 0: base GEMM only
    "shrink": "shrink_expand",  # T = (x A^T) * c
    "gemm_expand": "shrink_expand",  # base GEMM + T B^T epilogue
    "gemm_fused": "fused",  # base GEMM with T in the same K loop
}
# variant -> (FP8 mode, strategy): the kernels an FP8-base call can launch besides the
# 16-bit shrink (W8A16 shrink+expand uses "shrink" as is).
FP8_KERNEL_VARIANTS = {
    "w8a16_gemm_plain": ("w8a16", "plain"),  # fp8 W upcast in registers, 16-bit MMA
    "w8a16_gemm_expand": ("w8a16", "shrink_expand"),
    "w8a16_gemm_fused": ("w8a16", "fused"),
    "w8a8_quant_shrink": ("w8a8", "shrink_expand"),  # x8, x_s and T in one pass over x
    "w8a8_gemm_plain": ("w8a8", "plain"),  # fp8 x fp8 MMA
    "w8a8_gemm_expand": ("w8a8", "shrink_expand"),
}
ARCHS = (80, 89, 90)
# W8A8 needs fp8 MMA (sm_89+): on sm_80 the launcher raises BackendUnavailableError, so
# there is nothing to compile. W8A16 compiles everywhere (uint8 loads on sm_80).
FP8_ARCHS = {"w8a16": (80, 89, 90), "w8a8": (89, 90)}
# Per-block opt-in shared memory (bytes): A100 163 KB, Ada 99 KB, H100 227 KB.
SHARED_MEMORY_LIMIT = {arch: shared_memory_limit((arch // 10, arch % 10)) for arch in ARCHS}

_TRITON_DTYPE = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


@dataclass(frozen=True)
class AuditShape:
    """One real GEMM: M tokens, N outputs, K inputs, LoRA rank R."""

    name: str
    m: int
    n: int
    k: int
    r: int


# Wan 2.1 14B (width 5120, FFN 13824) and HunyuanVideo (width 3072, FFN 12288) at 480p x
# 81 frames: 32,760 tokens. Rank 32 (one adapter), 128 (four stacked) on fused q/k/v;
# M = 256 is where the launcher picks the fully fused kernel.
REAL_SHAPES = (
    AuditShape("wan14b.proj", 32760, 5120, 5120, 32),
    AuditShape("wan14b.qkv", 32760, 15360, 5120, 32),
    AuditShape("wan14b.qkv.r128", 32760, 15360, 5120, 128),
    AuditShape("wan14b.ffn_up", 32760, 13824, 5120, 32),
    AuditShape("wan14b.ffn_down", 32760, 5120, 13824, 32),
    AuditShape("hunyuan.proj", 32760, 3072, 3072, 32),
    AuditShape("hunyuan.ffn_up", 32760, 12288, 3072, 32),
    AuditShape("wan14b.proj.m256", 256, 5120, 5120, 32),
)
# M <= 64 (one warpgroup, 64-row tiles): a single image's tokens, the short text sequence.
# Rank 64 is where the fully fused kernel's second accumulator spilled on sm_80 (74 LDL/STL).
SMALL_M_SHAPES = (
    AuditShape("wan14b.proj.m64.r64", 64, 5120, 5120, 64),
    AuditShape("wan14b.proj.m16", 16, 5120, 5120, 16),
)
AUDIT_SHAPES = REAL_SHAPES + SMALL_M_SHAPES


def _int_arg(name: str, value: int, sig: dict, consts: dict, attrs: dict, index: int) -> None:
    # What the JIT does at run time: 1 becomes a constant, multiples of 16 get a hint.
    if value == 1:
        sig[name] = "constexpr"
        consts[name] = 1
        return
    sig[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
    if value % 16 == 0:
        attrs[(index,)] = [["tt.divisibility", 16]]


def _source(kernel, args: dict, constexprs: dict):
    from triton.compiler import ASTSource

    sig: dict = {}
    consts: dict = {}
    attrs: dict = {}
    for index, name in enumerate(kernel.arg_names):
        if name in constexprs:
            sig[name] = "constexpr"
            consts[name] = constexprs[name]
            continue
        value = args[name]
        if value is None:  # an unused descriptor: None is a constexpr
            sig[name] = "constexpr"
            consts[name] = None
        elif isinstance(value, str) and value.startswith("tensordesc"):
            sig[name] = value
        elif isinstance(value, str):  # a pointer type; torch allocations are 16-aligned
            sig[name] = value
            attrs[(index,)] = [["tt.divisibility", 16]]
        else:
            _int_arg(name, int(value), sig, consts, attrs, index)
    return ASTSource(fn=kernel, signature=sig, constexprs=consts, attrs=attrs)


def _plan(
    variant: str, arch: int, s: AuditShape, elem: int = 2
) -> tuple[GemmConfig, ShrinkConfig | QuantConfig]:
    """The GEMM config and the pre-pass config (shrink or quantize) the launcher would use."""
    cap = (arch // 10, arch % 10)
    if variant in FP8_KERNEL_VARIANTS:
        mode, strategy = FP8_KERNEL_VARIANTS[variant]
        r = 0 if strategy == "plain" else s.r
        gemm = fp8_gemm_config(s.m, s.n, s.k, r, cap, strategy, mode, elem)
        return gemm, quant_config(s.m, s.k, r, elem, cap)
    strategy = KERNEL_VARIANTS[variant]
    r = 0 if strategy == "plain" else s.r
    return gemm_config(s.m, s.n, s.k, r, cap, strategy, elem), shrink_config(s.m, s.k, r, cap, elem)


def variant_archs(variant: str) -> tuple[int, ...]:
    """The architectures a variant is compiled for (W8A8: sm_89 and sm_90 only; the
    persistent TMA kernels: sm_90 only)."""
    from .aot_persistent import PERSISTENT_VARIANTS

    if variant in PERSISTENT_VARIANTS:
        return (90,)
    if variant in FP8_KERNEL_VARIANTS:
        return FP8_ARCHS[FP8_KERNEL_VARIANTS[variant][0]]
    if variant in KERNEL_VARIANTS:
        return ARCHS
    raise ValueError(
        f"unknown kernel variant {variant!r}; expected one of {', '.join([*KERNEL_VARIANTS, *FP8_KERNEL_VARIANTS])}"
    )


def _gemm_args(variant: str, arch: int, m: int, n: int, k: int, r: int, p: str, g: GemmConfig, precision: str):
    """Argument types/values and constexprs of the GEMM kernel as the launcher passes them."""
    mode, strategy = FP8_KERNEL_VARIANTS.get(variant, (None, KERNEL_VARIANTS.get(variant)))
    lora = {"plain": 0, "shrink_expand": 1, "fused": 2}[strategy]
    if mode is None:
        base, x_p, w_p, w_scale_p = 0, p, p, "*fp32" if r else p
    elif mode == "w8a16":
        base, x_p, w_p, w_scale_p = (1, p, "*fp8e4nv", "*fp32") if arch >= 89 else (2, p, "*u8", "*fp32")
    else:
        base, x_p, w_p, w_scale_p = 3, "*fp8e4nv", "*fp8e4nv", "*fp32"
    # R = 0: the 16-bit launcher passes y for A, B and c, the FP8 one y for A and B and
    # w_s for c; the unused x_s is c (lora_gemm.py / fp8_gemm.py): their types and strides.
    c_p = "*fp32" if r or mode is not None else p
    ar, br = (k, r) if r else (n, n)
    args = dict(
        x_ptr=x_p, w_ptr=w_p, bias_ptr=p, w_scale_ptr=w_scale_p, x_scale_ptr="*fp32" if base == 3 else c_p,
        t_ptr=p, a_ptr=p, b_ptr=p, c_ptr=c_p, y_ptr=p, M=m, N=n, K=k, R=r, S=m,
        stride_xb=m * k, stride_xs=k, stride_xk=1, stride_wn=k, stride_wk=1,
        stride_tm=r if lora == 1 else n, stride_tr=1, stride_ar=ar, stride_ak=1,
        stride_bn=br, stride_br=1, stride_c=1, stride_bias=1, stride_ws=1, stride_ym=n, stride_yn=1,
    )  # fmt: skip
    constexprs = dict(
        LORA=lora, HAS_BIAS=True, HAS_W_SCALE=mode is not None, BASE=base,
        BLOCK_M=g.block_m, BLOCK_N=g.block_n, BLOCK_K=g.block_k, BLOCK_R=g.block_r,
        GROUP_M=g.group_m, EVEN_K=k % g.block_k == 0, UPCAST_DOT=False, PRECISION=precision,
        EXPAND_FIRST=arch >= 89,
    )  # fmt: skip
    return args, constexprs


def compile_variant(
    variant: str, arch: int, shape: AuditShape, dtype: torch.dtype = torch.bfloat16, gemm: GemmConfig | None = None
):
    """Compile one kernel variant for ``sm_<arch>`` at ``shape`` (contiguous x, bias on).

    fp32 compiles with IEEE dots (torch's default matmul precision, what the launcher uses
    unless TF32 is allowed). ``gemm`` overrides the launcher's GEMM config (probes)."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("compile_variant needs a process without TRITON_INTERPRET set")
    import triton
    from triton.backends.compiler import GPUTarget

    from .fp8_gemm import _quant_shrink_kernel
    from .lora_gemm import _lora_gemm_kernel, _lora_shrink_kernel

    if arch not in variant_archs(variant):
        raise ValueError(f"kernel variant {variant!r} is not built for sm_{arch} (only {variant_archs(variant)})")
    from .aot_persistent import PERSISTENT_VARIANTS, persistent_source

    if variant in PERSISTENT_VARIANTS:
        from .persistent_gemm import _persistent_lora_gemm_kernel

        args, constexprs, options, _ = persistent_source(variant, shape.m, shape.n, shape.k, shape.r, dtype)
        return triton.compile(_source(_persistent_lora_gemm_kernel, args, constexprs),
                              target=GPUTarget("cuda", arch, 32), options=options)  # fmt: skip
    elem = torch.empty((), dtype=dtype).element_size()
    planned, pre = _plan(variant, arch, shape, elem)
    gemm = gemm or planned
    m, n, k = shape.m, shape.n, shape.k
    strategy = FP8_KERNEL_VARIANTS[variant][1] if variant in FP8_KERNEL_VARIANTS else KERNEL_VARIANTS[variant]
    r = 0 if strategy == "plain" else shape.r
    p = "*" + _TRITON_DTYPE[dtype]
    precision = "ieee" if dtype == torch.float32 else "tf32"
    if variant == "shrink":
        kernel = _lora_shrink_kernel
        args = dict(
            x_ptr=p, a_ptr=p, c_ptr="*fp32", t_ptr=p, M=m, K=k, R=r, S=m,
            stride_xb=m * k, stride_xs=k, stride_xk=1, stride_ar=k, stride_ak=1,
            stride_c=1, stride_tm=r, stride_tr=1,
        )  # fmt: skip
        constexprs = dict(
            BLOCK_M=pre.block_m, BLOCK_K=pre.block_k, BLOCK_R=pre.block_r,
            EVEN_K=k % pre.block_k == 0, UPCAST_DOT=False, PRECISION=precision, LAUNCH_DEPENDENTS=False,
        )  # fmt: skip
        options = {"num_warps": pre.num_warps, "num_stages": pre.num_stages}
    elif variant == "w8a8_quant_shrink":
        kernel = _quant_shrink_kernel
        args = dict(
            x_ptr=p, a_ptr=p, c_ptr="*fp32", t_ptr=p, q_ptr="*fp8e4nv", s_ptr="*fp32", M=m, K=k, R=r, S=m,
            stride_xb=m * k, stride_xs=k, stride_xk=1, stride_ar=k, stride_ak=1,
            stride_c=1, stride_tm=r, stride_tr=1, stride_qm=k,
        )  # fmt: skip
        constexprs = dict(
            HAS_LORA=r > 0, BLOCK_M=pre.block_m, BLOCK_K=pre.block_k, BLOCK_R=pre.block_r,
            EVEN_K=k % pre.block_k == 0, UPCAST_DOT=False, PRECISION=precision, ROUND_E4M3=False,
        )  # fmt: skip
        options = {"num_warps": pre.num_warps, "num_stages": pre.num_stages}
    else:
        kernel = _lora_gemm_kernel
        args, constexprs = _gemm_args(variant, arch, m, n, k, r, p, gemm, precision)
        options = {"num_warps": gemm.num_warps, "num_stages": gemm.num_stages}
    src = _source(kernel, args, constexprs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
