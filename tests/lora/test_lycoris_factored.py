"""LyCORIS LoHa / LoKr stay factored at read time: memory in proportion to the file, the
delta tensor-like (shape, numel, ``@ x``) without the matrix, exact row cuts of fused
originals, the producers' alpha rules (ai-toolkit's inf alpha on full-rank LoKr), and a
Wan 14B-shaped LoKr read and inspected under an address-space limit of 3 GB."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers.paths import REPO_ROOT
from helpers.writers import write_raw
from vidlora.errors import LoRAFormatError
from vidlora.lora import read_lora
from vidlora.lora.factored import FactoredDelta, KronDelta, LoHaDelta


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _rnd(g, *shape):
    return torch.randn(*shape, generator=g) * 0.3


def test_deltas_stay_factored_and_act_like_tensors(tmp_path):
    g = _g(0)
    f = {
        # LoHa r 3 on q (24 x 24), LoKr kron([4, 6], [6, 4] = u v, rank 2) on ffn.0 (24 -> 40... 4*10 x 6*4)
        "lora_unet_blocks_0_self_attn_q.hada_w1_a": _rnd(g, 24, 3), "lora_unet_blocks_0_self_attn_q.hada_w1_b": _rnd(g, 3, 24),
        "lora_unet_blocks_0_self_attn_q.hada_w2_a": _rnd(g, 24, 3), "lora_unet_blocks_0_self_attn_q.hada_w2_b": _rnd(g, 3, 24),
        "lora_unet_blocks_0_self_attn_q.alpha": torch.tensor(1.5),
        "lora_unet_blocks_0_ffn_0.lokr_w1": _rnd(g, 4, 6),
        "lora_unet_blocks_0_ffn_0.lokr_w2_a": _rnd(g, 10, 2), "lora_unet_blocks_0_ffn_0.lokr_w2_b": _rnd(g, 2, 4),
        "lora_unet_blocks_0_ffn_0.alpha": torch.tensor(4.0),
    }  # fmt: skip
    lora = read_lora(write_raw(tmp_path / "lyco.safetensors", f))
    loha, lokr = lora.deltas["blocks.0.attn1.to_q.weight"], lora.deltas["blocks.0.ffn.net.0.proj.weight"]
    assert isinstance(loha, LoHaDelta) and isinstance(lokr, KronDelta) and not lora.modules
    t = {k.split(".", 1)[1]: v.double() for k, v in f.items() if k.startswith("lora_unet_blocks_0_self_attn_q")}
    dense_loha = 0.5 * (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"])
    w2 = f["lora_unet_blocks_0_ffn_0.lokr_w2_a"].double() @ f["lora_unet_blocks_0_ffn_0.lokr_w2_b"].double()
    dense_lokr = 2.0 * torch.kron(f["lora_unet_blocks_0_ffn_0.lokr_w1"].double(), w2)
    for delta, dense in ((loha, dense_loha), (lokr, dense_lokr)):
        assert tuple(delta.shape) == tuple(dense.shape) and delta.numel() == dense.numel() and delta.ndim == 2
        assert delta.stored_numel < dense.numel()
        x = torch.randn(dense.shape[1], 5, generator=g)
        torch.testing.assert_close((delta @ x).double(), dense @ x.double(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close((delta @ x[:, 0]).double(), dense @ x[:, 0].double(), atol=1e-5, rtol=1e-5)
        down, up = delta.low_rank()
        assert down.shape[0] == delta.lora_rank
        torch.testing.assert_close(delta.scale * (up.double() @ down.double()), dense, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(delta.to_dense().double(), dense, atol=1e-6, rtol=1e-6)
    assert loha.lora_rank == 9 and lokr.lora_rank == 4 * 2  # r1 r2; min(4, 6) x rank(w2)


@pytest.mark.parametrize("form", ["lokr-full", "lokr-w1-factored", "loha"])
def test_fused_hunyuan_originals_cut_exactly(tmp_path, form):
    """Hunyuan's fused img_attn_qkv (60 x 20 at width 20) cut into to_q/to_k/to_v: a LoKr
    with W1 [4, 2] has 15-row blocks, so the 20-row pieces straddle them; the final adaLN
    (40 x 20) trades its two row halves."""
    g = _g(1)
    keys, dense = {}, {}
    for module, rows in (("double_blocks_0_img_attn_qkv", 60), ("final_layer_adaLN_modulation_1", 40)):
        k = f"lora_unet_{module}"
        if form == "loha":
            w = [_rnd(g, rows, 2), _rnd(g, 2, 20), _rnd(g, rows, 2), _rnd(g, 2, 20)]
            keys.update({f"{k}.hada_w{i}_{s}": w[2 * (i - 1) + (s == "b")] for i in (1, 2) for s in "ab"})
            d = (w[0].double() @ w[1].double()) * (w[2].double() @ w[3].double())
        else:
            w1 = (_rnd(g, 4, 1), _rnd(g, 1, 2)) if form == "lokr-w1-factored" else _rnd(g, 4, 2)
            w2 = _rnd(g, rows // 4, 10)
            if isinstance(w1, tuple):
                keys.update({f"{k}.lokr_w1_a": w1[0], f"{k}.lokr_w1_b": w1[1], f"{k}.alpha": torch.tensor(1.0)})
                w1 = w1[0] @ w1[1]
            else:
                keys[f"{k}.lokr_w1"] = w1
            keys[f"{k}.lokr_w2"] = w2
            d = torch.kron(w1.double(), w2.double())
        dense[module] = d
    lora = read_lora(write_raw(tmp_path / "hy.safetensors", keys))
    qkv = dense["double_blocks_0_img_attn_qkv"]
    for i, piece in enumerate(("to_q", "to_k", "to_v")):
        delta = lora.deltas[f"transformer_blocks.0.attn.{piece}.weight"]
        assert isinstance(delta, FactoredDelta)
        torch.testing.assert_close(delta.to_dense().double(), qkv[20 * i : 20 * (i + 1)], atol=1e-6, rtol=1e-6)
        x = torch.randn(3, 20, generator=g)
        torch.testing.assert_close(delta.apply(x).double(), x.double() @ qkv[20 * i : 20 * (i + 1)].T, atol=1e-5, rtol=1e-5)
        down, up = delta.low_rank()
        torch.testing.assert_close(delta.scale * up.double() @ down.double(), qkv[20 * i : 20 * (i + 1)], atol=1e-6, rtol=1e-6)
    ada = dense["final_layer_adaLN_modulation_1"]
    swapped = torch.cat([ada[20:], ada[:20]])
    torch.testing.assert_close(lora.deltas["norm_out.linear.weight"].to_dense().double(), swapped, atol=1e-6, rtol=1e-6)


def _full_rank_lokr(dtype, alpha):
    g = _g(2)
    return {
        "diffusion_model.blocks.0.self_attn.q.lokr_w1": _rnd(g, 4, 4).to(dtype),
        "diffusion_model.blocks.0.self_attn.q.lokr_w2": _rnd(g, 6, 6).to(dtype),
        "diffusion_model.blocks.0.self_attn.q.alpha": torch.tensor(alpha).to(dtype),
    }


def test_ai_toolkit_inf_alpha_on_full_rank_lokr_reads_with_scale_1(tmp_path):
    tensors = _full_rank_lokr(torch.float16, 9999999999.0)
    assert torch.isinf(tensors["diffusion_model.blocks.0.self_attn.q.alpha"])  # what fp16 makes of it
    lora = read_lora(write_raw(tmp_path / "aitk.safetensors", tensors))
    delta = lora.deltas["blocks.0.attn1.to_q.weight"]
    assert delta.scale == 1.0
    w1, w2 = (tensors[f"diffusion_model.blocks.0.self_attn.q.lokr_w{n}"].double() for n in "12")
    torch.testing.assert_close(delta.to_dense().double(), torch.kron(w1, w2), atol=1e-6, rtol=1e-6)
    assert "LoKr" in lora.scheme and "full-tensor" not in lora.scheme


@pytest.mark.parametrize("case", ["nan-alpha-full-rank", "inf-alpha-factored", "inf-in-w1"])
def test_non_finite_values_a_rule_uses_are_refused(tmp_path, case):
    tensors = _full_rank_lokr(torch.float16, float("nan") if case == "nan-alpha-full-rank" else 9999999999.0)
    if case == "inf-alpha-factored":  # w2 factored: alpha / rank(w2) is used
        w2 = tensors.pop("diffusion_model.blocks.0.self_attn.q.lokr_w2")
        tensors["diffusion_model.blocks.0.self_attn.q.lokr_w2_a"] = w2[:, :2].contiguous()
        tensors["diffusion_model.blocks.0.self_attn.q.lokr_w2_b"] = w2[:2].contiguous()
    if case == "inf-in-w1":
        tensors["diffusion_model.blocks.0.self_attn.q.alpha"] = torch.tensor(4.0, dtype=torch.float16)
        tensors["diffusion_model.blocks.0.self_attn.q.lokr_w1"][0, 0] = float("inf")
    with pytest.raises(LoRAFormatError, match="NaN or Inf"):
        read_lora(write_raw(tmp_path / "bad.safetensors", tensors))


_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from vidlora.lora import read_lora
    from vidlora.app.inspect_report import build_report, model_inventory
    lora = read_lora(sys.argv[1])
    report = build_report(lora, model_inventory("Wan-AI/Wan2.1-T2V-14B-Diffusers"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"scheme": report["scheme"], "family": report["family"], "deltas": report["deltas"]["total"],
                      "ok": report["compatibility"]["ok"], "error": report["compatibility"]["error"],
                      "peak": peak}))
    """
)


