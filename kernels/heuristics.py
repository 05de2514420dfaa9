"""How the launcher picks a strategy and tile sizes for ``y = x W^T + b + ((x A^T) * c) B^T``.

Until a GPU has measured configs (``configs/<gpu>.json``, see ``tuned_configs.py``) this module is
the whole rule. Every number below is a documented estimate, not a measurement.

Strategies
----------
- ``"plain"``: R = 0. One GEMM kernel with no LoRA code compiled in, so R = 0 costs exactly
  the base GEMM.
- ``"shrink_expand"``: kernel 1 computes T = (x A^T) * c once ([M, R], stored in x's
  dtype); the GEMM adds T B^T and the bias in its epilogue and writes y once.
  Extra cost over the base: one more read of x (M*K*e bytes), the write and read of T
  (2*M*R*e bytes), the shrink MMA (2*M*K*R FLOPs, hidden under its memory time) and one
  more kernel launch (~4 us).
- ``"fused"``: T is accumulated in the GEMM's own K loop from the x tile already in shared
  memory; no second read of x and no second launch, but every one of the ceil(N/BN) column
  tiles recomputes T: extra MMA work ceil(N/BN) * 2*M*K*R_pad FLOPs, i.e. R_pad/BN of the
  base (R_pad = the rank padded to the MMA tile, at least 16).
Both LoRA strategies pay the same expand (2*M*N*R FLOPs), so the rule compares only the
terms above, with :class:`HardwareModel` numbers:

    fused  iff  ceil(N/BN) * 2*M*K*R_pad / P  <  M*K*e / BW + 2*M*R*e / BW + launch

H100 (P = 700 TFLOP/s reached by dense bf16 GEMMs, BW = 3.35 TB/s, launch 4 us), Wan 14B
projection K = N = 5120, R = 32, BN = 256: fused costs 20 tiles * 2*5120*32 / 7e14 =
9.4 ns per row, shrink 5120*2 / 3.35e12 = 3.1 ns per row + 4 us, so fused wins below
~630 rows and shrink+expand above (video token counts are 8k-33k rows: shrink+expand,
~4% over the base for the extra read of x, against ~12.5% extra MMA for the fused one).
The fused kernel keeps the whole rank in one tile, so it is only offered for R <= 64.

Tiles (``GemmConfig``), 16-bit operands: 128 x 256 x 64 with 8 warps and 3 stages on
sm_80/sm_90 (Triton's own best A100/H100 bf16 matmul config: 144 KB of operand staging,
under the 163 KB / 227 KB per-block limits). GPUs with 99 KB (sm_86, sm_89, sm_120) get
128 x 128 x 32 with 4 stages (64 KB). The fused kernel on sm_80 uses 128 x 128 x 64: at
128 x 256 it spilled ~1650 STL + ~1900 LDL (mma.sync keeps both accumulators in registers).
Small M (<= 64 rows) uses 64-row tiles with 4 warps (one warpgroup: wgmma's minimum M is
64), 64 x 128 x 64, 4 stages (96 KB); the fused kernel at R > 32 on sm_80/sm_89 takes
64-column tiles (64 x 128 spilled 74 LDL/STL at R = 64 on sm_80). ``BLOCK_R`` = the rank
padded to a power of two >= 16, capped at 32 for the epilogue expand (larger ranks loop
over 32-wide chunks: a 64-wide expand grew LDL/STL to ~140).
Element size: every staging estimate is (rows + cols) x BK x element bytes x stages, so
fp32 inputs (4 bytes) get their own tiles: 64 x 64 x 32, 3 stages, 8 warps (48 KB). fp32
runs IEEE dots (FMA, no tensor cores) unless torch allows TF32; at 2-byte sizes an fp32
128 x 256 x 64 x 3 tile needed 288 KB on sm_90 (limit 227 KB) and would have failed at
launch; with 4 warps the W8A16 fp32 tile spilled ~300 LDL/STL, with 8 none.
The shrink kernel streams x once: 64 rows x 128 K per step (16 KB of x per stage; 64 when
the rank-128 staging would not fit, 32 for fp32), 4 warps, 4 stages; at M = 32760 that is
512 programs for 132 SMs.

sm_90 persistent kernel (``persistent_gemm.persistent_config``): 128 x 256 x 64, 3 stages,
8 warps, y stored in two 128-column halves (staged whole, the 128 x 256 epilogue tile took
the kernel to 237,608 B > 227 KB; in halves 180,248 B for shrink+expand, 208,952 B fused at
M = 256), grid = min(132, tiles); M <= 64: 64 x 128 x 64, 4 warps; W8A8: 128 x 128 x 128,
4 stages (147,488 B; 128 x 256 with promotion every 128 K spilled 201 LDL/STL).
The launcher's heuristic is only the starting point and the default when nothing may be
measured: on a GPU, the first-use choice (selection.py) times the classic and persistent
kernels, both strategies where they apply, PDL, and cuBLAS + the low-rank matmuls, and keeps
the fastest correct one per shape class. Tuned configs are not attempted by hand:
kernels/tuner.py measures them on a GPU and stores them as data.
FP8 bases (``fp8_gemm.py``)
---------------------------
W8A16 runs the same GEMM with its weight tile loaded as fp8 and upcast in registers: the
MMA is the 16-bit one, so the strategy rule and tiles are the 16-bit ones above (the fp8
W staging is half their bytes, so they fit wherever those do), except on sm_80, where the
weight bytes are converted with integer ops in registers: 32-wide K steps, 4 stages (at
64 the audit saw spills). At large M the dequantize-once path (fp8_dequant.py: W8 -> x's
dtype into a scratch, ~78 MB moved at 5120^2, ~1% of the GEMM at M = 32,760, ~17% at
M = 2,048) usually wins; where the crossover lies is measured by the first-use choice.

W8A8 has one strategy per rank: a quantize pass over x (per-token scale amax/448, x8
written as e4m3) that also computes T = (x A^T) * c from the unquantized x, then the
fp8 x fp8 GEMM with T B^T in its epilogue ("shrink_expand"; "plain" at R = 0). The fused
strategy does not apply: it would have to read the unquantized x inside an fp8 K loop.
GEMM tiles: 1-byte operands, so BLOCK_K = 128 (one 128-wide K step moves the bytes a
64-wide bf16 step moves; Triton's H100 fp8 matmul tutorial uses 128 x 256 x 128 too):
128 x 256 x 128 x 3 stages = 144 KB on sm_90; 128 x 128 tiles where that does not fit
(99 KB parts: 128 x 128 x 64 x 4 stages = 64 KB; the audit measures what is used).

The quantize pass reads each row block twice: once for amax and T, once (after the scale
is known) to write x8. The second read must come from L2, so the pass runs a persistent
grid: ``programs`` programs each walk their row blocks one at a time, and the second walk
goes over K backwards (the tiles read last come back first). Between the two reads of a
tile at most programs x BLOCK_M x K x e bytes of other rows pass through L2. The rule
keeps that under half of L2 (the other half for A and the x8 and T writes), but never under
half the SMs (fewer would leave HBM bandwidth unused): H100 (50 MB L2, 132 SMs), bf16,
BLOCK_M = 32: K = 3072 -> 132 programs (25.9 MB in flight), K = 5120 -> 80 (26.2 MB),
K = 13824 -> 66 (58 MB: the early tiles of a block may miss L2; worst case one more read
of x, 0.27 ms against ~3.5 ms of fp8 GEMM at M = 32760). BLOCK_M = 32 re-reads A from L2
once per 32 rows (R/32 of the x traffic at rank R). Bytes in flight are the L2 footprint
times stages x BLOCK_K / K, so the pass runs a deeper pipeline where 6 stages fit in 3/4
of shared memory (at most one program per SM, nothing else resident): at K = 5120 on
sm_90, 80 programs x 6 x 32 x 128 x 2 B = 3.9 MB in flight (4 stages: 2.6 MB, about
H100's bandwidth x latency product, 3.35 TB/s x ~0.8 us, with no headroom). Not 8: under
Triton 3.6 (the lent machine's) the fp16 pass spills 4 at 8 stages on sm_90, none at 6
(Triton 3.9: none at 8). AOT audit at 6: 0 spills, 80-100 KB on sm_90 under both
(``results/kernel_audit-quant-triton3.6.0-cpu-aot-20261202T005153Z.json``: 17 sm_90 rows ok).
Estimates until a GPU measures them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .fp8_format import FP8_MODES

__all__ = [
    "STRATEGIES",
    "GemmConfig",
    "ShrinkConfig",
    "HardwareModel",
    "hardware_model",
    "shared_memory_limit",
    "pad_rank",
    "gemm_config",
    "shrink_config",
    "strategy_costs",
    "choose_strategy",
    "FUSED_MAX_RANK",
    "QUANT_MAX_RANK",
    "QuantConfig",
    "fp8_strategy",
    "fp8_gemm_config",
    "quant_config",
]

STRATEGIES = ("plain", "shrink_expand", "fused")

# The fully fused kernel holds T for the whole rank in a second accumulator [BM, R_pad]:
# beyond 64 columns that is 64+ more fp32 registers per thread at 8 warps.
FUSED_MAX_RANK = 64
_MIN_MMA_K = 16  # tl.dot needs every dimension >= 16
_EXPAND_MAX_BLOCK_R = 32


@dataclass(frozen=True)
class GemmConfig:
    """Tile sizes and launch options of the main GEMM kernel."""

    block_m: int
    block_n: int
    block_k: int
    block_r: int
    group_m: int
    num_warps: int
    num_stages: int

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n", "block_k", "block_r"):
            v = getattr(self, name)
            if v < _MIN_MMA_K or v & (v - 1):
                raise ValueError(f"GemmConfig.{name} must be a power of two >= 16, got {v}")
        if self.group_m < 1 or self.num_warps not in (1, 2, 4, 8, 16) or self.num_stages < 1:
            raise ValueError(f"GemmConfig has an invalid group_m/num_warps/num_stages: {self}")


def _check_tiles(cfg) -> None:
    """block_m/k/r powers of two >= 16 (the MMA minimum), a valid warp count and stages."""
    for name in ("block_m", "block_k", "block_r"):
        v = getattr(cfg, name)
        if v < _MIN_MMA_K or v & (v - 1):
            raise ValueError(f"{type(cfg).__name__}.{name} must be a power of two >= 16, got {v}")
    if cfg.num_warps not in (1, 2, 4, 8, 16) or cfg.num_stages < 1:
        raise ValueError(f"{type(cfg).__name__} has an invalid num_warps/num_stages: {cfg}")


@dataclass(frozen=True)
class ShrinkConfig:
    """Tile sizes and launch options of the shrink kernel T = (x A^T) * c."""

    block_m: int
    block_k: int
    block_r: int
    num_warps: int
    num_stages: int

    def __post_init__(self) -> None:
        _check_tiles(self)


@dataclass(frozen=True)
class HardwareModel:
    """Reached (not peak) dense 16-bit MMA rate, memory bandwidth, kernel launch cost."""

    flops: float  # FLOP/s
    bandwidth: float  # bytes/s
    launch_s: float  # seconds per extra kernel launch


# Compute capability -> model. H100 SXM: 700 of 990 TFLOP/s, HBM3 3.35 TB/s. A100: 280 of
# 312 TFLOP/s, 2.0 TB/s. sm_89 (L40S): ~300 of 362 TFLOP/s, 0.864 TB/s.
_MODELS = {
    (9, 0): HardwareModel(700e12, 3.35e12, 4e-6),
    (8, 0): HardwareModel(280e12, 2.0e12, 4e-6),
    (8, 9): HardwareModel(300e12, 0.864e12, 4e-6),
}


def hardware_model(capability: tuple[int, int] | None) -> HardwareModel:
    """The cost model for a compute capability (None: the interpreter; sm_80's numbers)."""
    if capability is None:
        return _MODELS[(8, 0)]
    if capability in _MODELS:
        return _MODELS[capability]
    # Unlisted GPUs: the closest architecture at or below them (sm_86 -> sm_80, sm_100 -> sm_90).
    known = sorted(c for c in _MODELS if c <= capability)
    return _MODELS[known[-1]] if known else _MODELS[(8, 0)]


def pad_rank(r: int, cap: int | None = None) -> int:
    """The rank padded to a power of two >= 16 (an MMA dimension), optionally capped."""
    p = max(_MIN_MMA_K, 1 << max(0, r - 1).bit_length())
    return min(p, cap) if cap is not None else p


# Opt-in shared memory per block (bytes) by compute capability: A100 / Jetson Orin 163 KB;
# consumer Ampere (sm_86), Ada (sm_89) and consumer Blackwell (sm_120) 99 KB; H100 and
# B200 227 KB. Unlisted: 99 KB, the smallest of these.
_SHARED_MEMORY = {
    (8, 0): 163 * 1024, (8, 6): 99 * 1024, (8, 7): 163 * 1024, (8, 9): 99 * 1024,
    (9, 0): 227 * 1024, (10, 0): 227 * 1024, (12, 0): 99 * 1024,
}  # fmt: skip


def shared_memory_limit(capability: tuple[int, int] | None) -> int:
    """Bytes of shared memory one block may use (None: the interpreter; sm_80's)."""
    if capability is None:
        return _SHARED_MEMORY[(8, 0)]
    return _SHARED_MEMORY.get(capability, 99 * 1024)


def _staging_bytes(rows: int, cols: int, block_k: int, stages: int, elem_bytes: int = 2) -> int:
    # Operand tiles [rows, BK] + [BK, cols] of ``elem_bytes`` each, one buffer per stage (an
    # upper bound: the audit saw stages - 1 buffers on sm_80/sm_89 and `stages` on sm_90).
    return (rows + cols) * block_k * elem_bytes * stages


def _fit_k(rows: int, cols: int, block_k: int, stages: int, elem_bytes: int, limit: int) -> tuple[int, int]:
    """The widest K step (then the most stages, >= 2) from (block_k, stages) down whose staging fits."""
    while _staging_bytes(rows, cols, block_k, stages, elem_bytes) > limit:
        if stages > 2 and block_k <= 32:
            stages -= 1
        elif block_k > _MIN_MMA_K:
            block_k //= 2
        else:
            break
    return block_k, stages


def gemm_config(
    m: int, n: int, k: int, r: int, capability: tuple[int, int] | None, strategy: str, elem_bytes: int = 2
) -> GemmConfig:
    """Heuristic GEMM tiles for a shape on an architecture (None: the interpreter).

    ``elem_bytes``: the size of x's elements (2 for bf16/fp16, 4 for fp32): the staging in
    shared memory scales with it, so fp32 gets narrower K steps (module doc).
    """
    block_r = pad_rank(r) if strategy == "fused" else pad_rank(r, _EXPAND_MAX_BLOCK_R)
    limit = shared_memory_limit(capability)
    pre_hopper = capability is None or capability < (9, 0)
    if elem_bytes == 4:
        # fp32 (IEEE): no tensor cores, FMA dots whose operands live in registers: small
        # tiles, 8 warps (audit: W8A16 fp32 64 x 64 x 32 spilled ~300 LDL/STL at 4 warps, 0 at 8).
        bk, stages = _fit_k(64, 64, 32, 3, 4, limit)
        return GemmConfig(64, 64, bk, block_r, 8, 8, stages)
    if m <= 64:
        # One warpgroup (wgmma's minimum M is 64). The fused kernel at R > 32 on sm_80 holds
        # both mma.sync accumulators in registers: 64 x 128 spilled 74 LDL/STL at R = 64.
        bn = 64 if strategy == "fused" and block_r > 32 and pre_hopper else 128
        bk, stages = _fit_k(64, bn, 64, 4, elem_bytes, limit)
        return GemmConfig(64, bn, bk, block_r, 8, 4, stages)
    if _staging_bytes(128, 256, 64, 3, elem_bytes) > limit:
        # 99 KB parts (sm_86, sm_89, sm_120): 128 x 128 x 32 x 4 stages = 64 KB.
        bk, stages = _fit_k(128, 128, 32, 4, elem_bytes, limit)
        return GemmConfig(128, 128, bk, block_r, 8, 8, stages)
    if strategy == "fused" and pre_hopper:
        # sm_80 keeps mma.sync accumulators in registers: 128x256 fp32 (128 per thread)
        # plus the [128, R] T accumulator spilled (audit: ~1650 STL / ~1900 LDL at R = 32);
        # 128 x 128 does not. sm_90's wgmma path showed no spills at 128 x 256.
        return GemmConfig(128, 128, 64, block_r, 8, 8, 3)
    return GemmConfig(128, 256, 64, block_r, 8, 8, 3)


def shrink_config(
    m: int, k: int, r: int, capability: tuple[int, int] | None, elem_bytes: int = 2
) -> ShrinkConfig:
    """Heuristic shrink tiles: the whole padded rank (up to 128) in one program column.

    64 rows, 4 stages, the widest K step (128, 64, 32) whose staging fits the shared
    memory: at R = 128 on a 99 KB part, 128-wide steps would need 196 KB (the audit
    caught 147 KB on sm_89), so 64. fp32 (``elem_bytes`` 4) halves the step again.
    """
    block_r = pad_rank(r, 128)
    limit = shared_memory_limit(capability)
    block_k = next(
        (bk for bk in (128, 64) if _staging_bytes(64, block_r, bk, 4, elem_bytes) <= limit), 32
    )
    if elem_bytes == 4:
        block_k = min(block_k, 32)  # FMA dot: operands in registers
    return ShrinkConfig(64, block_k, block_r, 4, 4)


def strategy_costs(
    m: int, n: int, k: int, r: int, block_n: int, elem_bytes: int, hw: HardwareModel
) -> dict[str, float]:
    """Estimated seconds each LoRA strategy adds on top of base GEMM + expand (see module doc)."""
    r_pad = pad_rank(r)
    fused = math.ceil(n / block_n) * 2.0 * m * k * r_pad / hw.flops
    shrink = (m * k * elem_bytes + 2 * m * r * elem_bytes) / hw.bandwidth + hw.launch_s
    return {"fused": fused, "shrink_expand": shrink}


def choose_strategy(
    m: int,
    n: int,
    k: int,
    r: int,
    elem_bytes: int,
    capability: tuple[int, int] | None,
) -> str:
    """"plain" for R = 0; otherwise the cheaper of "fused" / "shrink_expand" by the cost model."""
    if r == 0:
        return "plain"
    if r > FUSED_MAX_RANK:
        return "shrink_expand"
    block_n = gemm_config(m, n, k, r, capability, "fused", elem_bytes).block_n
    costs = strategy_costs(m, n, k, r, block_n, elem_bytes, hardware_model(capability))
    return "fused" if costs["fused"] < costs["shrink_expand"] else "shrink_expand"


# ------------------------------------------------------------------------ FP8 bases
# The quantize pass keeps T for the whole rank in one [BLOCK_M, R_pad] fp32 accumulator;
# above 128 (four stacked rank-32 adapters) T comes from the shrink kernel instead, at the
# cost of one more read of x.
QUANT_MAX_RANK = 128
# Used where no device can be asked (the interpreter, AOT): an H100 SXM's 132 SMs and 50 MB L2.
_DEFAULT_SM_COUNT = 132
_DEFAULT_L2_BYTES = 50 * 1024 * 1024
_QUANT_BLOCK_M = 32


@dataclass(frozen=True)
class QuantConfig:
    """Tiles and grid of the W8A8 quantize pass (x8, per-row scales and T in one kernel)."""

    block_m: int
    block_k: int
    block_r: int
    programs: int  # persistent grid size (see the module doc)
    num_warps: int
    num_stages: int

    def __post_init__(self) -> None:
        _check_tiles(self)
        if self.programs < 1:
            raise ValueError(f"QuantConfig has an invalid programs: {self}")


def _check_fp8_mode(mode: str) -> None:
    if mode not in FP8_MODES:
        raise ValueError(f"unknown FP8 mode {mode!r}; expected one of {', '.join(FP8_MODES)}")


def fp8_strategy(
    m: int, n: int, k: int, r: int, elem_bytes: int, capability: tuple[int, int] | None, mode: str
) -> str:
    """W8A16: the 16-bit rule (same MMA, same costs); W8A8: "plain" or "shrink_expand"."""
    _check_fp8_mode(mode)
    if mode == "w8a16":
        return choose_strategy(m, n, k, r, elem_bytes, capability)
    return "plain" if r == 0 else "shrink_expand"


def fp8_gemm_config(
    m: int, n: int, k: int, r: int, capability: tuple[int, int] | None, strategy: str, mode: str,
    elem_bytes: int = 2,
) -> GemmConfig:
    """GEMM tiles for an FP8 base (module doc); ``elem_bytes``: x's element size."""
    _check_fp8_mode(mode)
    if mode == "w8a16":
        g = gemm_config(m, n, k, r, capability, strategy, elem_bytes)
        if capability is not None and capability < (8, 9) and g.block_k == 64:
            # sm_80 converts the weight bytes with integer ops in registers, on top of
            # mma.sync's register-held accumulators: with 64-wide K steps the audit saw
            # spills (fp16 expand 128 x 256: 12 LDL/STL, 255 registers; fused 128 x 128:
            # 10); with 32-wide steps and 4 stages none (232 / 241 / 185 registers).
            return GemmConfig(g.block_m, g.block_n, 32, g.block_r, g.group_m, g.num_warps, 4)
        if elem_bytes == 4 and strategy == "fused":
            # fp32 FMA dots for both accumulators plus the upcast: 16-wide K steps (at 32 the
            # audit saw 137-169 LDL/STL on every arch at 255 registers; at 16 none, 224).
            return GemmConfig(g.block_m, g.block_n, 16, g.block_r, g.group_m, g.num_warps, g.num_stages)
        return g
    block_r = pad_rank(r, _EXPAND_MAX_BLOCK_R)
    limit = shared_memory_limit(capability)
    if elem_bytes == 4:
        # fp32 x: the fp8 main loop is unchanged, but the T B^T epilogue is an fp32 FMA dot:
        # 128 x 256 spilled 430 LDL/STL on sm_90 and overflowed sm_89's 99 KB; 64 x 64 did not.
        tiles = (64, 64, 4)
    elif m <= 64:
        tiles = (64, 128, 4)
    elif (128 + 256) * 128 * 3 <= limit:
        tiles = (128, 256, 8)
    else:
        tiles = (128, 128, 8)
    bm, bn, warps = tiles
    # 1-byte operands; the widest K step, then the most stages, whose staging fits in
    # 2/3 of the limit (the 16-bit T and B tiles of the epilogue need room too).
    bk, stages = next(
        ((bk, st) for bk, st in ((128, 4), (128, 3), (64, 4), (64, 3)) if (bm + bn) * bk * st <= limit * 2 // 3),
        (32, 3),
    )
    return GemmConfig(bm, bn, bk, block_r, 8, warps, stages)


def quant_config(
    m: int,
    k: int,
    r: int,
    elem_bytes: int,
    capability: tuple[int, int] | None,
    sm_count: int | None = None,
    l2_bytes: int | None = None,
) -> QuantConfig:
    """Tiles and persistent grid of the W8A8 quantize pass (module doc: the L2 rule).

    ``sm_count`` / ``l2_bytes``: the device's (None: an H100's, for the interpreter and AOT).
    """
    sm_count = sm_count or _DEFAULT_SM_COUNT
    l2_bytes = l2_bytes or _DEFAULT_L2_BYTES
    block_m = _QUANT_BLOCK_M
    block_r = pad_rank(min(r, QUANT_MAX_RANK))
    limit = shared_memory_limit(capability)
    tile = lambda bk, st: (block_m + block_r) * bk * elem_bytes * st  # noqa: E731 (staged x and A bytes)
    block_k = next((bk for bk in (128, 64) if tile(bk, 4) <= limit // 2), 32)
    # The deepest pipeline in 3/4 of the limit (one program per SM at most, nothing else
    # resident): stages x BLOCK_K / K of the L2 footprint is in flight (module doc).
    stages = 6 if tile(block_k, 6) <= limit * 3 // 4 else 4
    blocks = math.ceil(max(m, 1) / block_m)
    fit = (l2_bytes // 2) // (block_m * k * elem_bytes)
    programs = max(1, min(blocks, max(sm_count // 2, min(sm_count, fit))))
    return QuantConfig(block_m, block_k, block_r, programs, 4, stages)
