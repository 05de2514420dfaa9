"""attach / Adapters on tiny real diffusers models, against an independent merged-weights
reference (tests/helpers/merged.py)."""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.errors import LoRAMismatchError, VidloraError
from vidlora.model import inventory
from vidlora.runtime.unit import FusedAway, LoRALinear
from vidlora.app.tiny import tiny_transformer, tiny_transformer_inputs

from helpers.models import linear_paths, random_lora, run, state_snapshot
from helpers.merged import merged_stack

WAN_DELTAS = [
    "blocks.0.norm2.weight",
    "blocks.0.norm2.bias",
    "blocks.1.scale_shift_table",
    "blocks.0.attn1.to_q.bias",
    "blocks.2.attn2.to_k.bias",
    "blocks.1.attn1.norm_q.weight",
    "patch_embedding.weight",
    "scale_shift_table",
    "proj_out.bias",
]
HUNYUAN_DELTAS = [
    "transformer_blocks.0.attn.to_q.bias",
    "single_transformer_blocks.1.proj_out.bias",
    "transformer_blocks.1.norm1.linear.bias",
    "x_embedder.proj.weight",
]


def _family(model):
    return inventory(model).family


def _lora(model, seed, deltas=(), **kw):
    paths = linear_paths(model) + kw.pop("extra_paths", [])
    return random_lora(model, seed, _family(model), paths=paths, deltas=list(deltas), **kw)


@pytest.fixture(params=["wan-t2v", "wan-i2v", "hunyuan-t2v"])
def kind(request):
    return request.param


def _deltas_for(kind):
    return WAN_DELTAS if kind.startswith("wan") else HUNYUAN_DELTAS


def _extra_paths(kind):
    # a non-block Linear: patched on demand when a LoRA targets it
    return ["condition_embedder.time_proj"] if kind.startswith("wan") else ["proj_out"]


def test_one_and_three_adapters_match_merged_reference(kind):
    model = tiny_transformer(kind, seed=0)
    inputs = tiny_transformer_inputs(kind)
    a = _lora(model, 1, _deltas_for(kind), extra_paths=_extra_paths(kind), name="a", alpha=2.0)
    b = _lora(model, 2, name="b", rank=3)
    c = _lora(model, 3, _deltas_for(kind)[:2], name="c", rank=8, alpha=16.0)
    ref1 = run(merged_stack(model, [(a, 0.8)]), inputs)
    ref3 = run(merged_stack(model, [(a, 0.8), (b, -0.5), (c, 1.3)]), inputs)
    base = run(model, inputs)

    h = vidlora.attach(model)
    assert torch.allclose(run(model, inputs), base, atol=1e-5, rtol=1e-5)
    h.add(a, weight=0.8)
    out1 = run(model, inputs)
    assert (out1 - base).abs().max() > 1e-2  # the LoRA does something
    torch.testing.assert_close(out1, ref1, atol=2e-5, rtol=1e-4)
    h.add(b, weight=-0.5)
    h.add(c, weight=1.3)
    assert h.names == ("a", "b", "c")
    torch.testing.assert_close(run(model, inputs), ref3, atol=2e-5, rtol=1e-4)


