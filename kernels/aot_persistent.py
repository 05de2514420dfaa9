"""Ahead-of-time compilation of the sm_90 persistent TMA kernels (persistent_gemm.py).

The same specialisation the launcher's JIT call builds on an H100 at a real shape: host
tensor descriptors for x, W (and A for the fused strategy) and y, a grid of 132 programs
(an H100 SXM's SM count), the heuristic tiles of ``persistent_config``. Used by aot.py
(``compile_variant``) and so by the kernel audit and the first GPU run's compile phase.
"""

from __future__ import annotations

import torch

from .persistent_gemm import persistent_config

__all__ = ["PERSISTENT_VARIANTS", "persistent_source"]

# variant -> (BASE, strategy, PDL, FP8_ACC): BASE 0 = 16-bit weights, 3 = W8A8 (fp8 x fp8).
PERSISTENT_VARIANTS = {
    "persistent_plain": (0, "plain", False, 0),
    "persistent_expand": (0, "shrink_expand", False, 0),
    "persistent_expand_pdl": (0, "shrink_expand", True, 0),
    "persistent_fused": (0, "fused", False, 0),
    "w8a8_persistent_plain": (3, "plain", False, 128),
    "w8a8_persistent_expand": (3, "shrink_expand", False, 128),
    "w8a8_persistent_expand_fastacc": (3, "shrink_expand", False, 0),
}
_SMS = 132
_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def _desc(dtype: str, block: list[int]) -> str:
    return f"tensordesc<{dtype}[{', '.join(map(str, block))}]>"


def persistent_source(variant: str, m: int, n: int, k: int, r: int, dtype: torch.dtype):
    """(args, constexprs, options, config) of one persistent variant, for aot._source."""
    base, strategy, pdl, fp8_acc = PERSISTENT_VARIANTS[variant]
    r = 0 if strategy == "plain" else r
    cfg = persistent_config(m, n, k, r, strategy, base)
    p = _NAMES[dtype]
    xdt = "fp8e4nv" if base == 3 else p
    lora = {"plain": 0, "shrink_expand": 1, "fused": 2}[strategy]
    tiles = -(-m // cfg.block_m) * -(-n // cfg.block_n)
    c_p = "*fp32" if r else f"*{p}"  # R = 0: the launcher passes y for A, B and c
    args = dict(
        x_desc=_desc(xdt, [cfg.block_m, cfg.block_k]), x_ptr=f"*{xdt}", w_desc=_desc(xdt, [cfg.block_n, cfg.block_k]),
        a_desc=_desc(p, [cfg.block_r, cfg.block_k]) if lora == 2 else None,
        y_desc=_desc(p, [cfg.block_m, cfg.block_n // cfg.epi_split]), y_ptr=f"*{p}", t_ptr=f"*{p}", b_ptr=f"*{p}",
        c_ptr=c_p, bias_ptr=f"*{p}", w_scale_ptr="*fp32" if base == 3 else c_p,
        x_scale_ptr="*fp32" if base == 3 else c_p,
        M=m, N=n, K=k, R=r, S=m, NB=1, stride_xb=m * k, stride_xs=k, stride_xk=1,
        stride_tm=r if lora == 1 else n, stride_tr=1, stride_bn=r if r else n, stride_br=1, stride_c=1,
        stride_bias=1, stride_ws=1, stride_ym=n,
    )  # fmt: skip
    constexprs = dict(
        LORA=lora, HAS_BIAS=True, HAS_W_SCALE=base == 3, BASE=base, X_TMA=True, X_3D=False, Y_TMA=True,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, BLOCK_R=cfg.block_r, GROUP_M=cfg.group_m,
        NUM_SMS=min(_SMS, tiles), EPI_SPLIT=cfg.epi_split, FLATTEN=cfg.flatten, UPCAST_DOT=False,
        PRECISION="tf32", FP8_ACC=fp8_acc, USE_PDL=pdl, EXPAND_FIRST=lora == 1 and base == 0 and not pdl,
    )  # fmt: skip
    options = {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
    if pdl:
        options["launch_pdl"] = True
    return args, constexprs, options, cfg
