"""The FP8 launch rules: strategies per mode, tiles that fit each architecture, and the
W8A8 quantize pass's persistent grid (the L2 footprint numbers in heuristics.py)."""

from __future__ import annotations

import pytest

from vidlora.kernels.heuristics import (
    QUANT_MAX_RANK,
    QuantConfig,
    choose_strategy,
    fp8_gemm_config,
    fp8_strategy,
    gemm_config,
    quant_config,
    shared_memory_limit,
)

H100 = (9, 0)
_MiB = 1024 * 1024


def test_w8a16_follows_the_16_bit_rule_and_w8a8_has_one_strategy_per_rank():
    for m, r in [(1, 4), (256, 32), (32760, 32), (32760, 128), (8, 0)]:
        assert fp8_strategy(m, 5120, 5120, r, 2, H100, "w8a16") == choose_strategy(m, 5120, 5120, r, 2, H100)
        assert fp8_strategy(m, 5120, 5120, r, 2, H100, "w8a8") == ("plain" if r == 0 else "shrink_expand")
    with pytest.raises(ValueError, match="unknown FP8 mode 'int8'"):
        fp8_strategy(1, 16, 16, 4, 2, H100, "int8")


def test_w8a8_tiles_take_128_wide_k_steps_where_they_fit():
    g = fp8_gemm_config(32760, 15360, 5120, 32, H100, "shrink_expand", "w8a8")
    assert (g.block_m, g.block_n, g.block_k, g.num_stages) == (128, 256, 128, 3)
    assert fp8_gemm_config(32, 5120, 5120, 32, H100, "shrink_expand", "w8a8").block_m == 64
    # W8A16 runs the 16-bit MMA: the 16-bit tiles, except on sm_80, which converts bytes
    # in registers and spilled at 64-wide K steps (audit).
    for strategy in ("plain", "shrink_expand", "fused"):
        assert fp8_gemm_config(32760, 5120, 5120, 32, H100, strategy, "w8a16") == gemm_config(
            32760, 5120, 5120, 32, H100, strategy)  # fmt: skip
        assert fp8_gemm_config(256, 5120, 5120, 32, (8, 0), strategy, "w8a16").block_k == 32


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (8, 9), (9, 0), (12, 0), None])
def test_fp8_tiles_fit_the_shared_memory_of_each_arch(capability):
    limit = shared_memory_limit(capability)
    for m, r in [(32, 4), (32760, 32), (32760, 128), (256, 64)]:
        g = fp8_gemm_config(m, 5120, 5120, r, capability, "shrink_expand", "w8a8")
        assert (g.block_m + g.block_n) * g.block_k * g.num_stages <= limit, g  # 1-byte operands
        for strategy in ("plain", "shrink_expand", "fused"):
            g = fp8_gemm_config(m, 5120, 5120, r, capability, strategy, "w8a16")
            assert (g.block_m * 2 + g.block_n) * g.block_k * g.num_stages <= limit, (strategy, g)
        q = quant_config(m, 5120, r, 2, capability)
        assert (q.block_m + q.block_r) * q.block_k * 2 * q.num_stages <= limit, q


def test_quantize_pass_grid_keeps_the_reread_in_half_the_l2():
    """H100 (132 SMs, 50 MB L2), bf16, 32-row blocks: the numbers of heuristics.py."""
    programs = {k: quant_config(32760, k, 32, 2, H100, 132, 50 * _MiB).programs for k in (3072, 5120, 13824)}
    assert programs == {3072: 132, 5120: 80, 13824: 66}
    for k, p in programs.items():
        in_flight = p * 32 * k * 2
        # Under half the L2 unless that would leave more than half the SMs idle.
        assert in_flight <= 25 * _MiB or p == 132 // 2, (k, in_flight)
    # bytes in flight: 6 stages of 128-wide K steps at rank 16 on sm_90 (4 gave 2.6 MB, ~H100's
    # bandwidth x latency product with no headroom)
    q = quant_config(32760, 5120, 16, 2, H100, 132, 50 * _MiB)
    assert (q.block_k, q.num_stages) == (128, 6) and q.programs * q.num_stages * 32 * q.block_k * 2 >= 3.9 * 10**6
    assert quant_config(1, 5120, 32, 2, H100, 132, 50 * _MiB).programs == 1  # never more programs than blocks
    assert quant_config(32760, 5120, 32, 2, H100, 16, 50 * _MiB).programs == 16  # a small GPU: all its SMs


def test_quantize_pass_holds_the_whole_rank_up_to_128():
    assert [quant_config(4096, 5120, r, 2, H100).block_r for r in (0, 1, 16, 48, 128, 200)] == [16, 16, 16, 64, 128, 128]
    assert QUANT_MAX_RANK == 128
    with pytest.raises(ValueError, match="QuantConfig.block_k must be a power of two"):
        QuantConfig(32, 48, 16, 4, 4, 4)
    with pytest.raises(ValueError, match="invalid programs"):
        QuantConfig(32, 64, 16, 0, 4, 4)
