"""Triton kernels and launcher for the FP8-base LoRA linear (``vidlora::lora_linear_fp8``).

    W8A16:  y = (x W8^T) * w_s + b + ((x A^T) * c) B^T
    W8A8:   y = (q(x) W8^T) * x_s w_s^T + b + ((x A^T) * c) B^T

W8 [N, K] float8_e4m3fn with per-output-channel fp32 scales w_s [N]; q(x) is x quantized
per token (row) to e4m3 with x_s = amax(|x_row|) / 448 (``fp8_reference.py`` defines both
and is the test oracle). The LoRA term always reads the unquantized x, in x's dtype; the
adapter delta is never quantized.

W8A16 (any GPU the kernels run on)
----------------------------------
The GEMM of ``lora_gemm.py`` with its base tile step replaced (``_load_base_tile``):
sm_89 / sm_90 load the tile through an ``fp8e4nv`` pointer and upcast it in registers
(BASE 1); the MMA runs in x's dtype (HGMMA on sm_90 after the upcast), ``w_s`` in the
epilogue, LoRA expand and bias as for 16-bit weights, with both LoRA strategies
(shrink + fused expand, fully fused). sm_80 refuses ``fp8e4nv`` pointers ("type fp8e4nv
not supported in this architecture"), so there the same bytes are read through a uint8
view of W8 (no copy) and converted by integer ops (BASE 2, ``_e4m3_bytes_to``): exact for
all 256 byte patterns (subnormals, both zeros, NaN), not a fallback to torch. Extra work on
sm_80: ~8 integer/convert instructions per weight element per row tile (BLOCK_M = 128 rows
of MMA reuse each), issued beside the MMAs; the registers they take made 64-wide K steps
spill there, so sm_80 runs 32-wide ones (heuristics.py; audited in benchmarks/README.md).

W8A8 (sm_89 / sm_90 only)
-------------------------
1. ``_quant_shrink_kernel``: one pass over x per block of rows computes amax per row and
   T = (x A^T) * c (unquantized x, 16-bit MMA, fp32 accumulation, rounded once to x's
   dtype), then re-reads the block (from L2: persistent grid and reversed K order,
   heuristics.py has the footprint numbers) to write x8 = e4m3(x * (1 / x_s)) and x_s.
   x is read from HBM once. T is skipped at R = 0; above R = 128 (``QUANT_MAX_RANK``) T comes
   from the shrink kernel of ``lora_gemm.py`` instead (one more read of x).
2. The GEMM with BASE 3: fp8 x fp8 ``tl.dot`` (QGMMA on sm_90, QMMA on sm_89; the audit
   checks the SASS), fp32 accumulation, epilogue acc * w_s[n] * x_s[m] + T B^T (16-bit
   MMA) + b, one rounding, one store.
sm_80 has no fp8 MMA: W8A8 raises BackendUnavailableError naming sm_89 (never a silent
switch to W8A16 or to torch). Workspace: x8 (M*K bytes) and x_s (4*M bytes) per call.

Quantization details, chosen so the kernel and the reference give the same bytes:
x_s = max(amax / 448, 1e-12) with IEEE division (``div_rn``), the row multiplied by the
IEEE reciprocal 1 / x_s, clamped to +-448, rounded to nearest-even e4m3 (the hardware
``cvt.rn.satfinite.e4m3x2.f32``). Interpreter trap (seen with triton 3.9.0): its fp32 ->
e4m3 cast truncates and mishandles mantissa carries (31.6 -> 16 instead of 32: 2956 of
101k random values wrong), so ``ROUND_E4M3`` (set only when interpreting) first rounds
the value onto the e4m3 grid in fp32 arithmetic, after which the interpreter's cast is
exact (checked for all 254 finite values). On a GPU the flag is off and the kernel is
unchanged. The interpreter computes fp8 ``tl.dot`` exactly (operands widened, fp32 sums).

Inference only: nothing here records autograd history.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import triton
import triton.language as tl

from .checks import check_lora_linear_fp8_args
from .errors import BackendUnavailableError
from .fp8_format import E4M3_MAX, FP8_DTYPE, FP8_MODES, MIN_SCALE
from .heuristics import (
    QUANT_MAX_RANK,
    GemmConfig,
    QuantConfig,
    ShrinkConfig,
    fp8_gemm_config,
    fp8_strategy,
    quant_config,
    shrink_config,
)
from .launching import INTERPRETED, as_batched_rows, device_facts, launch, on_device, precision
from .launching import capability as _device_capability
from .lora_gemm import FUSED_MAX_RANK, LORA_MODES, _launch_gemm, _launch_shrink
from .tile_ops import _load_k_tile, _max_nan, _mma, _x_row_offsets

__all__ = [
    "lora_linear_fp8_triton",
    "quantize_shrink_triton",
    "Fp8LaunchPlan",
    "plan_fp8_launch",
    "fp8_weight_load",
    "W8A8_MIN_CAPABILITY",
    "FP8_POINTER_MIN_CAPABILITY",
]

# fp8 tensor-core MMA (QMMA) and fp8e4nv pointers exist from sm_89 (Ada) on.
W8A8_MIN_CAPABILITY = (8, 9)
FP8_POINTER_MIN_CAPABILITY = (8, 9)
# Read inside the kernels, hence tl.constexpr (Triton refuses plain globals there).
_E4M3_MAX = tl.constexpr(E4M3_MAX)
_MIN_SCALE = tl.constexpr(MIN_SCALE)  # an all-zero row gets the floor scale, q = 0


@triton.jit
def _round_to_e4m3_grid(v):
    """fp32 v (|v| <= 448) rounded to nearest-even on the e4m3 grid, in fp32 (interpreter only).

    Normal e4m3 (|v| >= 2^-6) keeps 3 of fp32's 23 mantissa bits: add 0x7FFFF plus the
    lowest kept bit, clear the 20 dropped bits (a carry into the exponent is correct).
    Subnormal e4m3 (|v| < 2^-6) are multiples of 2^-9: adding 24576 = 1.5 * 2^14 puts
    |v| in a binade whose fp32 spacing is 2^-9, so fp32's own rounding does it. The sign
    is put back last, so -0.001 becomes -0.0 as in torch.
    """
    bits = v.to(tl.int32, bitcast=True)
    sign = bits & -2147483648  # 0x80000000
    mag = tl.abs(v)
    mb = mag.to(tl.int32, bitcast=True)
    normal = (mb + 0x7FFFF + ((mb >> 20) & 1)) & -1048576  # ~0xFFFFF
    sub = ((mag + 24576.0) - 24576.0).to(tl.int32, bitcast=True)
    return (tl.where(mag < 0.015625, sub, normal) | sign).to(tl.float32, bitcast=True)


@triton.jit
def _quant_shrink_kernel(
    x_ptr, a_ptr, c_ptr, t_ptr, q_ptr, s_ptr,
    M, K, R, S,
    stride_xb, stride_xs, stride_xk,
    stride_ar, stride_ak,
    stride_c,
    stride_tm, stride_tr,
    stride_qm,
    HAS_LORA: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
    EVEN_K: tl.constexpr, UPCAST_DOT: tl.constexpr, PRECISION: tl.constexpr, ROUND_E4M3: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    num_programs = tl.num_programs(0)
    offs_k = tl.arange(0, BLOCK_K)
    offs_r = tl.arange(0, BLOCK_R)
    num_k = tl.cdiv(K, BLOCK_K)
    # Persistent grid: each program walks its row blocks one at a time, so only
    # num_programs blocks are between their two reads at any moment (heuristics.py).
    for blk in range(pid, tl.cdiv(M, BLOCK_M), num_programs):
        offs_m = blk * BLOCK_M + tl.arange(0, BLOCK_M)
        x_rows = _x_row_offsets(offs_m, M, S, stride_xb, stride_xs)
        x_ptrs = x_ptr + x_rows[:, None] + offs_k[None, :] * stride_xk
        amax = tl.zeros((BLOCK_M,), dtype=tl.float32)
        if HAS_LORA:
            a_ptrs = a_ptr + (offs_r % R).to(tl.int64)[None, :] * stride_ar + offs_k[:, None] * stride_ak
            acc = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)
        # Read 1 (HBM): amax per row, and T from the unquantized x.
        for k in range(0, num_k):
            k_left = K - k * BLOCK_K
            xt = _load_k_tile(x_ptrs, offs_k[None, :] < k_left, EVEN_K)
            # NaN-propagating max (torch.amax keeps NaN; tl.max's maxnum would drop it).
            amax = tl.maximum(amax, _max_nan(tl.abs(xt).to(tl.float32), 1), propagate_nan=tl.PropagateNan.ALL)
            if HAS_LORA:
                at = _load_k_tile(a_ptrs, offs_k[:, None] < k_left, EVEN_K)
                acc = _mma(xt, at, acc, UPCAST_DOT, PRECISION)
                a_ptrs += BLOCK_K * stride_ak
            x_ptrs += BLOCK_K * stride_xk

        row_ok = offs_m < M
        # NaN stays NaN through the floor and the clamp below, as in torch (clamp_min / clamp_).
        scale = tl.maximum(tl.math.div_rn(amax, _E4M3_MAX), _MIN_SCALE, propagate_nan=tl.PropagateNan.ALL)
        inv = tl.math.div_rn(tl.full((BLOCK_M,), 1.0, tl.float32), scale)
        tl.store(s_ptr + offs_m, scale, mask=row_ok)
        if HAS_LORA:
            c = tl.load(c_ptr + offs_r * stride_c, mask=offs_r < R, other=0.0)
            t = acc * c[None, :]
            t_ptrs = t_ptr + offs_m.to(tl.int64)[:, None] * stride_tm + offs_r[None, :] * stride_tr
            tl.store(t_ptrs, t.to(t_ptr.dtype.element_ty), mask=row_ok[:, None] & (offs_r[None, :] < R))

        # Read 2 (L2): K backwards, so the tiles read last above come back first.
        q_rows = offs_m.to(tl.int64)[:, None] * stride_qm
        for kk in range(0, num_k):
            k0 = (num_k - 1 - kk) * BLOCK_K
            k_ok = (k0 + offs_k)[None, :] < K
            xt = _load_k_tile(x_ptr + x_rows[:, None] + (k0 + offs_k)[None, :] * stride_xk, k_ok, EVEN_K)
            v = tl.minimum(tl.maximum(xt.to(tl.float32) * inv[:, None], -_E4M3_MAX, propagate_nan=tl.PropagateNan.ALL),
                           _E4M3_MAX, propagate_nan=tl.PropagateNan.ALL)  # fmt: skip
            q = v.to(q_ptr.dtype.element_ty)
            if ROUND_E4M3:
                # The interpreter's cast truncates (module doc) and turns NaN into 384:
                # round onto the grid first, and write NaN as 0x7F as cvt.rn.satfinite does.
                q = _round_to_e4m3_grid(v).to(q_ptr.dtype.element_ty)
                q = tl.where(v != v, tl.full(q.shape, 0x7F, tl.uint8), q.to(tl.uint8, bitcast=True))
                q = q.to(q_ptr.dtype.element_ty, bitcast=True)
            tl.store(q_ptr + q_rows + (k0 + offs_k)[None, :], q, mask=row_ok[:, None] & k_ok)


@dataclasses.dataclass(frozen=True)
class Fp8LaunchPlan:
    """What one FP8 call launches (returned by :func:`plan_fp8_launch`).

    ``mode``: "w8a16" | "w8a8". ``strategy``: "plain" | "shrink_expand" | "fused" (as for
    16-bit weights; W8A8 never "fused"). ``weight_load``: "fp8" (fp8e4nv pointer, sm_89+)
    or "bytes" (uint8 view + integer conversion, sm_80); W8A8 always "fp8". ``shrink``:
    the separate shrink kernel's tiles, used by W8A16 shrink+expand and by W8A8 above
    R = 128. ``quant``: the W8A8 quantize pass.
    """

    mode: str
    strategy: str
    weight_load: str
    gemm: GemmConfig
    shrink: ShrinkConfig | None
    quant: QuantConfig | None


def fp8_weight_load(capability: tuple[int, int] | None) -> str:
    """How the W8A16 GEMM reads W8: "fp8" pointers on sm_89+ and in the interpreter, "bytes" below."""
    if capability is not None and capability < FP8_POINTER_MIN_CAPABILITY:
        return "bytes"
    return "fp8"


def _require_w8a8(capability: tuple[int, int] | None, device: torch.device | None) -> None:
    if capability is not None and capability < W8A8_MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device) if device is not None and device.type == "cuda" else "this GPU"
        raise BackendUnavailableError(
            f"FP8 W8A8 needs fp8 tensor cores: compute capability >= 8.9 (sm_89: L40S, RTX 4090; "
            f"sm_90: H100/H200); {name} is {capability[0]}.{capability[1]}. Use fp8='w8a16' (FP8 "
            "weights, 16-bit MMA: exact on this GPU) or no FP8"
        )


def _device_counts(device: torch.device) -> tuple[int | None, int | None]:
    if device.type != "cuda":
        return None, None
    facts = device_facts(device.index if device.index is not None else torch.cuda.current_device())
    return facts["sm_count"], facts["l2_bytes"]


def plan_fp8_launch(
    m: int,
    n: int,
    k: int,
    r: int,
    dtype: torch.dtype,
    mode: str,
    device: torch.device,
    *,
    capability: tuple[int, int] | None = None,
    strategy: str | None = None,
    gemm: GemmConfig | None = None,
    shrink: ShrinkConfig | None = None,
    quant: QuantConfig | None = None,
    weight_load: str | None = None,
) -> Fp8LaunchPlan:
    """Pick strategy, weight load and configs: explicit arguments, else the heuristics.

    ``capability`` defaults to the device's (None on CPU: the interpreter). W8A8 below
    sm_89 raises :class:`BackendUnavailableError`.
    """
    if mode not in FP8_MODES:
        raise ValueError(f"unknown FP8 mode {mode!r}; expected one of {', '.join(FP8_MODES)}")
    if capability is None:
        capability = _device_capability(device)
    if mode == "w8a8":
        _require_w8a8(capability, device)
    if strategy is None and gemm is None and shrink is None and quant is None and weight_load is None:
        return _auto_fp8_plan(m, n, k, r, dtype, mode, device, capability)
    return _fp8_plan(m, n, k, r, dtype, mode, device, capability, strategy, gemm, shrink, quant, weight_load)


@functools.lru_cache(maxsize=4096)
def _auto_fp8_plan(m, n, k, r, dtype, mode, device, capability) -> Fp8LaunchPlan:
    # Cached: a generation repeats a few dozen shapes thousands of times.
    return _fp8_plan(m, n, k, r, dtype, mode, device, capability, None, None, None, None, None)


def _fp8_plan(m, n, k, r, dtype, mode, device, capability, strategy, gemm, shrink, quant, weight_load):
    elem = torch.empty((), dtype=dtype).element_size()
    strategy = strategy or fp8_strategy(m, n, k, r, elem, capability, mode)
    allowed = ("plain",) if r == 0 else (("shrink_expand",) if mode == "w8a8" else ("shrink_expand", "fused"))
    if strategy not in allowed:
        raise ValueError(f"strategy {strategy!r} does not apply to FP8 {mode} at rank {r}; expected one of "
                         f"{', '.join(allowed)}")  # fmt: skip
    if strategy == "fused" and r > FUSED_MAX_RANK:
        raise ValueError(f"strategy 'fused' holds the whole rank in one tile: R <= {FUSED_MAX_RANK}, got {r}")
    gemm = gemm or fp8_gemm_config(m, n, k, r, capability, strategy, mode, elem)
    if strategy == "fused" and gemm.block_r < r:
        raise ValueError(f"strategy 'fused' needs GemmConfig.block_r >= R = {r}, got {gemm.block_r}")
    if mode == "w8a8":
        if weight_load not in (None, "fp8"):
            raise ValueError(f"W8A8 reads W8 as fp8 (the fp8 MMA needs it); weight_load={weight_load!r}")
        weight_load = "fp8"
        quant = quant or quant_config(m, k, r, elem, capability, *_device_counts(device))
        if 0 < r <= QUANT_MAX_RANK and quant.block_r < r:
            raise ValueError(f"QuantConfig.block_r must hold the whole rank: >= {r}, got {quant.block_r}")
        needs_shrink = r > QUANT_MAX_RANK
    else:
        weight_load = weight_load or fp8_weight_load(capability)
        if weight_load not in ("fp8", "bytes"):
            raise ValueError(f"weight_load must be 'fp8' or 'bytes', got {weight_load!r}")
        quant = None
        needs_shrink = strategy == "shrink_expand"
    shrink = (shrink or shrink_config(m, k, r, capability, elem)) if needs_shrink else None
    return Fp8LaunchPlan(mode, strategy, weight_load, gemm, shrink, quant)


def _flags(dtype: torch.dtype) -> dict:
    return dict(UPCAST_DOT=INTERPRETED and dtype == torch.bfloat16, PRECISION=precision(dtype))


def _launch_quant(qc: QuantConfig, x3, lora_a, lora_scale, t, x8, x_scale, m, k, r, s, flags) -> None:
    has_lora = 0 < r <= QUANT_MAX_RANK
    if not has_lora:
        lora_a, lora_scale, t = x_scale, x_scale, x_scale  # never read (HAS_LORA False)
    args = (
        x3, lora_a, lora_scale, t, x8, x_scale,
        m, k, r, s,
        x3.stride(0), x3.stride(1), x3.stride(2),
        lora_a.stride(0) if has_lora else 0, lora_a.stride(1) if has_lora else 0,
        lora_scale.stride(0),
        t.stride(0) if has_lora else 0, t.stride(1) if has_lora else 0,
        x8.stride(0),
    )  # fmt: skip
    kwargs = dict(HAS_LORA=has_lora, BLOCK_M=qc.block_m, BLOCK_K=qc.block_k, BLOCK_R=qc.block_r,
                  EVEN_K=k % qc.block_k == 0, ROUND_E4M3=INTERPRETED,
                  num_warps=qc.num_warps, num_stages=qc.num_stages, **flags)  # fmt: skip
    launch(_quant_shrink_kernel, (min(qc.programs, triton.cdiv(m, qc.block_m)),), args, kwargs, x3.device)


def _check_runnable(x: torch.Tensor) -> None:
    if x.device.type == "cpu" and not INTERPRETED:
        raise BackendUnavailableError(
            "the Triton kernels were imported without TRITON_INTERPRET=1, so they cannot run "
            "on CPU tensors; set it before vidlora's kernels are first imported"
        )


def quantize_shrink_triton(
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_scale: torch.Tensor,
    *,
    quant: QuantConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The W8A8 quantize pass alone: (x8 [M, K] float8_e4m3fn, x_s [M] fp32, T [M, R]).

    x [..., K] seen as M rows; T = (x A^T) * c in x's dtype from the unquantized x (R <= 128).
    Equals ``fp8_reference.quantize_rows_e4m3`` bit for bit. For tests and benchmarks.
    """
    _check_runnable(x)
    k, r = x.shape[-1], lora_a.shape[0]
    if r > QUANT_MAX_RANK:
        raise ValueError(f"the quantize pass computes T for R <= {QUANT_MAX_RANK}, got {r}")
    x3, s = as_batched_rows(x)
    m = x3.shape[0] * x3.shape[1]
    x8 = torch.empty((m, k), dtype=FP8_DTYPE, device=x.device)
    x_scale = torch.empty((m,), dtype=torch.float32, device=x.device)
    t = torch.empty((m, r), dtype=x.dtype, device=x.device)
    if m == 0:
        return x8, x_scale, t
    capability = _device_capability(x.device)
    _require_w8a8(capability, x.device)
    elem = x.element_size()
    quant = quant or quant_config(m, k, r, elem, capability, *_device_counts(x.device))
    with on_device(x.device):
        _launch_quant(quant, x3, lora_a, lora_scale, t, x8, x_scale, m, k, r, s, _flags(x.dtype))
    return x8, x_scale, t