def test_order_does_not_change_the_result():
    kind = "wan-i2v"
    inputs = tiny_transformer_inputs(kind)
    outs = []
    for order in ((0, 1, 2), (2, 0, 1)):
        model = tiny_transformer(kind, seed=0)
        loras = [_lora(model, s, WAN_DELTAS[:3], name=f"l{s}", rank=2 + s) for s in (1, 2, 3)]
        h = vidlora.attach(model)
        for i in order:
            h.add(loras[i], weight=0.5 + 0.25 * i)
        outs.append(run(model, inputs))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_set_weight_disable_enable_remove_and_detach_bit_exact(kind):
    model = tiny_transformer(kind, seed=0)
    inputs = tiny_transformer_inputs(kind)
    before_state = state_snapshot(model)
    base = run(model, inputs)
    a = _lora(model, 1, _deltas_for(kind), name="a")
    b = _lora(model, 2, _deltas_for(kind)[:1], name="b", rank=5)
    h = vidlora.attach(model)
    h.add(a, weight=1.0)
    h.add(b, weight=0.7)

    h.set_weight("a", -0.4)
    torch.testing.assert_close(
        run(model, inputs), run(merged_stack(model_ref := tiny_transformer(kind, seed=0), [(a, -0.4), (b, 0.7)]), inputs),
        atol=2e-5, rtol=1e-4,
    )
    h.disable("b")
    torch.testing.assert_close(run(model, inputs), run(merged_stack(model_ref, [(a, -0.4)]), inputs), atol=2e-5, rtol=1e-4)
    h.enable("b")
    h.remove("a")
    assert h.names == ("b",)
    torch.testing.assert_close(run(model, inputs), run(merged_stack(model_ref, [(b, 0.7)]), inputs), atol=2e-5, rtol=1e-4)
    h.remove("b")
    torch.testing.assert_close(run(model, inputs), base, atol=1e-5, rtol=1e-5)

    h.detach()
    assert not any(isinstance(m, (LoRALinear, FusedAway)) for m in model.modules())
    after = state_snapshot(model)
    assert after.keys() == before_state.keys()
    for k in before_state:
        assert torch.equal(after[k], before_state[k]), k
    assert torch.equal(run(model, inputs), base)  # bit for bit
    with pytest.raises(VidloraError, match="detached"):
        h.add(a)


def test_base_weights_keep_their_storage():
    model = tiny_transformer("wan-i2v", seed=0)
    h = vidlora.attach(model)
    units = [m for m in model.modules() if isinstance(m, LoRALinear)]
    ptrs = {id(u): u.weight.data_ptr() for u in units}
    a = _lora(model_ref := tiny_transformer("wan-i2v", seed=0), 1, name="a")
    del model_ref
    h.add(a)
    h.set_weight("a", 0.3)
    h.disable("a")
    h.remove("a")
    assert all(u.weight.data_ptr() == ptrs[id(u)] for u in units)


def test_wan_siblings_are_fused_once():
    model = tiny_transformer("wan-i2v", seed=0)
    n_params_before = sum(p.numel() for p in model.parameters())
    vidlora.attach(model)
    attn1, attn2 = model.blocks[0].attn1, model.blocks[0].attn2
    assert isinstance(attn1.to_qkv, LoRALinear) and attn1.to_qkv.out_features == 3 * 24
    assert isinstance(attn2.to_kv, LoRALinear) and isinstance(attn2.to_added_kv, LoRALinear)
    assert isinstance(attn2.to_q, LoRALinear) and len(attn2.to_q.parts) == 1
    assert isinstance(attn1.to_q, FusedAway) and attn2.add_k_proj is not None
    # the concatenated weight is held once: same parameter count as before
    assert sum(p.numel() for p in model.parameters()) == n_params_before
    text = str(model)
    assert "LoRALinear(" in text and "fused into blocks.0.attn1.to_qkv[0:24]" in text