def test_wan14b_lokr_reads_and_inspects_under_an_address_space_limit(tmp_path):
    """ai-toolkit full-rank LoKr at Wan 14B shapes, every block (400 Linears, factor 64,
    fp16, inf alpha): ~9.6 MiB of factors standing for 14.5 G delta entries (58 GB fp32)."""
    g = _g(3)
    tensors = {}
    shapes = {"self_attn.q": (5120, 5120), "self_attn.k": (5120, 5120), "self_attn.v": (5120, 5120),
              "self_attn.o": (5120, 5120), "cross_attn.q": (5120, 5120), "cross_attn.k": (5120, 5120),
              "cross_attn.v": (5120, 5120), "cross_attn.o": (5120, 5120), "ffn.0": (13824, 5120), "ffn.2": (5120, 13824)}  # fmt: skip
    for block in range(40):
        for name, (out, inp) in shapes.items():
            key = f"diffusion_model.blocks.{block}.{name}"
            tensors[f"{key}.lokr_w1"] = torch.randn(64, 64, generator=g).half()
            tensors[f"{key}.lokr_w2"] = torch.randn(out // 64, inp // 64, generator=g).half()
            tensors[f"{key}.alpha"] = torch.tensor(9999999999.0).half()
    path = write_raw(tmp_path / "wan14b_lokr.safetensors", tensors)
    size = (tmp_path / "wan14b_lokr.safetensors").stat().st_size
    assert 8 << 20 < size < 11 << 20
    limit = 3 << 30
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(limit)], capture_output=True, text=True, timeout=300,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "LoKr" in out["scheme"] and out["family"] == "wan-14b" and out["deltas"] == 400
    assert out["ok"] and out["error"] is None
    assert out["peak"] < limit
