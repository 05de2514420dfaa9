"""sm_90 persistent TMA GEMM for y = x W^T (* w_s) (* x_s) + b + ((x A^T) * c) B^T.

One program per SM (``NUM_SMS``; fewer when there are fewer tiles) walks the output tiles
``tile = pid, pid + NUM_SMS, ...`` in the GROUP_M-swizzled order of the classic kernel, so
the prologue (descriptor fetch, address math) is paid once per SM, not once per tile, and
with ``FLATTEN`` Triton flattens the tile and K loops into one software-pipelined loop
whose loads run ahead across tile boundaries (Triton tutorial 09).

Operands (host-side ``TensorDescriptor``s, i.e. TMA: UTMALDG / UTMASTG in SASS):
- x: a 2-D descriptor [M, K], or 3-D [B, S, K] when the rows have a batch stride that does
  not collapse (an I2V cross-attention slice at CFG batch 2); the M tiles then run per
  batch (tiles = B * ceil(S / BM)) so no tile straddles two batches. When x breaks TMA's
  16-byte rules (base address, or a row / batch stride not a multiple of 16 bytes: a view
  2 bytes into a buffer, K = 5121), x is read with pointer loads instead (``X_TMA`` off);
- W [N, K] (and A [R, K] for the fused strategy): 2-D descriptors. A W (or A) that breaks
  the rules is not offered here at all (:func:`applies`): those shapes run the classic kernel;
- y: stored through a descriptor in ``EPI_SPLIT`` column halves (the subtiled epilogue: a
  128 x 256 tile staged whole needed 237,608 B of shared memory, > 227 KB; halves fit),
  or with pointer stores when N * element size is not a multiple of 16;
- T [M, R] and B [N, R] (small, read once per tile from L2): pointer loads.

LoRA: ``LORA`` 1 (shrink + expand) starts each tile's accumulator from T B^T
(LoRAFusion's order, so those loads are issued with the tile instead of trailing the K
loop), except for scaled bases (W8A8: the scales multiply x W^T only) and under PDL (T is
then read in the epilogue, after ``gdc_wait``). ``LORA`` 2 (fused) accumulates T = x A^T in
the K loop from the x tile already in shared memory and expands in the epilogue.

``BASE`` 3 is the W8A8 GEMM (fp8 x fp8 MMA on the quantized x, x_s and w_s in the
epilogue, BLOCK_K = 128). Its accumulation policy ``FP8_ACC``: sm_90's fp8 wgmma sums in
reduced precision unless the partial sums are promoted to fp32 registers; ``FP8_ACC`` = 128
promotes after every 128-wide K step (``max_num_imprecise_acc``; the AOT probe of the issue
saw no spills at 128 x 128 tiles with it, 201 LDL/STL at 128 x 256), 0 keeps Triton's default
(fast accumulation over the whole K). The default is 128; the first-use choice also offers
the fast variant, kept only if it passes the W8A8 error check (result_check.py) and is faster.

``USE_PDL`` (programmatic dependent launch after the shrink) calls ``gdc_wait`` before T is
read; it is a constexpr the interpreter never sees set (``gdc_wait`` fails there under
Triton 3.9), and it is a first-use candidate of its own, not assumed faster.
"""

from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_wait
from triton.tools.tensor_descriptor import TensorDescriptor

from .checks import check_lora_linear_args
from .heuristics import FUSED_MAX_RANK, choose_strategy, pad_rank, shrink_config
from .launching import INTERPRETED, as_batched_rows, device_facts, launch, on_device, precision
from .tile_ops import _expand, _mma

__all__ = ["PersistentConfig", "persistent_config", "applies", "pdl_available", "tma_compatible",
           "lora_linear_persistent", "INTERPRETER_SMS"]  # fmt: skip

# Programs of the persistent grid under the interpreter: small, so tests walk several
# tiles per program (on a GPU: the SM count).
INTERPRETER_SMS = 3