def test_unfused_attach_matches_fused():
    inputs = tiny_transformer_inputs("wan-i2v")
    outs = []
    for fuse in (True, False):
        model = tiny_transformer("wan-i2v", seed=0)
        lora = _lora(model, 4, WAN_DELTAS, name="x")
        h = vidlora.attach(model, fuse=fuse)
        h.add(lora, weight=0.9)
        outs.append(run(model, inputs))
        assert any(len(u.parts) > 1 for u in model.modules() if isinstance(u, LoRALinear)) == fuse
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_blocks_limit_the_adapter():
    kind = "hunyuan-t2v"  # index runs over double (0, 1) then single (2, 3) blocks
    model = tiny_transformer(kind, seed=0)
    inputs = tiny_transformer_inputs(kind)
    lora = _lora(model, 5, HUNYUAN_DELTAS, name="x")
    # blocks 1..2 = double block 1 and single block 0; parts outside the DiT blocks (the
    # token refiner here) are kept
    dropped = ("transformer_blocks.0.", "single_transformer_blocks.1.")
    keep = {p: lr for p, lr in lora.modules.items() if not p.startswith(dropped)}
    keep_deltas = {p: d for p, d in lora.deltas.items() if not p.startswith(dropped)}
    assert any(p.startswith("context_embedder.token_refiner") for p in keep)
    sub = random_lora(model, 0, _family(model), paths=[])
    sub.modules, sub.deltas = keep, keep_deltas
    ref = run(merged_stack(model, [(sub, 0.6)]), inputs)
    h = vidlora.attach(model)
    h.add(lora, weight=0.6, blocks=range(1, 3))
    torch.testing.assert_close(run(model, inputs), ref, atol=2e-5, rtol=1e-4)
    with pytest.raises(VidloraError, match="out of range"):
        h.add(lora, name="y", blocks=[7])


