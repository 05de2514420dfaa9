"""The launcher's strategy rule, tile heuristics, tuned-config data and tuner selection."""

from __future__ import annotations

import json

import pytest
import torch

from vidlora.kernels import tuned_configs as tuned
from vidlora.kernels.heuristics import (
    FUSED_MAX_RANK,
    GemmConfig,
    ShrinkConfig,
    choose_strategy,
    gemm_config,
    hardware_model,
    pad_rank,
    shared_memory_limit,
    shrink_config,
    strategy_costs,
)
from vidlora.kernels.lora_gemm import plan_launch
from vidlora.kernels.tuner import gemm_candidates, shrink_candidates, tune_case

H100 = (9, 0)


def test_rank_zero_is_plain_everywhere():
    for m in (1, 256, 32760):
        assert choose_strategy(m, 5120, 5120, 0, 2, H100) == "plain"


def test_video_token_counts_use_shrink_expand_and_small_m_uses_fused():
    # Documented crossover for K = N = 5120, R = 32 on H100: ~630 rows.
    assert choose_strategy(32760, 5120, 5120, 32, 2, H100) == "shrink_expand"
    assert choose_strategy(8192, 15360, 5120, 32, 2, H100) == "shrink_expand"
    assert choose_strategy(256, 5120, 5120, 32, 2, H100) == "fused"
    assert choose_strategy(1, 5120, 5120, 4, 2, H100) == "fused"
    crossover = next(m for m in range(64, 4096, 16) if choose_strategy(m, 5120, 5120, 32, 2, H100) != "fused")
    assert 500 <= crossover <= 800


def test_cost_model_numbers_match_the_docstring():
    hw = hardware_model(H100)
    costs = strategy_costs(1, 5120, 5120, 32, 256, 2, hw)
    assert costs["fused"] == pytest.approx(20 * 2 * 5120 * 32 / 700e12)  # 9.4 ns per row
    assert costs["fused"] * 1e9 == pytest.approx(9.36, abs=0.01)
    assert (costs["shrink_expand"] - hw.launch_s) * 1e9 == pytest.approx(3.1, abs=0.05)


def test_large_ranks_never_use_the_fused_kernel():
    assert choose_strategy(1, 5120, 5120, FUSED_MAX_RANK + 1, 2, H100) == "shrink_expand"


def test_unknown_architectures_fall_back_to_the_closest_older_one():
    assert hardware_model((8, 6)) == hardware_model((8, 0))
    assert hardware_model((10, 0)) == hardware_model((9, 0))
    assert hardware_model(None) == hardware_model((8, 0))


def test_pad_rank_and_configs():
    assert [pad_rank(r) for r in (0, 1, 16, 17, 48, 100)] == [16, 16, 16, 32, 64, 128]
    assert pad_rank(100, 32) == 32
    assert gemm_config(32760, 5120, 5120, 128, H100, "shrink_expand").block_r == 32
    assert gemm_config(200, 5120, 5120, 48, H100, "fused").block_r == 64
    assert gemm_config(200, 5120, 5120, 32, (8, 0), "fused").block_n == 128
    with pytest.raises(ValueError, match="block_k must be a power of two"):
        GemmConfig(64, 64, 48, 16, 8, 4, 3)


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (8, 9), (9, 0), (12, 0), None])
def test_heuristic_tiles_fit_the_shared_memory_of_each_arch(capability):
    limit = shared_memory_limit(capability)
    for m, r in [(32, 4), (32760, 32), (32760, 128), (256, 64)]:
        for strategy in ("plain", "shrink_expand", "fused"):
            g = gemm_config(m, 5120, 5120, r, capability, strategy)
            assert (g.block_m + g.block_n) * g.block_k * 2 * g.num_stages <= limit, (strategy, g)
        s = shrink_config(m, 5120, r, capability)
        assert (s.block_m + s.block_r) * s.block_k * 2 * s.num_stages <= limit, s