def lora_linear_fp8_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    lora_scale: torch.Tensor,
    act_quant: bool = False,
    *,
    plan: Fp8LaunchPlan | None = None,
    dims: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """y = (x W8^T) * w_s + b + ((x A^T) * c) B^T with the Triton kernels (W8A8 when ``act_quant``).

    Arguments as ``torch.ops.vidlora.lora_linear_fp8`` (weight float8_e4m3fn [N, K],
    weight_scale fp32 [N], the rest in x's dtype, lora_scale fp32 [R]). ``plan`` (from
    :func:`plan_fp8_launch`) overrides the automatic choice (tests, tuning). Never copies
    W8, A or B; x is copied only if its leading dims cannot be viewed as [B, S] rows.
    ``dims``: (K, N, R) from the op's own argument check; None checks here.
    """
    if dims is None:
        dims = check_lora_linear_fp8_args(x, weight, weight_scale, bias, lora_a, lora_b, lora_scale)
    k, n, r = dims
    _check_runnable(x)
    mode = "w8a8" if act_quant else "w8a16"
    x3, s = as_batched_rows(x)
    m = x3.shape[0] * x3.shape[1]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return y.view(*x.shape[:-1], n)
    if plan is None:
        plan = plan_fp8_launch(m, n, k, r, x.dtype, mode, x.device)
    elif plan.mode != mode:
        raise ValueError(f"plan is for {plan.mode} but act_quant={act_quant} asks for {mode}")
    flags = _flags(x.dtype)
    with on_device(x.device):
        t = y  # a valid pointer the GEMM never reads unless LORA == 1
        if plan.shrink is not None:
            t = torch.empty((m, r), dtype=x.dtype, device=x.device)
            _launch_shrink(plan.shrink, x3, lora_a, lora_scale, t, m, k, r, s, flags)
        x_scale = None
        if mode == "w8a8":
            x8 = torch.empty((m, k), dtype=FP8_DTYPE, device=x.device)
            x_scale = torch.empty((m,), dtype=torch.float32, device=x.device)
            if 0 < r <= QUANT_MAX_RANK:
                t = torch.empty((m, r), dtype=x.dtype, device=x.device)
            _launch_quant(plan.quant, x3, lora_a, lora_scale, t, x8, x_scale, m, k, r, s, flags)
            x3, s = x8.view(1, m, k), m
            base = 3
        else:
            base = 1 if plan.weight_load == "fp8" else 2
            if plan.weight_load == "bytes":
                weight = weight.view(torch.uint8)  # same storage, read as bytes (sm_80)
        if r == 0:
            # Empty tensors may carry a null data pointer, which the launcher refuses; the
            # LORA = 0 kernel never reads these arguments.
            lora_a, lora_b, lora_scale = y, y, weight_scale
        _launch_gemm(plan.gemm, LORA_MODES[plan.strategy], x3, weight, bias, weight_scale, t, lora_a, lora_b,
                     lora_scale, y, m, n, k, r, s, flags, base=base, x_scale=x_scale)  # fmt: skip
    return y.view(*x.shape[:-1], n)
