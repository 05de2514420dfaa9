"""Is a candidate's output right? Sampled rows against an fp32 torch reference on the device.

Used by the first-use path choice (selection.py) and the first GPU run: a candidate ran on
the whole input (that is what gets timed); ``rows`` of its output are compared with an
fp32 reference computed for those rows only (W in chunks of ``_CHUNK_N`` output rows, so the
check never holds an fp32 copy of a whole weight).

Tolerance, per element (the rule of tests/kernels/test_kernels_interpreter.py): with unit
roundoff u of x's dtype (fp16 2^-11, bf16 2^-8, fp32 2^-24), T*c rounded once, y rounded
once, K products summed in fp32:

    |y - ref| <= 2u (|ref| + |Tc| |B|^T) + 2 K 2^-24 (|x| |W|^T + |Tc| |B|^T)

plus 2 * 2^-11 (|x| |W|^T + |x| |A|^T |c| |B|^T) when fp32 runs as TF32 (torch allows it).
W8A16 uses the same bound with W = W8 * w_s. W8A8 is judged by signal-to-noise instead:
the fp8 tensor cores of sm_90 sum K in reduced precision (fast accumulation; the promotion
interval bounds it), which no per-element fp32 bound describes; the reference quantizes
x exactly as the kernel must (the same bytes, fp8_reference.quantize_rows_e4m3), so what is left is the
accumulation error alone, and ``W8A8_MIN_SQNR_DB`` (40 dB, 1% RMS) is far below what a
wrong kernel gives (a LoRA term read transposed: ~0 dB when the check's LoRA term is as
large as the base, which ``check_scale`` arranges). NaN matches NaN.
"""

from __future__ import annotations

import math

import torch

__all__ = ["sample_rows", "check_scale", "check_lora_linear", "check_lora_linear_fp8", "W8A8_MIN_SQNR_DB"]

_U = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24}
_CHUNK_N = 2048
W8A8_MIN_SQNR_DB = 40.0


def sample_rows(m: int, count: int = 48, device: torch.device | str = "cpu") -> torch.Tensor:
    """Up to ``count`` row indices spread over [0, m): the first and last rows (ragged tile) included."""
    if m <= count:
        return torch.arange(m, device=device)
    idx = torch.linspace(0, m - 1, count - 2).round().long()
    return torch.unique(torch.cat([idx, torch.tensor([0, 1, m - 2, m - 1])])).to(device)


def check_scale(x2: torch.Tensor, weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor,
                rows: torch.Tensor, w_scale: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """A per-rank scale c [R] making the LoRA term about as large (RMS) as x W^T on ``rows``,
    so that a wrong LoRA path cannot hide under the rounding tolerance."""
    r = lora_a.shape[0]
    xs = x2[rows].float()
    w = weight[: min(weight.shape[0], 256)].float()
    if w_scale is not None:
        w = w * w_scale[: w.shape[0], None].float()
    base = (xs @ w.t()).pow(2).mean().sqrt()
    delta = ((xs @ lora_a.float().t()) @ lora_b[: w.shape[0]].float().t()).pow(2).mean().sqrt()
    s = base / delta if float(delta) > 0 and math.isfinite(float(base / delta)) else torch.tensor(1.0)
    return torch.full((r,), float(s), dtype=torch.float32, device=x2.device)


def _mismatch(y: torch.Tensor, ref: torch.Tensor, bound: torch.Tensor) -> str | None:
    err = (y.float() - ref).abs()
    both_nan = torch.isnan(y.float()) & torch.isnan(ref)
    bad = ~((err <= bound) | both_nan)
    if not bool(bad.any()):
        return None
    i = bad.nonzero()[0].tolist()
    return (f"{int(bad.sum())} of {bad.numel()} sampled elements outside the rounding bound; first at "
            f"{i}: got {y.float()[tuple(i)].item():.6g}, want {ref[tuple(i)].item():.6g} "
            f"(bound {bound[tuple(i)].item():.3g})")  # fmt: skip


def _bounded(y_rows, xs, weight, w_scale, bias, lora_a, lora_b, lora_scale, dtype) -> str | None:
    """The per-element check of the module doc on one set of rows (W chunked over N)."""
    k = xs.shape[1]
    u, u32 = _U[dtype], 2.0**-24
    tf32 = dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest"
    t = (xs @ lora_a.float().t()) * lora_scale if lora_a.shape[0] else None
    tc_abs = t.abs() if t is not None else None
    for lo in range(0, weight.shape[0], _CHUNK_N):
        hi = min(lo + _CHUNK_N, weight.shape[0])
        w = weight[lo:hi].float()
        if w_scale is not None:
            w = w * w_scale[lo:hi, None].float()
        ref = xs @ w.t()
        mag = xs.abs() @ w.abs().t()
        lora_mag = torch.zeros_like(ref)
        if bias is not None:
            ref += bias[lo:hi].float()
        if t is not None:
            bb = lora_b[lo:hi].float()
            ref += t @ bb.t()
            lora_mag = tc_abs @ bb.abs().t()
        bound = 2 * u * (ref.abs() + lora_mag) + 2 * k * u32 * (mag + lora_mag)
        if tf32:
            bound += 2 * 2.0**-11 * (mag + lora_mag)
        msg = _mismatch(y_rows[:, lo:hi], ref, bound)
        if msg is not None:
            return msg
    return None


def check_lora_linear(y: torch.Tensor, args: tuple, rows: torch.Tensor) -> str | None:
    """None if ``y`` (the candidate's [M, N] output) is right on ``rows``, else what is wrong."""
    x, weight, bias, lora_a, lora_b, lora_scale = args
    x2 = x.reshape(-1, x.shape[-1])
    y2 = y.reshape(-1, weight.shape[0])
    return _bounded(y2[rows], x2[rows].float(), weight, None, bias, lora_a, lora_b, lora_scale, x.dtype)


def _sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    noise = (out.float() - ref).pow(2).mean()
    return float("inf") if float(noise) == 0 else float(10 * torch.log10(ref.pow(2).mean() / noise))


def check_lora_linear_fp8(y: torch.Tensor, args: tuple, act_quant: bool, rows: torch.Tensor) -> str | None:
    """As :func:`check_lora_linear` for ``lora_linear_fp8`` (W8A16: per-element bound;
    W8A8: SQNR >= ``W8A8_MIN_SQNR_DB`` against the exactly accumulated quantized reference)."""
    from .fp8_reference import lora_linear_fp8_reference

    x, weight, w_scale, bias, lora_a, lora_b, lora_scale = args
    x2 = x.reshape(-1, x.shape[-1])
    y2 = y.reshape(-1, weight.shape[0])
    if not act_quant:
        return _bounded(y2[rows], x2[rows].float(), weight, w_scale, bias, lora_a, lora_b, lora_scale, x.dtype)
    ref = lora_linear_fp8_reference(x2[rows].float(), weight, w_scale, None if bias is None else bias.float(),
                                    lora_a.float(), lora_b.float(), lora_scale, act_quant=True)  # fmt: skip
    if torch.isnan(ref).any() or torch.isnan(y2[rows].float()).any():
        if not torch.equal(torch.isnan(ref), torch.isnan(y2[rows].float())):
            return "NaN where the reference has none (or the other way round)"
        keep = ~torch.isnan(ref)
        ref, got = ref[keep], y2[rows].float()[keep]
    else:
        got = y2[rows].float()
    db = _sqnr_db(ref, got)
    if db < W8A8_MIN_SQNR_DB:
        return f"SQNR {db:.1f} dB against the quantized reference (minimum {W8A8_MIN_SQNR_DB:.0f} dB)"
    return None