@triton.jit
def _tile_coords(tile_id, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    group = GROUP_M * num_pid_n
    first_m = (tile_id // group) * GROUP_M
    size_m = min(num_pid_m - first_m, GROUP_M)
    return first_m + (tile_id % group) % size_m, (tile_id % group) // size_m


@triton.jit
def _persistent_lora_gemm_kernel(
    x_desc, x_ptr, w_desc, a_desc, y_desc, y_ptr, t_ptr, b_ptr, c_ptr, bias_ptr, w_scale_ptr, x_scale_ptr,
    M, N, K, R, S, NB,
    stride_xb, stride_xs, stride_xk, stride_tm, stride_tr, stride_bn, stride_br, stride_c, stride_bias, stride_ws,
    stride_ym,
    LORA: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_W_SCALE: tl.constexpr, BASE: tl.constexpr,
    X_TMA: tl.constexpr, X_3D: tl.constexpr, Y_TMA: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
    GROUP_M: tl.constexpr, NUM_SMS: tl.constexpr, EPI_SPLIT: tl.constexpr, FLATTEN: tl.constexpr,
    UPCAST_DOT: tl.constexpr, PRECISION: tl.constexpr, FP8_ACC: tl.constexpr, USE_PDL: tl.constexpr,
    EXPAND_FIRST: tl.constexpr,
):  # fmt: skip
    tl.static_assert(BASE != 3 or LORA != 2, "the fused LoRA strategy cannot read an fp8 x")
    tiles_per_batch = tl.cdiv(S, BLOCK_M)
    num_pid_m = NB * tiles_per_batch
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    offs_bm = tl.arange(0, BLOCK_M)
    offs_bn = tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    offs_r = tl.arange(0, BLOCK_R)
    for tile_id in tl.range(tl.program_id(0), num_pid_m * num_pid_n, NUM_SMS, flatten=FLATTEN):
        pid_m, pid_n = _tile_coords(tile_id, num_pid_m, num_pid_n, GROUP_M)
        bi = pid_m // tiles_per_batch
        s0 = (pid_m % tiles_per_batch) * BLOCK_M
        n0 = pid_n * BLOCK_N
        # Global rows of this tile (rows past the batch's S wrap: loaded, never stored).
        rows = bi.to(tl.int64) * S + ((s0 + offs_bm) % S)
        t_rows = rows[:, None] * stride_tm
        b_cols = ((n0 + offs_bn) % N).to(tl.int64)[None, :] * stride_bn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        if EXPAND_FIRST:
            acc = _expand(acc, t_ptr, b_ptr, t_rows, b_cols, R, stride_tr, stride_br, offs_r, BLOCK_R,
                          UPCAST_DOT, PRECISION)  # fmt: skip
        if LORA == 2:
            acc_t = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)
        x_rows = bi.to(tl.int64) * stride_xb + ((s0 + offs_bm) % S).to(tl.int64) * stride_xs
        for ki in range(k_tiles):
            k0 = ki * BLOCK_K
            if X_TMA:
                if X_3D:
                    xt = x_desc.load([bi, s0, k0]).reshape(BLOCK_M, BLOCK_K)
                else:
                    xt = x_desc.load([s0, k0])
            else:
                x_ptrs = x_ptr + x_rows[:, None] + (k0 + offs_k)[None, :] * stride_xk
                xt = tl.load(x_ptrs, mask=(k0 + offs_k)[None, :] < K, other=0.0)
            wt = w_desc.load([n0, k0]).T
            if BASE == 3 and FP8_ACC > 0:
                acc = tl.dot(xt, wt, acc, max_num_imprecise_acc=FP8_ACC)
            else:
                acc = _mma(xt, wt, acc, UPCAST_DOT, PRECISION)
            if LORA == 2:
                acc_t = _mma(xt, a_desc.load([0, k0]).T, acc_t, UPCAST_DOT, PRECISION)

        offs_n = n0 + offs_bn
        if HAS_W_SCALE:
            acc = acc * tl.load(w_scale_ptr + offs_n * stride_ws, mask=offs_n < N, other=0.0)[None, :]
        if BASE == 3:
            acc = acc * tl.load(x_scale_ptr + rows)[:, None]
        if LORA == 1 and not EXPAND_FIRST:
            if USE_PDL:
                gdc_wait()  # T is the shrink kernel's output
            acc = _expand(acc, t_ptr, b_ptr, t_rows, b_cols, R, stride_tr, stride_br, offs_r, BLOCK_R,
                          UPCAST_DOT, PRECISION)  # fmt: skip
        if LORA == 2:
            c = tl.load(c_ptr + offs_r * stride_c, mask=offs_r < R, other=0.0)
            t = (acc_t * c[None, :]).to(y_ptr.dtype.element_ty)
            bt = tl.load(b_ptr + b_cols + offs_r[:, None] * stride_br, mask=(offs_r < R)[:, None], other=0.0)
            acc = _mma(t, bt, acc, UPCAST_DOT, PRECISION)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_n * stride_bias, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]

        if Y_TMA:
            if EPI_SPLIT == 2:
                halves = tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1))
                h0, h1 = tl.split(halves)
                _store_y(y_desc, h0.to(y_ptr.dtype.element_ty), bi, s0, n0, X_3D)
                _store_y(y_desc, h1.to(y_ptr.dtype.element_ty), bi, s0, n0 + BLOCK_N // 2, X_3D)
            else:
                _store_y(y_desc, acc.to(y_ptr.dtype.element_ty), bi, s0, n0, X_3D)
        else:
            mask = ((s0 + offs_bm) < S)[:, None] & (offs_n < N)[None, :]
            tl.store(y_ptr + rows[:, None] * stride_ym + offs_n[None, :], acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _store_y(y_desc, tile, bi, s0, n0, X_3D: tl.constexpr):
    """One y tile through the descriptor (clipped at M, or at S per batch for 3-D)."""
    if X_3D:
        y_desc.store([bi, s0, n0], tile.reshape(1, tile.shape[0], tile.shape[1]))
    else:
        y_desc.store([s0, n0], tile)


@dataclasses.dataclass(frozen=True)
class PersistentConfig:
    """Tiles and launch options of the persistent kernel (``epi_split``: y stored in halves)."""

    block_m: int
    block_n: int
    block_k: int
    block_r: int
    group_m: int = 8
    num_warps: int = 8
    num_stages: int = 3
    epi_split: int = 2
    flatten: bool = True


def persistent_config(m: int, n: int, k: int, r: int, strategy: str, base: int = 0) -> PersistentConfig:
    """sm_90 tiles (heuristics.py has the rule): 16-bit 128 x 256 x 64, 3 stages, 8 warps
    (two consumer warpgroups of 64 rows), y in two 128-column halves; M <= 64 one warpgroup
    of 64 rows; W8A8 128 x 128 x 128 (fp8: twice the K per byte), 4 stages."""
    block_r = pad_rank(r) if strategy == "fused" else pad_rank(r, 32)
    if base == 3:
        return PersistentConfig(128, 128, 128, block_r, 8, 8, 4, 2)
    if m <= 64:
        return PersistentConfig(64, 128, 64, block_r, 8, 4, 4, 2)
    return PersistentConfig(128, 256, 64, block_r, 8, 8, 3, 2)


def tma_compatible(t: torch.Tensor) -> bool:
    """TMA's rules: 16-byte aligned base, unit last stride, other strides multiples of 16 bytes."""
    e = t.element_size()
    return t.data_ptr() % 16 == 0 and t.stride(-1) == 1 and all((s * e) % 16 == 0 for s in t.stride()[:-1])


def applies(x, weight, lora_a, lora_b, cap) -> bool:
    """Whether the persistent kernel is offered for this call: sm_90 (or the interpreter),
    fp16/bf16 (fp32 is an FMA path: the classic kernel), W (and A) TMA-compatible."""
    if cap is not None and cap != (9, 0):
        return False
    if x.dtype not in (torch.float16, torch.bfloat16) or weight.dtype != x.dtype:
        return False
    return tma_compatible(weight) and (lora_a.shape[0] == 0 or tma_compatible(lora_a))


def pdl_available(cap) -> bool:
    """Programmatic dependent launch: sm_90+ on a GPU (never under the interpreter)."""
    return cap is not None and cap >= (9, 0) and not INTERPRETED


def _sms(device: torch.device, num_sms: int | None) -> int:
    if num_sms is not None:
        return num_sms
    if device.type != "cuda":
        return INTERPRETER_SMS
    return device_facts(device.index if device.index is not None else torch.cuda.current_device())["sm_count"]


def _launch_persistent(cfg: PersistentConfig, lora_mode: int, x3, s: int, weight, bias, weight_scale, t, lora_a,
                       lora_b, lora_scale, y, m, n, k, r, flags, *, base=0, x_scale=None, pdl=False,
                       num_sms=None, fp8_acc=128) -> int:  # fmt: skip
    """Launch the kernel; returns the grid size (programs). x3 [B, S, K]; y [M, N]."""
    nb = x3.shape[0]
    if nb > 1 and x3.stride(0) == s * x3.stride(1):
        x3, s, nb = x3.reshape(1, m, k), m, 1  # batches collapse onto rows: 2-D
    x_tma = tma_compatible(x3)
    x_3d = nb > 1
    bm, bn, bk = cfg.block_m, cfg.block_n, cfg.block_k
    if x_tma:
        x_desc = TensorDescriptor(x3, list(x3.shape), list(x3.stride()), [1, bm, bk]) if x_3d else \
            TensorDescriptor(x3[0], [m, k], [x3.stride(1), 1], [bm, bk])  # fmt: skip
    else:
        x_desc = None
    w_desc = TensorDescriptor(weight, [n, k], [weight.stride(0), 1], [bn, bk])
    a_desc = TensorDescriptor(lora_a, [r, k], [lora_a.stride(0), 1], [cfg.block_r, bk]) if lora_mode == 2 else None
    y_tma = tma_compatible(y)
    half = bn // cfg.epi_split
    y_desc = None
    if y_tma:
        y_desc = TensorDescriptor(y.view(nb, s, n), [nb, s, n], [s * n, n, 1], [1, bm, half]) if x_3d else \
            TensorDescriptor(y, [m, n], [n, 1], [bm, half])  # fmt: skip
    tiles = nb * triton.cdiv(s, bm) * triton.cdiv(n, bn)
    programs = max(1, min(_sms(x3.device, num_sms), tiles))
    stand_in = lora_scale if lora_scale.numel() else y
    args = (
        x_desc, x3, w_desc, a_desc, y_desc, y, t, lora_b, lora_scale, bias if bias is not None else y,
        weight_scale if weight_scale is not None else stand_in, x_scale if x_scale is not None else stand_in,
        m, n, k, r, s, nb,
        x3.stride(0), x3.stride(1), x3.stride(2), t.stride(0), t.stride(1), lora_b.stride(0), lora_b.stride(1),
        lora_scale.stride(0) if lora_scale.dim() else 1, bias.stride(0) if bias is not None else 1,
        weight_scale.stride(0) if weight_scale is not None else 1, y.stride(0),
    )  # fmt: skip
    kwargs = dict(
        LORA=lora_mode, HAS_BIAS=bias is not None, HAS_W_SCALE=weight_scale is not None, BASE=base,
        X_TMA=x_tma, X_3D=x_3d, Y_TMA=y_tma, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, BLOCK_R=cfg.block_r,
        GROUP_M=cfg.group_m, NUM_SMS=programs, EPI_SPLIT=cfg.epi_split, FLATTEN=cfg.flatten,
        FP8_ACC=min(fp8_acc, bk) if base == 3 else 0, USE_PDL=pdl,
        EXPAND_FIRST=lora_mode == 1 and weight_scale is None and base == 0 and not pdl, num_warps=cfg.num_warps, num_stages=cfg.num_stages, **flags,
    )  # fmt: skip
    if pdl:
        kwargs["launch_pdl"] = True
    launch(_persistent_lora_gemm_kernel, (programs,), args, kwargs, x3.device)
    return programs


def lora_linear_persistent(
    x, weight, bias, lora_a, lora_b, lora_scale, *, strategy: str | None = None,
    config: PersistentConfig | None = None, pdl: bool = False, num_sms: int | None = None, dims=None,
) -> torch.Tensor:  # fmt: skip
    """y = x W^T + b + ((x A^T) * c) B^T with the persistent kernel (16-bit weights).

    ``strategy`` "plain" (R = 0), "shrink_expand" or "fused" (default: the cost model's);
    ``config``: tiles (default :func:`persistent_config`); ``pdl``: launch the GEMM with
    programmatic dependent launch after the shrink (sm_90 only); ``num_sms``: the grid size
    (default the SM count; tests pass fewer than there are tiles). W (and A for "fused")
    must be TMA-compatible (:func:`tma_compatible`); x may be any strided view.
    """
    from .lora_gemm import _launch_shrink

    k, n, r = dims if dims is not None else check_lora_linear_args(x, weight, bias, lora_a, lora_b, lora_scale)
    if not tma_compatible(weight) or (strategy == "fused" and not tma_compatible(lora_a)):
        raise ValueError("the persistent kernel reads W (and A) through TMA descriptors: they must be 16-byte "
                         "aligned with 16-byte row strides; use the classic kernel (lora_gemm.py)")  # fmt: skip
    if pdl and not pdl_available(None if x.device.type != "cuda" else torch.cuda.get_device_capability(x.device)):
        raise ValueError("PDL needs an sm_90+ GPU (and is never used under the interpreter)")
    x3, s = as_batched_rows(x)
    m = x3.shape[0] * x3.shape[1]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return y.view(*x.shape[:-1], n)
    elem = x.element_size()
    strategy = strategy or choose_strategy(m, n, k, r, elem, None if x.device.type != "cuda" else (9, 0))
    if (strategy == "plain") != (r == 0) or (strategy == "fused" and r > FUSED_MAX_RANK):
        raise ValueError(f"strategy {strategy!r} does not apply to rank {r}")
    cfg = config or persistent_config(m, n, k, r, strategy)
    flags = dict(UPCAST_DOT=INTERPRETED and x.dtype == torch.bfloat16, PRECISION=precision(x.dtype))
    mode = {"plain": 0, "shrink_expand": 1, "fused": 2}[strategy]
    with on_device(x.device):
        t = y
        if mode == 1:
            t = torch.empty((m, r), dtype=x.dtype, device=x.device)
            cap = torch.cuda.get_device_capability(x.device) if x.device.type == "cuda" else None
            _launch_shrink(shrink_config(m, k, r, cap, elem), x3, lora_a, lora_scale, t, m, k, r, s, flags,
                           launch_dependents=pdl)  # fmt: skip
        if r == 0:
            lora_a, lora_b, lora_scale = y, y, y[0]
        _launch_persistent(cfg, mode, x3, s, weight, bias, None, t, lora_a, lora_b, lora_scale, y, m, n, k, r, flags,
                           pdl=pdl and mode == 1, num_sms=num_sms)  # fmt: skip
    return y.view(*x.shape[:-1], n)
