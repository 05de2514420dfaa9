"""torch.compile sees vidlora::lora_linear as one op: no graph break, no recompiles.

On CPU the op runs its torch-reference branch (a compiled op whose Triton branch ran under
the interpreter would fail on fake tensors: notes/triton-without-gpu.md). aot_eager does
the same Dynamo tracing as Inductor without its ~30 s of codegen on 2 cores; one Inductor
smoke test checks the real backend.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

from vidlora.kernels import lora_linear, lora_linear_reference


def _args(r=16, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(2, 9, 24, generator=g).to(dtype),
        torch.randn(40, 24, generator=g).to(dtype),
        torch.randn(40, generator=g).to(dtype),
        torch.randn(r, 24, generator=g).to(dtype),
        torch.randn(40, r, generator=g).to(dtype),
        torch.rand(r, generator=g),
    )


def _block(x, w, b, a, bb, c):
    # The op between ordinary torch ops, as in a patched transformer block.
    h = torch.nn.functional.silu(x) * 2.0
    return lora_linear(h, w, b, a, bb, c).sum(-1)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_fullgraph_compiles_and_new_scales_do_not_recompile():
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = torch.compile(_block, backend="aot_eager", fullgraph=True)
    x, w, b, a, bb, c = _args()
    torch.testing.assert_close(compiled(x, w, b, a, bb, c), _block(x, w, b, a, bb, c))
    # Changing strengths writes new values into c (and a disabled adapter is zeros):
    # same shapes, so the compiled graph is reused.
    with torch.compiler.set_stance("fail_on_recompile"):
        for c2 in (c * 0.3, torch.zeros_like(c), torch.full_like(c, 2.0)):
            c.copy_(c2)
            torch.testing.assert_close(compiled(x, w, b, a, bb, c), _block(x, w, b, a, bb, c))
    assert counters["stats"]["unique_graphs"] == 1
    assert sum(counters["graph_break"].values()) == 0


def test_a_rank_change_is_the_only_thing_that_recompiles():
    # Stacks are padded to multiples of 16 (DESIGN.md) so adding a small adapter keeps
    # the shape; a new bucket is a new shape and compiles once.
    compiled = torch.compile(_block, backend="aot_eager", fullgraph=True, dynamic=False)
    compiled(*_args(r=16))
    with torch.compiler.set_stance("fail_on_recompile"), pytest.raises(RuntimeError, match="[Rr]ecompil"):
        compiled(*_args(r=32))


def test_fake_implementation_checks_arguments_while_tracing():
    compiled = torch.compile(_block, backend="aot_eager", fullgraph=True)
    x, w, b, a, bb, c = _args()
    with pytest.raises(Exception, match=r"lora_b must be \[40, 16\]"):
        compiled(x, w, b, a, bb[:, :8], c)


def test_inductor_smoke():
    compiled = torch.compile(_block, fullgraph=True)
    args = _args()
    h = torch.nn.functional.silu(args[0]) * 2.0
    torch.testing.assert_close(compiled(*args), lora_linear_reference(h, *args[1:]).sum(-1))