def test_plan_launch_rejects_strategies_that_do_not_apply():
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="'plain' is for R = 0 only"):
        plan_launch(8, 16, 16, 4, torch.float16, cpu, strategy="plain")
    with pytest.raises(ValueError, match="R <= 64"):
        plan_launch(8, 16, 16, 100, torch.float16, cpu, strategy="fused")
    with pytest.raises(ValueError, match="block_r >= R = 40"):
        plan_launch(8, 16, 16, 40, torch.float16, cpu, strategy="fused", gemm=GemmConfig(32, 32, 16, 32, 2, 4, 2))
    with pytest.raises(ValueError, match="unknown strategy 'split'"):
        plan_launch(8, 16, 16, 4, torch.float16, cpu, strategy="split")


def test_tuned_config_round_trip_and_lookup(tmp_path):
    g = GemmConfig(128, 256, 64, 32, 8, 8, 3)
    s = ShrinkConfig(64, 128, 32, 4, 4)
    e = tuned.entry_json(torch.bfloat16, 15360, 5120, 32, 32760, "shrink_expand", g, s, 2.9)
    path = tuned.config_path("NVIDIA H100 80GB HBM3", tmp_path)
    assert path.name == "nvidia-h100-80gb-hbm3.json"
    path.write_text(json.dumps({"device": "NVIDIA H100 80GB HBM3", "entries": [e]}))
    entries = tuned.load_tuned(path)
    # Same buckets: rank 17..32 and M 16385..32768 share the entry.
    assert tuned.lookup(entries, 32760, 15360, 5120, 20, torch.bfloat16) == ("shrink_expand", g, s)
    assert tuned.lookup(entries, 20000, 15360, 5120, 32, torch.bfloat16) is not None
    assert tuned.lookup(entries, 32760, 15360, 5120, 33, torch.bfloat16) is None
    assert tuned.lookup(entries, 32760, 15360, 5120, 32, torch.float16) is None
    assert tuned.lookup(entries, 40000, 15360, 5120, 32, torch.bfloat16) is None


def test_malformed_tuned_config_is_a_precise_error(tmp_path):
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"entries": [{"dtype": "bfloat16", "n": 1, "k": 1, "strategy": "fused"}]}))
    with pytest.raises(ValueError, match="gpu.json entry 0: malformed tuned config"):
        tuned.load_tuned(path)
    path2 = tmp_path / "gpu2.json"
    path2.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="must be an object with an 'entries' list"):
        tuned.load_tuned(path2)


def test_no_tuned_file_means_the_heuristic():
    assert tuned.tuned_plan(torch.device("cpu"), 32760, 5120, 5120, 32, torch.bfloat16) is None
    assert tuned.load_tuned(tuned.CONFIG_DIR / "no-such-gpu.json") == {}


def test_tuner_picks_the_fastest_candidate_within_smem():
    limit = 99 * 1024
    assert all(
        (c.block_m * c.block_k + c.block_k * c.block_n) * 2 * c.num_stages <= limit
        for c in gemm_candidates(32, "shrink_expand", limit)
    )
    assert all(c.block_r == 64 for c in gemm_candidates(48, "fused", limit))

    # Fake timer: fused is fast only with 128-wide N tiles; the shrink prefers 32 rows.
    def time_ms(strategy, g, s):
        if strategy == "fused":
            return 1.0 if g.block_n == 128 and g.num_warps == 4 else 3.0
        return 2.0 + (0 if s.block_m == 32 else 1)

    strategy, g, s, ms = tune_case(256, 5120, 5120, 32, H100, limit, time_ms)
    assert (strategy, g.block_n, g.num_warps, s, ms) == ("fused", 128, 4, None, 1.0)
    strategy, g, s, ms = tune_case(256, 5120, 5120, 100, H100, limit, time_ms)
    assert strategy == "shrink_expand" and s.block_m == 32 and ms == 2.0
    assert all(s.block_r == 128 for s in shrink_candidates(100, limit))
