"""Freed rank-stack rows are reused without zeroing (rank_stack.py): a remove leaves the
old adapter's finite values behind a zero scale, and the next add writes over them. The
model must then compute exactly what a model that never saw the removed adapter computes,
bit for bit, including on fused q/k/v units, whose B is block-diagonal."""

from __future__ import annotations

import copy

import pytest
import torch

import vidlora
from vidlora.app.tiny import tiny_transformer, tiny_transformer_inputs
from vidlora.errors import LoRAFormatError
from vidlora.model import inventory
from vidlora.runtime.unit import LoRALinear

from helpers.merged import merged_stack
from helpers.models import linear_paths, random_lora, run

KIND = "wan-t2v"


def _lora(model, seed, name, paths=None, rank=4):
    return random_lora(model, seed, inventory(model).family, paths=paths or linear_paths(model), name=name, rank=rank)


def _fresh(model, loras):
    """The same adapters, in order, on a copy that never held anything else."""
    m = copy.deepcopy(model)
    h = vidlora.attach(m)
    for lora, w in loras:
        h.add(lora, weight=w)
    return m


def test_a_swap_reuses_rows_and_matches_a_model_that_never_held_the_old_one():
    model = tiny_transformer(KIND, seed=0)
    inputs = tiny_transformer_inputs(KIND)
    pristine = copy.deepcopy(model)
    # a fills most of the stack, so removing b does not shrink it (which would zero the rows)
    a, b, c = _lora(model, 1, "a", rank=8), _lora(model, 2, "b", rank=4), _lora(model, 3, "c", rank=4)
    h = vidlora.attach(model)
    h.add(a, weight=0.7)
    h.add(b, weight=1.1)
    unit = model.blocks[0].attn1.to_qkv
    ptr = unit.lora_b.data_ptr()
    h.remove("b")
    assert unit.lora_b[:, unit.stack.used_rank :].any()  # the old values are still there...
    assert not unit.lora_scale[unit.stack.used_rank :].any()  # ...behind a zero scale
    assert torch.equal(run(model, inputs), run(_fresh(pristine, [(a, 0.7)]), inputs))
    h.add(c, weight=-0.6)
    assert unit.lora_b.data_ptr() == ptr  # written in place
    got = run(model, inputs)
    assert torch.equal(got, run(_fresh(pristine, [(a, 0.7), (c, -0.6)]), inputs))
    torch.testing.assert_close(got, run(merged_stack(pristine, [(a, 0.7), (c, -0.6)]), inputs), atol=2e-5, rtol=1e-4)


def test_another_part_over_stale_columns_gets_a_block_diagonal_b_again():
    """q ranks removed, then k/v ranks written into the same columns of the fused q/k/v
    unit: the q rows of those columns must be zeroed, or the old q values would leak."""
    model = tiny_transformer(KIND, seed=0)
    inputs = tiny_transformer_inputs(KIND)
    pristine = copy.deepcopy(model)
    q_paths = [p for p in linear_paths(model) if p.endswith("attn1.to_q")]
    kv_paths = [p for p in linear_paths(model) if p.endswith(("attn1.to_k", "attn1.to_v"))]
    a = _lora(model, 3, "a", rank=12)  # holds the stack at its size (no shrink on remove)
    q, kv = _lora(model, 4, "q", paths=q_paths, rank=8), _lora(model, 5, "kv", paths=kv_paths, rank=4)
    h = vidlora.attach(model)
    h.add(a, weight=0.5)
    unit = model.blocks[0].attn1.to_qkv
    used = unit.stack.used_rank
    h.add(q)
    h.remove("q")
    assert unit.lora_b[:, used:].any()  # q's values stay behind a zero scale
    h.add(kv, weight=0.9)
    q_part = next(p for p in unit.parts if p.path.endswith("to_q"))
    assert not unit.lora_b[q_part.start : q_part.stop, used:].any()
    assert torch.equal(run(model, inputs), run(_fresh(pristine, [(a, 0.5), (kv, 0.9)]), inputs))


