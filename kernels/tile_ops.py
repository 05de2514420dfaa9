"""@triton.jit building blocks shared by every LoRA GEMM kernel (classic, persistent, FP8).

- ``_mma``: one tensor-core step with fp32 accumulation; ``UPCAST_DOT`` (set only when
  interpreting bf16) casts the operands to fp32 first, because the interpreter computes bf16
  ``tl.dot`` on the raw uint16 bit patterns (triton issue 11584; results ~1e10). A bf16 value
  and its products are exact in fp32, so this equals a bf16 MMA with fp32 accumulation up to
  summation order. On a GPU the flag is off and the compiled kernel is unchanged.
- ``_load_k_tile`` / ``_load_base_tile``: one K step of an activation / weight tile (masked
  only when K is ragged); ``_load_base_tile`` is the single place the FP8 bases differ.
- ``_x_row_offsets``: rows of x seen as [M/S, S, K] (any strides; rows past M wrap).
- ``_expand``: acc + T B^T over the rank in BLOCK_R-wide chunks (the LoRA expand).
- ``_max_nan``: a max that keeps NaN (torch's amax does; Triton's ``tl.max`` uses maxnum).
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__: list[str] = []


@triton.jit
def _mma(a, b, acc, UPCAST_DOT: tl.constexpr, PRECISION: tl.constexpr):
    """acc + a @ b with fp32 accumulation (see the module doc for UPCAST_DOT)."""
    if UPCAST_DOT:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def _load_k_tile(ptrs, k_mask, EVEN_K: tl.constexpr):
    """One K step of an activation / LoRA tile; masked only when K is ragged."""
    if EVEN_K:
        return tl.load(ptrs)
    else:
        return tl.load(ptrs, mask=k_mask, other=0.0)


@triton.jit
def _e4m3_bytes_to(b, like):
    """float8_e4m3fn bit patterns (uint8) -> exact values in ``like``'s dtype, integer ops only.

    For GPUs that refuse ``fp8e4nv`` pointers (sm_80). e4m3 is 1 sign, 4 exponent (bias
    7), 3 mantissa bits. Placed into an fp16 pattern as sign << 15 | (byte & 0x7F) << 7,
    exponent and mantissa land on fp16's low exponent / high mantissa bits, which encodes
    value * 2^-8 for every finite byte, subnormals included (e4m3's exponent-0 numbers
    m * 2^-9 become fp16 subnormals m * 2^-17); times 256 (a power of two) restores the
    value exactly. 0x7F / 0xFF are NaN in e4m3fn (it has no infinities).
    """
    b16 = b.to(tl.uint16)
    h = ((b16 & 0x80) << 8) | ((b16 & 0x7F) << 7)
    h = tl.where((b16 & 0x7F) == 0x7F, h | 0x7E00, h)  # fp16 NaN
    # fp16 -> fp32 keeps fp16 subnormals exactly; the product is a normal fp32 number.
    v = h.to(tl.float16, bitcast=True).to(tl.float32) * 256.0
    return v.to(like.dtype)


@triton.jit
def _load_base_tile(ptrs, k_mask, like, EVEN_K: tl.constexpr, BASE: tl.constexpr):
    """One K step of the base weight tile W^T [BLOCK_K, BLOCK_N], ready for the MMA with
    ``like`` (the x tile of the same step).

    BASE 0: W in x's dtype. BASE 1 (FP8 W8A16): float8_e4m3fn loaded and upcast in
    registers to x's dtype (exact: every e4m3 value is an fp16/bf16/fp32 value). BASE 2
    (W8A16 where fp8 pointers are refused, sm_80): the same bytes read as uint8 and
    converted by :func:`_e4m3_bytes_to`. BASE 3 (W8A8): the fp8 tile as is, for the fp8 x
    fp8 MMA. The per-channel scale is the epilogue's HAS_W_SCALE step.
    """
    if EVEN_K:
        w = tl.load(ptrs)
    else:
        w = tl.load(ptrs, mask=k_mask, other=0.0)
    if BASE == 1:
        w = w.to(like.dtype)
    elif BASE == 2:
        w = _e4m3_bytes_to(w, like)
    return w


@triton.jit
def _x_row_offsets(offs_m, M, S, stride_xb, stride_xs):
    """Element offsets of rows ``offs_m`` of x seen as [M/S, S, K]; rows >= M wrap around."""
    rows = (offs_m % M).to(tl.int64)
    return (rows // S) * stride_xb + (rows % S) * stride_xs


@triton.jit
def _expand(acc, t_ptr, b_ptr, t_rows, b_cols, R, stride_tr, stride_br, offs_r,
            BLOCK_R: tl.constexpr, UPCAST_DOT: tl.constexpr, PRECISION: tl.constexpr):  # fmt: skip
    """acc + T[rows] B[cols]^T, the rank in BLOCK_R-wide chunks (ranks past R masked to 0).

    ``t_rows`` [BM, 1] / ``b_cols`` [1, BN]: element offsets of the tile's T rows and B rows.
    """
    for r0 in range(0, R, BLOCK_R):
        r_ok = (r0 + offs_r) < R
        t = tl.load(t_ptr + t_rows + (r0 + offs_r)[None, :] * stride_tr, mask=r_ok[None, :], other=0.0)
        bt = tl.load(b_ptr + b_cols + (r0 + offs_r)[:, None] * stride_br, mask=r_ok[:, None], other=0.0)
        acc = _mma(t, bt, acc, UPCAST_DOT, PRECISION)
    return acc


@triton.jit
def _max_nan_combine(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _max_nan(x, axis: tl.constexpr):
    """max over ``axis`` that returns NaN when any element is NaN (as torch.amax)."""
    return tl.reduce(x, axis, _max_nan_combine)
