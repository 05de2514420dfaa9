"""Triton kernels for y = x W^T (* w_s) + b + ((x A^T) * c) B^T, and their launcher.

Shapes: x [M, K] seen as [M/S, S, K] (any strides: a slice of a larger tensor is read in
place), W [N, K], b [N], A [R, K], B [N, R], c [R] fp32, optional w_s [N] fp32, y [M, N] in
x's dtype. Every dot accumulates in fp32; T = (x A^T) * c is formed in fp32 and rounded
once to x's dtype before the expand MMA (tensor cores need both operands in one dtype;
the torch reference rounds at the same place).

Kernels
-------
``_lora_shrink_kernel``: T = (x A^T) * c, one program per 64 rows x (padded) rank; a
memory-bound stream over x (M*K*e bytes) whose MMA work is R/N of the base GEMM.

``_lora_gemm_kernel``: the base GEMM, with the LoRA term selected at compile time by
``LORA``: 0 = none (R = 0 costs exactly the base GEMM: no LoRA instruction is compiled
in), 1 = expand a precomputed T (strategy "shrink_expand"): for 16-bit bases the
accumulator *starts* from T B^T, so the T / B loads are issued with the tile, not after
the main loop; FP8 bases (whose scale multiplies x W^T only) expand in the epilogue.
2 = compute T in the same K loop from the x tile already loaded (strategy "fused").
heuristics.py has the rule and its FLOP/byte arithmetic. y is written exactly once,
after ``acc (* w_s) + T B^T + b``. This is the sm_80 / sm_89 kernel (and any shape the
persistent sm_90 kernel cannot take, persistent_gemm.py); the first-use choice
(selection.py) may still prefer cuBLAS on the user's GPU.

Design choices, with the reasons:
- Rows past M and columns past N are wrapped (``% M``, ``% N``) instead of masked in the K
  loop, so the steady-state loads carry no M/N mask; only the final store is masked. K is
  masked only when ``K % BLOCK_K != 0`` (``EVEN_K``): the real widths (3072, 5120, 13824,
  15360) are multiples of 64, so the GPU fast path has no masks at all.
- Row offsets are computed in int64 once per program: M*N reaches 1.0e9 elements at
  M = 65520 (CFG batch 2 at 480p) and N = 15360 (fused q/k/v), close to int32's 2.1e9.
- Program ids walk the output in groups of ``GROUP_M`` row tiles (8) so consecutive
  programs share W column tiles in L2 (Triton tutorial 03).
- ``_load_base_tile`` is the single step that reads the base weight tile, selected by the
  ``BASE`` constexpr: 0 = W in x's dtype; the FP8 bases (fp8_gemm.py launches them) 1 =
  fp8 tile upcast in registers (W8A16), 2 = the same bytes through a uint8 pointer with an
  exact integer conversion (W8A16 on sm_80, which refuses fp8 pointers), 3 = fp8 x fp8
  MMA on a pre-quantized x (W8A8: x_s [M] applied in the epilogue). The epilogue applies
  the per-output-channel fp32 scale w_s when ``HAS_W_SCALE``. Every mode but 0 is
  compiled only for FP8 calls: the 16-bit kernels are unchanged by them.
- fp32 inputs use ``input_precision`` "ieee" unless torch allows TF32 for fp32 matmuls
  (``torch.get_float32_matmul_precision() != "highest"``), matching torch's own matmul;
  their tiles are sized for 4-byte elements (heuristics.py).
- bf16 under the interpreter: ``UPCAST_DOT`` (tile_ops.py).
- Bias and per-channel scales are read through their own strides.

The SASS of every variant (tensor-core MMA kind, spills, registers, shared memory per
architecture) is audited ahead of time by ``python -m benchmarks.kernel_audit``; its
results live in benchmarks/README.md beside the runs that produced them.

Inference only: nothing here records autograd history.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents

from .checks import check_lora_linear_args
from .errors import BackendUnavailableError
from .launching import INTERPRETED, as_batched_rows, capability, launch, on_device, precision
from .tile_ops import _expand, _load_base_tile, _load_k_tile, _mma, _x_row_offsets
from .heuristics import (
    FUSED_MAX_RANK,
    STRATEGIES,
    GemmConfig,
    ShrinkConfig,
    choose_strategy,
    gemm_config,
    shrink_config,
)

__all__ = ["lora_linear_triton", "LaunchPlan", "plan_launch", "INTERPRETED"]


@triton.jit
def _lora_shrink_kernel(
    x_ptr, a_ptr, c_ptr, t_ptr,
    M, K, R, S,
    stride_xb, stride_xs, stride_xk,
    stride_ar, stride_ak,
    stride_c,
    stride_tm, stride_tr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
    EVEN_K: tl.constexpr, UPCAST_DOT: tl.constexpr, PRECISION: tl.constexpr,
    LAUNCH_DEPENDENTS: tl.constexpr = False,
):  # fmt: skip
    if LAUNCH_DEPENDENTS:
        # PDL: let the GEMM that reads T launch now (it waits for T with gdc_wait).
        gdc_launch_dependents()
    pid_m = tl.program_id(0)
    pid_r = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_k = tl.arange(0, BLOCK_K)

    x_ptrs = x_ptr + _x_row_offsets(offs_m, M, S, stride_xb, stride_xs)[:, None] + offs_k[None, :] * stride_xk
    # A^T tile [BLOCK_K, BLOCK_R]; ranks past R wrap (their T columns are never stored).
    a_rows = (offs_r % R).to(tl.int64) * stride_ar
    a_ptrs = a_ptr + a_rows[None, :] + offs_k[:, None] * stride_ak

    acc = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        xt = _load_k_tile(x_ptrs, offs_k[None, :] < k_left, EVEN_K)
        at = _load_k_tile(a_ptrs, offs_k[:, None] < k_left, EVEN_K)
        acc = _mma(xt, at, acc, UPCAST_DOT, PRECISION)
        x_ptrs += BLOCK_K * stride_xk
        a_ptrs += BLOCK_K * stride_ak

    c = tl.load(c_ptr + offs_r * stride_c, mask=offs_r < R, other=0.0)
    t = acc * c[None, :]
    t_ptrs = t_ptr + offs_m.to(tl.int64)[:, None] * stride_tm + offs_r[None, :] * stride_tr
    tl.store(t_ptrs, t.to(t_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_r[None, :] < R))


@triton.jit
def _lora_gemm_kernel(
    x_ptr, w_ptr, bias_ptr, w_scale_ptr, x_scale_ptr, t_ptr, a_ptr, b_ptr, c_ptr, y_ptr,
    M, N, K, R, S,
    stride_xb, stride_xs, stride_xk,
    stride_wn, stride_wk,
    stride_tm, stride_tr,
    stride_ar, stride_ak,
    stride_bn, stride_br,
    stride_c, stride_bias, stride_ws,
    stride_ym, stride_yn,
    LORA: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_W_SCALE: tl.constexpr, BASE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
    GROUP_M: tl.constexpr, EVEN_K: tl.constexpr, UPCAST_DOT: tl.constexpr, PRECISION: tl.constexpr,
    EXPAND_FIRST: tl.constexpr = True,
):  # fmt: skip
    # W8A8 reads the quantized x: the LoRA must see the unquantized x (precomputed T).
    tl.static_assert(BASE != 3 or LORA != 2, "the fused LoRA strategy cannot read an fp8 x")
    # Grouped program order: GROUP_M row tiles share each column tile of W while it is in L2.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (pid // num_pid_in_group) * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    offs_r = tl.arange(0, BLOCK_R)

    x_ptrs = x_ptr + _x_row_offsets(offs_m, M, S, stride_xb, stride_xs)[:, None] + offs_k[None, :] * stride_xk
    w_ptrs = w_ptr + (offs_n % N).to(tl.int64)[None, :] * stride_wn + offs_k[:, None] * stride_wk
    t_rows = (offs_m % M).to(tl.int64)[:, None] * stride_tm
    b_cols = (offs_n % N).to(tl.int64)[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if LORA == 1:
        if EXPAND_FIRST and not HAS_W_SCALE and BASE != 3:
            # The expand first (LoRAFusion style): its T / B loads start with the tile instead
            # of trailing the main loop, and the K loop accumulates onto T B^T. Scaled bases
            # (FP8) expand in the epilogue: the scale multiplies x W^T only. sm_80 too: there
            # mma.sync holds the accumulator in registers and expand-first at 128 x 256
            # spilled (20 LDL/STL at 254 registers; 0 with the epilogue expand).
            acc = _expand(acc, t_ptr, b_ptr, t_rows, b_cols, R, stride_tr, stride_br, offs_r, BLOCK_R,
                          UPCAST_DOT, PRECISION)  # fmt: skip
    if LORA == 2:
        a_ptrs = a_ptr + (offs_r % R).to(tl.int64)[None, :] * stride_ar + offs_k[:, None] * stride_ak
        acc_t = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)

    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        xt = _load_k_tile(x_ptrs, offs_k[None, :] < k_left, EVEN_K)
        wt = _load_base_tile(w_ptrs, offs_k[:, None] < k_left, xt, EVEN_K, BASE)
        acc = _mma(xt, wt, acc, UPCAST_DOT, PRECISION)
        if LORA == 2:
            at = _load_k_tile(a_ptrs, offs_k[:, None] < k_left, EVEN_K)
            acc_t = _mma(xt, at, acc_t, UPCAST_DOT, PRECISION)
            a_ptrs += BLOCK_K * stride_ak
        x_ptrs += BLOCK_K * stride_xk
        w_ptrs += BLOCK_K * stride_wk

    # Epilogue, all in fp32: (* w_s) (* x_s) (+ T B^T) + b, then one rounding and one store of y.
    if HAS_W_SCALE:
        w_scale = tl.load(w_scale_ptr + offs_n * stride_ws, mask=offs_n < N, other=0.0)
        acc = acc * w_scale[None, :]
    if BASE == 3:
        x_scale = tl.load(x_scale_ptr + offs_m % M)
        acc = acc * x_scale[:, None]
    if LORA == 1:
        if not EXPAND_FIRST or HAS_W_SCALE or BASE == 3:
            acc = _expand(acc, t_ptr, b_ptr, t_rows, b_cols, R, stride_tr, stride_br, offs_r, BLOCK_R,
                          UPCAST_DOT, PRECISION)  # fmt: skip
    if LORA == 2:
        c = tl.load(c_ptr + offs_r * stride_c, mask=offs_r < R, other=0.0)
        t = (acc_t * c[None, :]).to(y_ptr.dtype.element_ty)
        bt = tl.load(b_ptr + b_cols + offs_r[:, None] * stride_br, mask=(offs_r < R)[:, None], other=0.0)
        acc = _mma(t, bt, acc, UPCAST_DOT, PRECISION)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_n * stride_bias, mask=offs_n < N, other=0.0)
        acc += bias.to(tl.float32)[None, :]

    y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


def _expand_first_on(cap: tuple[int, int] | None) -> bool:
    """Whether the classic kernel starts its accumulator from T B^T (sm_89+, the interpreter)."""
    return cap is None or cap >= (8, 9)


# The GEMM kernel's LORA constexpr for each strategy.
LORA_MODES = {"plain": 0, "shrink_expand": 1, "fused": 2}



@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """The strategy and configs one call uses (returned by :func:`plan_launch`)."""

    strategy: str  # "plain" | "shrink_expand" | "fused"
    gemm: GemmConfig
    shrink: ShrinkConfig | None  # only for "shrink_expand"


def plan_launch(
    m: int,
    n: int,
    k: int,
    r: int,
    dtype: torch.dtype,
    device: torch.device,
    strategy: str | None = None,
    gemm: GemmConfig | None = None,
    shrink: ShrinkConfig | None = None,
) -> LaunchPlan:
    """Pick strategy and configs: explicit arguments, else tuned JSON, else the heuristic."""
    if strategy is None and gemm is None and shrink is None:
        return _auto_plan(m, n, k, r, dtype, device)
    return _plan(m, n, k, r, dtype, device, strategy, gemm, shrink)


@functools.lru_cache(maxsize=4096)
def _auto_plan(m: int, n: int, k: int, r: int, dtype: torch.dtype, device: torch.device) -> LaunchPlan:
    # Cached: a generation repeats a few dozen (M, N, K, R) keys thousands of times.
    return _plan(m, n, k, r, dtype, device, None, None, None)


def _plan(m, n, k, r, dtype, device, strategy, gemm, shrink) -> LaunchPlan:
    from .tuned_configs import tuned_plan  # local: reads JSON files only when a plan is needed

    cap = capability(device)
    elem = torch.empty((), dtype=dtype).element_size()
    if strategy is None:
        tuned = tuned_plan(device, m, n, k, r, dtype) if gemm is None and shrink is None else None
        if tuned is not None:
            return LaunchPlan(*tuned)
        strategy = choose_strategy(m, n, k, r, elem, cap)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if (strategy == "plain") != (r == 0):
        raise ValueError(f"strategy {strategy!r} does not apply to rank {r} ('plain' is for R = 0 only)")
    if strategy == "fused" and r > FUSED_MAX_RANK:
        raise ValueError(f"strategy 'fused' holds the whole rank in one tile: R <= {FUSED_MAX_RANK}, got {r}")
    gemm = gemm or gemm_config(m, n, k, r, cap, strategy, elem)
    if strategy == "fused" and gemm.block_r < r:
        raise ValueError(f"strategy 'fused' needs GemmConfig.block_r >= R = {r}, got {gemm.block_r}")
    if strategy == "shrink_expand":
        shrink = shrink or shrink_config(m, k, r, cap, elem)
    else:
        shrink = None
    return LaunchPlan(strategy, gemm, shrink)


def lora_linear_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    lora_scale: torch.Tensor,
    *,
    weight_scale: torch.Tensor | None = None,
    strategy: str | None = None,
    gemm: GemmConfig | None = None,
    shrink: ShrinkConfig | None = None,
    dims: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """y = x W^T (* weight_scale) + b + ((x A^T) * c) B^T with the Triton kernels.

    Arguments as ``vidlora.kernels.lora_linear``; ``weight_scale`` [N] fp32 multiplies each
    output channel of x W^T (the hook the FP8 base uses). ``strategy`` ("plain",
    "shrink_expand", "fused") and the configs override the automatic choice (tests,
    tuning). Never copies A or B; x is copied only if its leading dims cannot be viewed as
    [B, S] rows. ``dims``: (K, N, R) from the op's own argument check (the op checks once
    per call); None checks here.
    """
    k, n, r = dims if dims is not None else check_lora_linear_args(x, weight, bias, lora_a, lora_b, lora_scale)
    if weight_scale is not None and (
        weight_scale.shape != (n,) or weight_scale.dtype != torch.float32 or weight_scale.device != x.device
    ):
        raise ValueError(f"weight_scale must be a float32 [{n}] tensor on {x.device}, got "
                         f"{weight_scale.dtype} {list(weight_scale.shape)} on {weight_scale.device}")
    if x.device.type == "cpu" and not INTERPRETED:
        raise BackendUnavailableError(
            "the Triton kernels were imported without TRITON_INTERPRET=1, so they cannot run "
            "on CPU tensors; set it before vidlora's kernels are first imported"
        )
    x3, s = as_batched_rows(x)
    m = x3.shape[0] * x3.shape[1]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return y.view(*x.shape[:-1], n)
    plan = plan_launch(m, n, k, r, x.dtype, x.device, strategy, gemm, shrink)
    flags = dict(UPCAST_DOT=INTERPRETED and x.dtype == torch.bfloat16, PRECISION=precision(x.dtype))
    with on_device(x.device):
        if plan.strategy == "shrink_expand":
            t = torch.empty((m, r), dtype=x.dtype, device=x.device)
            _launch_shrink(plan.shrink, x3, lora_a, lora_scale, t, m, k, r, s, flags)
        else:
            t = y  # not read by the kernel (LORA != 1): any valid pointer will do
        if r == 0:
            # Empty tensors may carry a null data pointer, which the launcher refuses; the
            # LORA = 0 kernel never reads these arguments.
            lora_a, lora_b, lora_scale = y, y, y[0]
        _launch_gemm(plan.gemm, LORA_MODES[plan.strategy], x3, weight, bias, weight_scale, t, lora_a, lora_b,
                     lora_scale, y, m, n, k, r, s, flags, expand_first=_expand_first_on(capability(x.device)))  # fmt: skip
    return y.view(*x.shape[:-1], n)


def _launch_shrink(sh: ShrinkConfig, x3, lora_a, lora_scale, t, m, k, r, s, flags, launch_dependents=False) -> None:
    grid = (triton.cdiv(m, sh.block_m), triton.cdiv(r, sh.block_r))
    args = (
        x3, lora_a, lora_scale, t,
        m, k, r, s,
        x3.stride(0), x3.stride(1), x3.stride(2),
        lora_a.stride(0), lora_a.stride(1),
        lora_scale.stride(0),
        t.stride(0), t.stride(1),
    )  # fmt: skip
    kwargs = dict(BLOCK_M=sh.block_m, BLOCK_K=sh.block_k, BLOCK_R=sh.block_r, EVEN_K=k % sh.block_k == 0,
                  num_warps=sh.num_warps, num_stages=sh.num_stages, **flags)  # fmt: skip
    if launch_dependents:
        kwargs["LAUNCH_DEPENDENTS"] = True
    launch(_lora_shrink_kernel, grid, args, kwargs, x3.device)


def _launch_gemm(g: GemmConfig, lora_mode, x3, weight, bias, weight_scale, t, lora_a, lora_b, lora_scale, y,
                 m, n, k, r, s, flags, base: int = 0, x_scale=None, expand_first: bool = True) -> None:  # fmt: skip
    """One GEMM launch. ``base`` is the kernel's BASE mode (see ``_load_base_tile``); with
    BASE 3, ``x3`` holds the fp8 x and ``x_scale`` its per-row scales. Unused pointer
    arguments get a valid stand-in (never read: the constexpr flags compile them out).
    Bias and weight scales are read through their strides (a strided slice works)."""
    grid = (triton.cdiv(m, g.block_m) * triton.cdiv(n, g.block_n),)
    args = (
        x3, weight, bias if bias is not None else y, weight_scale if weight_scale is not None else lora_scale,
        x_scale if x_scale is not None else lora_scale, t, lora_a, lora_b, lora_scale, y,
        m, n, k, r, s,
        x3.stride(0), x3.stride(1), x3.stride(2),
        weight.stride(0), weight.stride(1),
        t.stride(0), t.stride(1),
        lora_a.stride(0), lora_a.stride(1),
        lora_b.stride(0), lora_b.stride(1),
        lora_scale.stride(0), bias.stride(0) if bias is not None else 1,
        weight_scale.stride(0) if weight_scale is not None else 1,
        y.stride(0), y.stride(1),
    )  # fmt: skip
    kwargs = dict(
        LORA=lora_mode, HAS_BIAS=bias is not None, HAS_W_SCALE=weight_scale is not None, BASE=base,
        BLOCK_M=g.block_m, BLOCK_N=g.block_n, BLOCK_K=g.block_k, BLOCK_R=g.block_r,
        GROUP_M=g.group_m, EVEN_K=k % g.block_k == 0, EXPAND_FIRST=expand_first,
        num_warps=g.num_warps, num_stages=g.num_stages, **flags,
    )  # fmt: skip
    launch(_lora_gemm_kernel, grid, args, kwargs, x3.device)