def test_removing_a_middle_adapter_compacts_and_stays_exact():
    model = tiny_transformer(KIND, seed=0)
    inputs = tiny_transformer_inputs(KIND)
    pristine = copy.deepcopy(model)
    loras = [_lora(model, s, f"l{s}", rank=2 + s) for s in (1, 2, 3, 9)]
    h = vidlora.attach(model)
    for lora in loras[:3]:
        h.add(lora, weight=0.5)
    h.remove("l2")
    h.add(loras[3], weight=-1.0)
    want = _fresh(pristine, [(loras[0], 0.5), (loras[2], 0.5), (loras[3], -1.0)])
    assert torch.equal(run(model, inputs), run(want, inputs))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_lorafile_is_refused_before_anything_is_written(bad):
    model = tiny_transformer(KIND, seed=0)
    inputs = tiny_transformer_inputs(KIND)
    a, broken = _lora(model, 1, "a"), _lora(model, 2, "broken")
    h = vidlora.attach(model)
    h.add(a)
    stacks = {n: (m.lora_a.clone(), m.lora_b.clone()) for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    out = run(model, inputs)
    last = sorted(broken.modules)[-1]
    broken.modules[last].up[0, 0] = bad
    with pytest.raises(LoRAFormatError, match=rf"'broken'.*{last.replace('.', '[.]')}.*NaN or Inf"):
        h.add(broken)
    assert h.names == ("a",)
    for n, m in model.named_modules():
        if isinstance(m, LoRALinear):
            assert torch.equal(m.lora_a, stacks[n][0]) and torch.equal(m.lora_b, stacks[n][1]), n
    assert torch.equal(run(model, inputs), out)


def _half(kind=KIND):
    model = tiny_transformer(kind, seed=0).to(torch.float16)
    inputs = {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() else v)
              for k, v in tiny_transformer_inputs(kind).items()}  # fmt: skip
    return model, inputs


@pytest.mark.filterwarnings("ignore:There are modules")
def test_an_fp16_stack_zeroes_freed_rows_and_refuses_values_it_cannot_hold():
    """fp16's range is 65504: a stale row's x A^T could overflow there, so an fp16 stack
    zeroes what a remove frees; a factor finite in the file but Inf in fp16 (1e5) is
    refused after the write, with the model (shapes included) as before."""
    model, inputs = _half()
    keep, other = _lora(model, 1, "keep", rank=8), _lora(model, 2, "other", rank=4)
    q_path = next(p for p in linear_paths(model) if p.endswith("attn1.to_q"))
    big = _lora(model, 3, "big", paths=[q_path], rank=4)
    big.modules[q_path].down[0, 0] = 1e5
    h = vidlora.attach(model)
    h.add(keep)
    out = run(model, inputs)
    unit = model.blocks[0].attn1.to_qkv
    h.add(other)
    h.remove("other")
    assert not unit.lora_b[:, unit.stack.used_rank :].any()  # zeroed, not stale
    rows = {n: m.stack.stored_rank for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    with pytest.raises(LoRAFormatError, match=r"'big'.*overflow torch.float16.*65504"):
        h.add(big, weight=1e-6)
    assert h.names == ("keep",)
    assert {n: m.stack.stored_rank for n, m in model.named_modules() if isinstance(m, LoRALinear)} == rows
    assert torch.isfinite(unit.lora_a).all() and torch.equal(run(model, inputs), out)


def test_a_failed_add_gives_back_the_rows_it_grew():
    """The failure comes from the last unit, after earlier units grew their stacks: every
    stack is back at its size (no shape change, so nothing recompiles)."""
    model = tiny_transformer(KIND, seed=0)
    inputs = tiny_transformer_inputs(KIND)
    paths = linear_paths(model)
    small, wide = _lora(model, 1, "small", rank=2), _lora(model, 2, "wide", rank=14)
    wide.modules[paths[-1]].up[0, 0] = float("nan")  # caught by the check on a passed-in LoRAFile...
    h = vidlora.attach(model)
    h.add(small)
    rows = {n: m.stack.stored_rank for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    out = run(model, inputs)
    with pytest.raises(LoRAFormatError):
        h.add(wide)
    assert {n: m.stack.stored_rank for n, m in model.named_modules() if isinstance(m, LoRALinear)} == rows
    # ...and when a unit's own write fails midway, the rollback undoes the growth too
    import vidlora.runtime.rank_stack as rank_stack

    calls = {"n": 0}
    real_add = rank_stack.RankStack.add

    def failing_add(self, name, pieces):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("simulated failure in the 5th unit")
        return real_add(self, name, pieces)

    wide.modules[paths[-1]].up[0, 0] = 0.0
    rank_stack.RankStack.add = failing_add
    try:
        with pytest.raises(RuntimeError, match="5th unit"):
            h.add(wide)
    finally:
        rank_stack.RankStack.add = real_add
    assert {n: m.stack.stored_rank for n, m in model.named_modules() if isinstance(m, LoRALinear)} == rows
    assert h.names == ("small",) and torch.equal(run(model, inputs), out)
