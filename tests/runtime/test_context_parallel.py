"""vidlora.context_parallel on real torch.distributed: 2 gloo processes started here, one
spawn per family running all its variants (tests/helpers/cp_worker.py), each variant
compared with the one-process result computed in the same worker: Ulysses bit for bit,
ring within 1e-6 of the output's scale (its partial results are merged by log-sum-exp).

Every variant also proves it ran split (each rank's blocks saw half the tokens) and that
its LoRA changed the output, so none can pass with context parallelism or the LoRA off.
The in-process tests below need no second process (errors, hook carrying)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook
from torch import nn

import vidlora
from vidlora.app.tiny import TINY_TRANSFORMER_CONFIGS, tiny_transformer, tiny_transformer_inputs
from vidlora.app.tiny.models import randomized as _randomized
from vidlora.errors import VidloraError
from vidlora.model import inventory
from vidlora.runtime.unit import LoRALinear

from helpers.models import random_lora
from helpers.paths import REPO_ROOT

WORLD = 2
_RESULTS: dict[str, list[dict]] = {}


def _spawn(family: str, tmp_path_factory) -> list[dict]:
    """Both ranks' results for ``family`` (spawned once per test session)."""
    if family not in _RESULTS:
        out = tmp_path_factory.mktemp(f"cp-{family}")
        path = os.pathsep.join(p for p in (str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
        procs = [
            subprocess.Popen([sys.executable, "-m", "helpers.cp_worker", family, str(r), str(WORLD),
                              str(out / "init"), str(out)],  # fmt: skip
                             cwd=REPO_ROOT / "tests", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for r in range(WORLD)
        ]
        logs = [p.communicate(timeout=900)[0].decode(errors="replace") for p in procs]
        for r, p in enumerate(procs):
            assert p.returncode == 0, f"rank {r} exited with {p.returncode}:\n{logs[r][-4000:]}"
        _RESULTS[family] = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    return _RESULTS[family]


def _case(results: list[dict], name: str) -> list[dict]:
    per_rank = [res[name] for res in results]
    for r, case in enumerate(per_rank):
        assert "crash" not in case, f"rank {r}: {case.get('crash')}"
    return per_rank


def _same(a: torch.Tensor, b: torch.Tensor, exact: bool, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    diff = (a.float() - b.float()).abs()
    if exact:
        bad = torch.nonzero(diff)
        assert bad.numel() == 0, f"{what}: {len(bad)} elements differ, first at {bad[0].tolist()}, max {diff.max()}"
    else:
        scale = b.abs().max().item()
        assert diff.max().item() <= 1e-6 * scale, f"{what}: max |diff| {diff.max().item():.3g} > 1e-6 x {scale:.3g}"


def _check_transformer_case(per_rank: list[dict], exact: bool, full_tokens: int, lora_on_proj_out: bool,
                            gather_at_proj_out: bool = True) -> None:  # fmt: skip
    for r, case in enumerate(per_rank):
        info = case["info"]
        _same(case["out"], case["ref"], exact, f"rank {r} output with the LoRA")
        _same(case["removed"], case["ref_removed"], exact, f"rank {r} after remove()")
        _same(case["detached"], case["base"], exact, f"rank {r} after detach()")
        _same(case["after_remove"], case["base"], True, f"rank {r} after ContextParallel.remove()")
        assert (case["ref"] - case["base"]).abs().max() > 1e-2, "the LoRA must change the output"
        assert info["tokens_seen"] == full_tokens // WORLD, info  # each rank ran half the sequence
        # the gather hook stayed on proj_out through attach / add / detach
        assert info["proj_out_hooked"] == info["detached_proj_out_hooked"] == gather_at_proj_out, info
        assert info["proj_out"] == ("LoRALinear" if lora_on_proj_out else "Linear"), info
        assert info["detached_proj_out"] == "Linear", info


# ------------------------------------------------------------------------------------ Wan

_WAN_TOKENS = 2 * 4 * 4  # tiny inputs: 2 latent frames of 8 x 8, patches 1 x 2 x 2
_WAN_CASES = {
    # name: (exact, LoRA on proj_out)
    "ulysses_after_attach_fused_schedule": (True, False),
    "ulysses_hooked_proj_out_added_after": (True, True),
    "ulysses_fp8": (True, True),
    "ulysses_blocks": (True, False),
    "ulysses_i2v": (True, False),
    "ulysses_ti2v_per_token_timesteps": (True, False),
    "ulysses_anything": (True, False),
    "ring_after_attach": (False, False),
    "ring_hooked_proj_out_added_after": (False, True),
}


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    return _spawn("wan", tmp_path_factory)


@pytest.mark.parametrize("name", list(_WAN_CASES))
def test_wan_transformer_equals_one_process(wan, name):
    exact, on_proj_out = _WAN_CASES[name]
    _check_transformer_case(_case(wan, name), exact, _WAN_TOKENS, on_proj_out)


@pytest.mark.parametrize(
    "name, message",
    [
        ("error_tokens", r"makes 9 tokens, which do not divide by the 2 ranks.*ulysses_anything=True"),
        ("error_heads", r"3 attention heads, which do not divide by ulysses=2.*ring=2, ulysses=1"),
        ("error_ring_without_lse", r"log-sum-exp.*attention_backend='_vidlora_cpu_flash'"),
    ],
)
def test_wan_errors_name_the_fix(wan, name, message):
    import re

    for r, case in enumerate(_case(wan, name)):
        assert case["error_message"] is not None, f"rank {r}: no error"
        assert re.search(message, case["error_message"]), case["error_message"]


def _check_pipeline_case(per_rank: list[dict]) -> None:
    main, other = per_rank
    assert main["info"]["is_main"] and not other["info"]["is_main"]
    _same(main["out"], main["ref"], True, "rank 0 frames")  # rank 1 drew other noise: broadcast made it harmless
    assert main["out"].ndim == 5 and main["out"].shape[-1] == 3  # decoded frames (1, F, H, W, 3)
    _same(other["out"], other["ref_latents"], True, "rank 1 latents (no VAE decode there)")
    assert other["info"]["subclassed"] and not main["info"]["subclassed"]
    assert all(c["info"]["signature_kept"] for c in per_rank)  # callers inspect the pipeline's arguments
    assert all(c["info"]["class_restored"] for c in per_rank)


def test_wan22_two_experts_pipeline_on_one_mesh(wan):
    _check_pipeline_case(_case(wan, "wan22_two_experts_pipeline"))


# ------------------------------------------------------------------------------------ HunyuanVideo

_HUNYUAN_TOKENS = 2 * 8 * 8  # patch 1
_HUNYUAN_CASES = {
    "ulysses_text_padding_hooked_added_after": (True, True),
    "ulysses_after_attach_schedule": (True, False),
    "ulysses_fp8": (True, False),
    "ulysses_i2v_latent_concat": (True, False),
    "ring_text_padding": (True, True),  # the joint processor gathers the video keys: exact too
}


@pytest.fixture(scope="module")
def hunyuan(tmp_path_factory):
    return _spawn("hunyuan", tmp_path_factory)


@pytest.mark.parametrize("name", list(_HUNYUAN_CASES))
def test_hunyuan_transformer_equals_one_process(hunyuan, name):
    exact, on_proj_out = _HUNYUAN_CASES[name]
    _check_transformer_case(_case(hunyuan, name), exact, _HUNYUAN_TOKENS, on_proj_out)


def test_hunyuan_pipeline(hunyuan):
    _check_pipeline_case(_case(hunyuan, "hunyuan_pipeline"))


# ------------------------------------------------------------------------------------ in process


@pytest.fixture
def one_rank(tmp_path):
    """A process group of one rank (gloo), for the checks made before any split."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1,
                            timeout=timedelta(seconds=30))  # fmt: skip
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_needs_an_initialized_process_group():
    with pytest.raises(VidloraError, match="init_process_group"):
        vidlora.context_parallel(tiny_transformer("wan-t2v"))


def test_one_rank_is_refused(one_rank):
    with pytest.raises(VidloraError, match="at least 2 ranks"):
        vidlora.context_parallel(tiny_transformer("wan-t2v"))


def test_degrees_must_multiply_to_the_ranks(one_rank):
    with pytest.raises(VidloraError, match=r"ulysses=2 x ring=2 = 4 ranks, but 1 are running"):
        vidlora.context_parallel(tiny_transformer("wan-t2v"), ulysses=2, ring=2)


def test_token_replace_hunyuan_is_refused(one_rank):
    config = dict(TINY_TRANSFORMER_CONFIGS["hunyuan-t2v"], image_condition_type="token_replace")
    from diffusers import HunyuanVideoTransformer3DModel

    model = _randomized(HunyuanVideoTransformer3DModel, config, 0, torch.float32)
    with pytest.raises(VidloraError, match="token-replace"):
        vidlora.context_parallel(model)


def test_a_class_without_plan_is_refused(one_rank, monkeypatch):
    import dataclasses

    from vidlora.model.wan import WAN
    from vidlora.runtime import parallel

    monkeypatch.setattr(parallel, "spec_for_model", lambda model: dataclasses.replace(WAN, cp_plans={}))
    with pytest.raises(VidloraError, match="no context-parallel plan for it"):
        vidlora.context_parallel(tiny_transformer("wan-t2v"))


class _Count(ModelHook):
    def __init__(self, scale=1.0):
        super().__init__()
        self.calls, self.scale = 0, scale

    def post_forward(self, module, output):
        self.calls += 1
        return output * self.scale


def test_hooks_follow_the_swap_and_hooked_siblings_stay_unfused():
    """A cp_output hook on proj_out moves onto its unit and back at detach; a hooked q is
    not fused away (a fused-away part never runs, so its hook would never fire)."""
    model = tiny_transformer("wan-t2v")
    inputs = tiny_transformer_inputs("wan-t2v")
    with torch.no_grad():
        plain = model(**inputs, return_dict=False)[0]
    head, q = _Count(scale=2.0), _Count()
    lora = random_lora(model, 1, inventory(model).family, paths=["proj_out"])
    HookRegistry.check_if_exists_or_initialize(model.proj_out).register_hook(head, "cp_output---proj_out")
    HookRegistry.check_if_exists_or_initialize(model.blocks[0].attn1.to_q).register_hook(q, "cp_input---blocks.0.attn1.to_q")
    h = vidlora.attach(model)
    assert not hasattr(model.blocks[0].attn1, "to_qkv") and isinstance(model.blocks[0].attn1.to_q, LoRALinear)
    assert isinstance(model.blocks[1].attn1.to_qkv, LoRALinear)  # unhooked blocks still fused
    h.add(lora, weight=0.0)  # patches proj_out on demand; weight 0: output unchanged
    assert isinstance(model.proj_out, LoRALinear)
    with torch.no_grad():
        out = model(**inputs, return_dict=False)[0]
    assert head.calls == 1 and q.calls == 1
    torch.testing.assert_close(out, plain * 2)  # the hook (x2) ran on the unit
    h.detach()
    assert type(model.proj_out) is nn.Linear and "cp_output---proj_out" in model.proj_out._diffusers_hook.hooks
    assert type(model.blocks[0].attn1.to_q) is nn.Linear
    with torch.no_grad():
        model(**inputs, return_dict=False)
    assert head.calls == 2 and q.calls == 2


# ------------------------------------------------------------------------------------ derived families

_DERIVED_CASES = {
    # name: (exact, LoRA on proj_out, tokens per call)
    "vace_ulysses_hooked_added_after": (True, True, 32),
    "vace_ring_after_attach": (False, False, 32),
    "skyreels_ulysses": (True, True, 32),
    "skyreels_i2v_ulysses": (True, False, 32),
    "skyreels_ring": (False, False, 32),
    # a timestep per latent frame: each rank embeds only its frames' timesteps (a GEMM of
    # fewer rows: rounding, not a different result)
    "skyreels_diffusion_forcing": (False, False, 32),
    "animate_ulysses": (True, True, 64),
    "animate_ring": (False, False, 64),
    # FramePack gathers after the last block (not at proj_out); not bit for bit: each rank's
    # Linears see 21 rows instead of 42, and the CPU GEMM rounds an odd tail differently
    "framepack_ulysses_hooked_added_after": (False, True, 42),
    "framepack_ring": (False, False, 42),
    "hunyuan15_ulysses_text_padding": (True, True, 64),
    "hunyuan15_ring_text_padding": (True, False, 64),
}


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    return _spawn("derived", tmp_path_factory)


@pytest.mark.parametrize("name", list(_DERIVED_CASES))
def test_derived_family_transformer_equals_one_process(derived, name):
    exact, on_proj_out, tokens = _DERIVED_CASES[name]
    _check_transformer_case(_case(derived, name), exact, tokens, on_proj_out, gather_at_proj_out="framepack" not in name)


@pytest.mark.parametrize(
    "name, message",
    [
        ("error_skyreels_frames", r"3 latent frames its own timestep.*must divide by 2"),
        ("error_animate_frames", r"face adapter attends frame by frame.*3 latent frames"),
        ("error_framepack_tokens", r"makes 23 tokens, which do not divide by the 2 ranks"),
    ],
)
def test_derived_family_errors_name_the_fix(derived, name, message):
    import re

    for r, case in enumerate(_case(derived, name)):
        assert case["error_message"] is not None and re.search(message, case["error_message"]), case