def test_failed_add_leaves_the_model_as_it_was():
    model = tiny_transformer("wan-t2v", seed=0)
    inputs = tiny_transformer_inputs("wan-t2v")
    good = _lora(model, 1, WAN_DELTAS, name="good")
    bad = _lora(model, 2, WAN_DELTAS, name="bad")
    h = vidlora.attach(model)
    h.add(good, weight=0.5)
    state = state_snapshot(model)
    stacks = {n: (m.lora_a.clone(), m.lora_b.clone(), m.lora_scale.clone()) for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    out = run(model, inputs)
    # corrupt one module's shape at the end of the file: validation must catch it first
    last = sorted(bad.modules)[-1]
    bad.modules[last].up = torch.randn(bad.modules[last].up.shape[0] + 1, bad.modules[last].rank)
    with pytest.raises(LoRAMismatchError):
        h.add(bad)
    assert h.names == ("good",)
    for n, m in model.named_modules():
        if isinstance(m, LoRALinear):
            for before, now in zip(stacks[n], (m.lora_a, m.lora_b, m.lora_scale)):
                assert torch.equal(before, now), n
    after = state_snapshot(model)
    assert all(torch.equal(after[k], state[k]) for k in state)
    assert torch.equal(run(model, inputs), out)


def test_unmatched_key_is_an_error_listing_it():
    model = tiny_transformer("wan-t2v", seed=0)
    lora = _lora(model, 1, name="x")
    h = vidlora.attach(model)
    lora.modules["blocks.9.attn1.to_q"] = lora.modules["blocks.0.attn1.to_q"]
    with pytest.raises(LoRAMismatchError, match=r"blocks\.9\.attn1\.to_q"):
        h.add(lora)
    assert h.names == ()


def test_stack_grows_in_buckets_and_fills_in_place():
    model = tiny_transformer("wan-t2v", seed=0)
    paths = linear_paths(model)
    a, b, c, d = (
        _lora(model, s, name=n, rank={p: r for p in paths}) for s, n, r in ((1, "a", 4), (2, "b", 8), (3, "c", 8), (4, "d", 24))
    )
    h = vidlora.attach(model)
    unit = model.blocks[0].ffn.net[2]
    assert isinstance(unit, LoRALinear)
    h.add(a)
    assert unit.stack.stored_rank == 16 and unit.stack.used_rank == 4
    ptr = unit.lora_a.data_ptr()
    h.add(b)  # fits the padding: written in place
    assert unit.stack.stored_rank == 16 and unit.stack.used_rank == 12 and unit.lora_a.data_ptr() == ptr
    h.add(c)
    assert unit.stack.stored_rank == 32 and unit.stack.used_rank == 20
    ptr = unit.lora_a.data_ptr()
    h.remove("b")  # a swap: the freed rows are reused in place, nothing reallocated
    assert unit.stack.stored_rank == 32 and unit.stack.used_rank == 12 and unit.lora_a.data_ptr() == ptr
    assert [s.name for s in unit.stack.slots] == ["a", "c"] and unit.stack.slots[1].start == 4
    assert not unit.lora_scale[12:].any()  # freed rows sit behind a zero scale (test_stack_reuse.py)
    h.add(b)
    assert unit.stack.stored_rank == 32 and unit.lora_a.data_ptr() == ptr
    h.add(d)
    assert unit.stack.stored_rank == 48
    h.remove("d")
    h.remove("c")  # 12 of 48 rows in use: less than half, so the memory is given back
    assert unit.stack.stored_rank == 16 and unit.stack.used_rank == 12
    h.remove("a")
    h.remove("b")
    assert unit.stack.stored_rank == 0 and unit.lora_a.numel() == 0


def test_attach_refuses_peft_and_foreign_fusion():
    model = tiny_transformer("wan-t2v", seed=0)
    model.blocks[0].attn1.fuse_projections()
    with pytest.raises(VidloraError, match="fused projections"):
        vidlora.attach(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())

    pytest.importorskip("peft")
    from peft import LoraConfig

    model = tiny_transformer("wan-t2v", seed=0)
    model.add_adapter(LoraConfig(r=2, target_modules=["to_q"]), adapter_name="x")
    with pytest.raises(VidloraError, match="PEFT"):
        vidlora.attach(model)


def test_attach_twice_is_an_error_and_detach_allows_again():
    model = tiny_transformer("wan-t2v", seed=0)
    h = vidlora.attach(model)
    with pytest.raises(VidloraError, match="already attached"):
        vidlora.attach(model)
    h.detach()
    vidlora.attach(model).detach()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models(dtype):
    kind = "wan-i2v"
    model32 = tiny_transformer(kind, seed=0)
    lora = _lora(model32, 1, WAN_DELTAS, name="a")
    ref = run(merged_stack(model32, [(lora, 0.7)]), tiny_transformer_inputs(kind))
    base32 = run(model32, tiny_transformer_inputs(kind))
    model = tiny_transformer(kind, seed=0, dtype=dtype)
    h = vidlora.attach(model)
    inputs = tiny_transformer_inputs(kind, dtype=dtype)
    base = run(model, inputs).float()
    h.add(lora, weight=0.7)
    out = run(model, inputs).float()
    # judge the LoRA *effect* (output with minus without) against the fp32 reference's
    effect, ref_effect = out - base, ref - base32
    cos = torch.nn.functional.cosine_similarity(effect.flatten(), ref_effect.flatten(), dim=0)
    assert cos > 0.99, float(cos)
    # with the LoRA, the half model is as far from the fp32 reference as it is without
    # one: the adapter adds no error beyond the dtype's own rounding
    err_lora = (out - ref).norm() / ref.norm()
    err_base = (base - base32).norm() / base32.norm()
    assert err_lora < 1.5 * err_base + 1e-4, (float(err_lora), float(err_base))
    unit = model.blocks[0].attn1.to_qkv
    assert unit.lora_a.dtype == dtype and unit.lora_scale.dtype == torch.float32


def test_schedule_by_set_step_matches_manual_weights():
    kind = "wan-t2v"
    model = tiny_transformer(kind, seed=0)
    inputs = tiny_transformer_inputs(kind)
    lora = _lora(model, 1, WAN_DELTAS, name="a")
    h = vidlora.attach(model)
    h.add(lora, weight=[1.0, 0.5, -0.25])
    sched = []
    for step in range(6):
        h.set_step(step, 6)
        sched.append(run(model, inputs))
    h.set_weight("a", lambda step, n: 1.0 - step / n)
    h.set_step(3, 6)
    assert h.current_weight("a") == pytest.approx(0.5)
    lam = run(model, inputs)
    manual = []
    for w in (1.0, 1.0, 0.5, 0.5, -0.25, -0.25):
        h.set_weight("a", w)
        manual.append(run(model, inputs))
    for s, m in zip(sched, manual):
        torch.testing.assert_close(s, m, atol=0, rtol=0)
    torch.testing.assert_close(lam, manual[2])


def test_bad_weights_are_clear_errors():
    model = tiny_transformer("wan-t2v", seed=0)
    lora = _lora(model, 1, name="a")
    h = vidlora.attach(model)
    for bad in (float("nan"), "0.5", [], [1.0, None], True):
        with pytest.raises(VidloraError):
            h.add(lora, weight=bad)
    assert h.names == ()
    h.add(lora)
    with pytest.raises(VidloraError, match="no adapter named 'zz'"):
        h.set_weight("zz", 1.0)
    with pytest.raises(VidloraError, match="already added"):
        h.add(lora)


def test_report_names_what_is_patched():
    model = tiny_transformer("wan-i2v", seed=0)
    lora = _lora(model, 1, WAN_DELTAS, name="a")
    h = vidlora.attach(model)
    h.add(lora, weight=0.5)
    rep = h.report()
    m = rep["models"]["transformer"]
    assert m["fused_units"] == 3 * 3  # qkv, kv, added kv in each of 3 blocks
    assert m["patched_linears"] == 3 * 12
    assert m["base_dtype"] == "float32" and m["base_bytes"] > 0
    (a,) = rep["adapters"]
    assert a["name"] == "a" and a["weight"] == "0.5" and a["deltas"] == len(WAN_DELTAS)


def test_report_prints_as_text_and_detach_twice_is_harmless():
    model = tiny_transformer("wan-i2v", seed=0)
    lora = _lora(model, 1, WAN_DELTAS, name="a")
    h = vidlora.attach(model)
    h.add(lora, weight=[1.0, 0.5], blocks=[0, 1])
    text = str(h.report())
    assert "36 Linears in 24 units (9 fused)" in text and "a: weight schedule[1,0.5]" in text and "blocks 0-1" in text
    h.detach()
    h.detach()
    with pytest.raises(VidloraError, match="detached"):
        h.report()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_attach_to_a_missing_gpu_is_a_clear_error_and_changes_nothing():
    model = tiny_transformer("wan-t2v", seed=0)
    with pytest.raises(VidloraError, match="no CUDA GPU"):
        vidlora.attach(model, fp8=True, device="cuda")
    assert not any(isinstance(m, LoRALinear) for m in model.modules())


def test_adjacent_fusion_groups_are_adopted_without_a_copy():
    """q/k/v weights that already are consecutive rows of one buffer (a prefused load, or
    what detach gives back) become the fused weight as is; outputs and detach unchanged."""
    model = tiny_transformer("wan-t2v", seed=0)
    inputs = tiny_transformer_inputs("wan-t2v")
    ref = run(model, inputs)
    attn = model.blocks[0].attn1
    lins = [attn.to_q, attn.to_k, attn.to_v]
    buf = torch.cat([lin.weight.detach() for lin in lins])
    start = 0
    for lin in lins:
        lin.weight.data = buf[start : start + lin.out_features]
        start += lin.out_features
    before = state_snapshot(model)
    h = vidlora.attach(model)
    assert attn.to_qkv.weight.data_ptr() == buf.data_ptr()  # adopted: no copy
    cross = model.blocks[0].attn2.to_kv.weight  # separate tensors: concatenated into a new buffer
    torch.testing.assert_close(run(model, inputs), ref, atol=0, rtol=0)
    h.detach()
    after = state_snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # detach hands back row views of one buffer, so a second attach copies nothing either
    h2 = vidlora.attach(model)
    assert model.blocks[0].attn2.to_kv.weight.data_ptr() == cross.data_ptr()
    h2.detach()
