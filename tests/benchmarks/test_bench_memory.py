"""The memory benchmark's arithmetic: the live-storage tracker, and the computed bytes of
a real-config model checked against an independent count from its inventory."""

from __future__ import annotations

import torch

from vidlora.benchmarks.memory import LiveBytes, computed_memory, cuda_like_kernels
from vidlora.benchmarks.models import SCENARIOS


def test_live_bytes_counts_new_storage_not_views_or_inplace():
    a0 = torch.ones(1000)  # made before the tracker: never counted
    with LiveBytes() as tr:
        a = a0 * 2  # 4000 B
        b = a + 1  # 8000 B live
        del a  # 4000 B
        c = b[:10]  # a view: nothing new
        b.add_(1)  # in place: nothing new
        w = a0.t()  # a view of an untracked tensor: nothing
        d = torch.empty(500)  # 4000 + 2000 B
        del b, c, d, w
        e = torch.zeros(3000)  # 12000 B, after everything else died
    assert tr.peak == 12000 and tr.now == 12000
    del e


def test_flash_like_attention_holds_no_score_matrix():
    q = torch.empty(1, 2, 4096, 64, device="meta")
    with cuda_like_kernels(), LiveBytes() as tr:
        out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert out.shape == q.shape
    # output (4096 x 64 x 2 x 4 B) + logsumexp (4096 x 2 x 4 B); a score matrix would be 134 MB
    assert tr.peak == 2 * 4096 * 64 * 4 + 2 * 4096 * 4


def test_computed_wan_1_3b_matches_an_independent_count():
    scenario = SCENARIOS["wan2.1-1.3b-480p-81f"]
    got = computed_memory(scenario)
    width, ffn, blocks = 1536, 8960, 30
    # block Linears: 8 attention projections of width^2 and the FFN pair
    linears = [(width, width)] * 8 + [(width, ffn), (ffn, width)]  # (in, out)
    fp8 = blocks * sum(k * n + 4 * n for k, n in linears)  # 1 B per weight + fp32 scale per row
    assert got["base_fp8_bytes"] == fp8
    # two rank-32 LoRAs stacked per unit (R = 64, already a multiple of 16); the fused
    # self-attn q/k/v and cross-attn k/v units hold 3 x 64 and 2 x 64 ranks
    units = [(width, 3 * width, 3), (width, 2 * width, 2), (width, width, 1), (width, width, 1), (width, width, 1),
             (width, ffn, 1), (ffn, width, 1)]  # (K, N, parts): qkv, kv, attn1 out, attn2 q, attn2 out, ffn up, down
    adapters = blocks * sum(64 * parts * (k + n) * 2 + 64 * parts * 4 for k, n, parts in units)
    assert got["adapter_bytes"] == adapters
    assert got["total_bytes"] == got["weights_bytes"] + got["input_bytes"] + got["activation_peak_bytes"] + got["lora_temp_bytes"]
    # the FFN's hidden activation (32,760 x 8960 bf16) exists twice around the GELU
    assert got["activation_peak_bytes"] >= 2 * scenario.tokens * ffn * 2
    assert got["activation_peak_bytes"] < 3 * 2 * scenario.tokens * ffn * 2
