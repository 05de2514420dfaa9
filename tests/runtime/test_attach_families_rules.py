"""The rules around the derived families: a LoRA of another family is an error naming both
sides; VACE LoRAs with vace_blocks on plain Wan (strict / not); a failed add leaves the model
bit-identical; both experts of Wan2.2-VACE-Fun-A14B; ``blocks=`` counting VACE's control
branch; FP8 bases; what strength schedules mean on Diffusion Forcing (refused by name) and
FramePack (per section); Wan2.2-Animate-2 and MotionLinear refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vidlora
from vidlora.app.tiny import tiny_transformer
from vidlora.errors import LoRAMismatchError, UnsafeFileError, VidloraError
from vidlora.lora import read_lora
from vidlora.runtime.unit import LoRALinear

from helpers.family_models import family_inputs, family_model, pristine
from helpers.merged import merged_stack
from helpers.models import run, state_snapshot
from helpers.writers import Truth, random_truth, write_lora, write_raw


def _linears(model, *prefixes):
    return [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n.startswith(prefixes)]


def _vace_truth(seed=1, prefixes=("blocks.", "vace_blocks.")):
    return random_truth(pristine("wan-vace"), seed=seed, paths=_linears(pristine("wan-vace"), *prefixes), alpha=2.0)


# ------------------------------------------------------------------ family errors
def _hv15_file(tmp_path):
    model = pristine("hunyuan1.5")
    truth = random_truth(model, seed=2, paths=_linears(model, "transformer_blocks."), alpha=2.0)
    return write_lora(tmp_path / "hv15.safetensors", truth, "HV15-musubi")


def test_hunyuan15_lora_on_hunyuan_video_names_both_sides(tmp_path):
    h = vidlora.attach(tiny_transformer("hunyuan-t2v"))
    with pytest.raises(LoRAMismatchError) as err:
        h.add(_hv15_file(tmp_path))
    assert ("LoRA targets HunyuanVideo 1.5 (width 16, separate img_attn_q/k/v, double-stream blocks only); "
            "the model is HunyuanVideo (20)") in str(err.value)  # fmt: skip
    hy = random_truth(tiny_transformer("hunyuan-t2v"), seed=3, paths=["transformer_blocks.0.attn.to_q",
                      "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v"], share_fused_down=True)
    h15 = vidlora.attach(family_model("hunyuan1.5"))
    with pytest.raises(LoRAMismatchError, match=r"LoRA targets HunyuanVideo \(width 20, fused img_attn_qkv.*\); "
                       r"the model is HunyuanVideo 1.5 \(16\)"):  # fmt: skip
        h15.add(write_lora(tmp_path / "hy.safetensors", hy, "H2"))


def test_wan_lora_on_hunyuan15_and_framepack_lora_on_wan_vace(tmp_path):
    wan = random_truth(tiny_transformer("wan-t2v"), seed=4, paths=["blocks.0.attn1.to_q"])
    with pytest.raises(LoRAMismatchError, match=r"LoRA targets Wan \(width 24.*the model is HunyuanVideo 1.5 \(16\)"):
        vidlora.attach(family_model("hunyuan1.5")).add(write_lora(tmp_path / "w.safetensors", wan, "W3"))
    fp = random_truth(pristine("framepack"), seed=5, paths=["image_projection.up", "transformer_blocks.0.attn.to_q"])
    with pytest.raises(LoRAMismatchError, match=r"LoRA targets FramePack .*the model is Wan VACE \(24\)"):
        vidlora.attach(family_model("wan-vace")).add(write_lora(tmp_path / "fp.safetensors", fp, "H5"))


@pytest.mark.parametrize("scheme", ["W4", "W2", "W3"])
def test_vace_lora_with_vace_blocks_on_plain_wan(tmp_path, scheme):
    """diffusers / original / kohya vace_blocks keys: strict names vace_blocks and the model;
    strict=False applies the blocks with one warning carrying the counts."""
    truth = _vace_truth()
    path = write_lora(tmp_path / f"vace-{scheme}.safetensors", truth, scheme)
    lora = read_lora(path)
    assert lora.arch == "wan-vace" and any(p.startswith("vace_blocks.") for p in lora.modules)
    model = tiny_transformer("wan-t2v")
    h = vidlora.attach(model)
    before = state_snapshot(model)
    with pytest.raises(LoRAMismatchError) as err:
        h.add(path)
    msg = str(err.value)
    n_vace = sum(p.startswith("vace_blocks.") for p in truth.modules)
    assert f"LoRA carries {n_vace} vace_blocks entries (Wan VACE)" in msg and "Wan (width 24)" in msg
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(model).items())
    h.add(path, strict=False)
    warnings = h.report()["adapters"][0]["warnings"]
    assert len(warnings) == 1 and f"skipped {n_vace}, applied {len(truth.modules) - n_vace}" in warnings[0]
    blocks_only = Truth({p: t for p, t in truth.modules.items() if p.startswith("blocks.")})
    inputs = {"hidden_states": torch.randn(1, 16, 2, 8, 8, generator=torch.Generator().manual_seed(0)),
              "timestep": torch.tensor([500]), "encoder_hidden_states": torch.randn(1, 7, 32)}  # fmt: skip
    ref = run(merged_stack(tiny_transformer("wan-t2v"), [(blocks_only, 1.0)]), inputs)
    torch.testing.assert_close(run(model, inputs), ref, atol=2e-5, rtol=1e-5)


# ------------------------------------------------------------------ failed add
@pytest.mark.parametrize("kind", ["wan-vace", "skyreels-v2", "wan-animate", "framepack", "hunyuan1.5"])
def test_failed_add_leaves_the_model_bit_identical(tmp_path, kind):
    model = family_model(kind)
    paths = _linears(model, "blocks.", "transformer_blocks.")[:6]
    good = random_truth(pristine(kind), seed=6, paths=paths)
    scheme = "W4" if kind in ("wan-vace", "skyreels-v2", "wan-animate") else "H5"
    h = vidlora.attach(model)
    h.add(write_lora(tmp_path / "good.safetensors", good, scheme), name="good")
    snap = state_snapshot(model)
    stacks = {n: (m.stack.used_rank, m.stack.stored_rank) for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    bad = random_truth(pristine(kind), seed=7, paths=_linears(model, "blocks.", "transformer_blocks.")[-6:])
    extra = {"transformer.blocks.9.attn1.to_q.lora_A.weight": torch.randn(2, 24)} if scheme == "W4" else {
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.randn(2, 999)}
    extra.update({k.replace("lora_A", "lora_B"): torch.randn(24 if scheme == "W4" else model.config.num_attention_heads
                  * model.config.attention_head_dim, 2) for k in list(extra)})  # fmt: skip
    with pytest.raises(VidloraError):
        h.add(write_lora(tmp_path / "bad.safetensors", bad, scheme, extra=extra), name="bad")
    assert h.names == ("good",)
    after = state_snapshot(model)
    assert all(torch.equal(after[k], snap[k]) for k in snap)
    assert {n: (m.stack.used_rank, m.stack.stored_rank) for n, m in model.named_modules()
            if isinstance(m, LoRALinear)} == stacks  # fmt: skip


# ------------------------------------------------------------------ experts, blocks=, FP8
def _vace_pipe(boundary=0.875):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanVACEPipeline

    return WanVACEPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=FlowMatchEulerDiscreteScheduler(),
                           transformer=family_model("wan-vace", 0), transformer_2=family_model("wan-vace", 1),
                           boundary_ratio=boundary)  # fmt: skip


def test_vace_fun_a14b_both_experts(tmp_path):
    """Wan2.2-VACE-Fun-A14B: transformer (high noise) and transformer_2 (low noise) both patched;
    ai-toolkit's two-expert file (W6) puts each part on its expert; expert="low" one file."""
    pipe = _vace_pipe()
    inputs = family_inputs("wan-vace")
    hi, lo = _vace_truth(10), _vace_truth(11)
    h = vidlora.attach(pipe)
    assert set(h.models) == {"transformer", "transformer_2"}
    h.add(write_lora(tmp_path / "combo.safetensors", Truth(), "W6", experts={"high": hi, "low": lo}), weight=0.8)
    only_low = _vace_truth(12, prefixes=("blocks.",))
    h.add(write_lora(tmp_path / "low.safetensors", only_low, "W3"), expert="low", weight=0.5)
    torch.testing.assert_close(run(pipe.transformer, inputs), run(merged_stack(pristine("wan-vace", 0), [(hi, 0.8)]),
                               inputs), atol=3e-5, rtol=1e-4)  # fmt: skip
    ref_lo = run(merged_stack(pristine("wan-vace", 1), [(lo, 0.8), (only_low, 0.5)]), inputs)
    torch.testing.assert_close(run(pipe.transformer_2, inputs), ref_lo, atol=3e-5, rtol=1e-4)
    h.detach()
    for key, seed in (("transformer", 0), ("transformer_2", 1)):
        assert all(torch.equal(v, pristine("wan-vace", seed).state_dict()[k])
                   for k, v in getattr(pipe, key).state_dict().items())  # fmt: skip


@pytest.mark.parametrize("blocks,kept", [(range(3), "blocks."), ([3, 4], "vace_blocks."), ([0, 4], None)])
def test_blocks_count_vace_blocks_after_the_blocks(tmp_path, blocks, kept):
    """Tiny VACE: blocks 0-2, then vace_blocks 0-1 as 3-4."""
    truth = _vace_truth(13)
    model = family_model("wan-vace")
    h = vidlora.attach(model)
    h.add(write_lora(tmp_path / "v.safetensors", truth, "W4"), blocks=blocks)

    def inside(p):
        return p.startswith(kept) if kept else p.startswith(("blocks.0.", "vace_blocks.1."))

    want = Truth({p: t for p, t in truth.modules.items() if inside(p)})
    ref = run(merged_stack(pristine("wan-vace"), [(want, 1.0)]), family_inputs("wan-vace"))
    torch.testing.assert_close(run(model, family_inputs("wan-vace")), ref, atol=3e-5, rtol=1e-4)
    with pytest.raises(VidloraError, match="out of range: the model has blocks 0-4"):
        h.add(write_lora(tmp_path / "w.safetensors", truth, "W4"), name="w", blocks=[5])


def _dequantized(kind):
    m = family_model(kind)
    vidlora.attach(m, fp8=True).detach()
    return m


@pytest.mark.parametrize("kind,scheme", [("wan-vace", "W2"), ("hunyuan1.5", "HV15-comfy"), ("wan-animate", "W-peft-meta")])
def test_fp8_bases(tmp_path, kind, scheme):
    model = family_model(kind)
    truth = random_truth(pristine(kind), seed=14, paths=_linears(model, "blocks.", "transformer_blocks.", "vace_blocks."),
                         alpha=2.0)  # fmt: skip
    h = vidlora.attach(model, fp8=True)
    units = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert units and all(u.weight.dtype == torch.float8_e4m3fn for u in units)
    h.add(write_lora(tmp_path / "f.safetensors", truth, scheme), weight=0.7)
    ref = run(merged_stack(_dequantized(kind), [(truth, 0.7)]), family_inputs(kind))
    torch.testing.assert_close(run(model, family_inputs(kind)), ref, atol=5e-5, rtol=1e-4)


# ------------------------------------------------------------------ schedules
def test_schedules_refused_by_name_on_diffusion_forcing(tmp_path):
    from diffusers import SkyReelsV2DiffusionForcingPipeline, SkyReelsV2Pipeline, UniPCMultistepScheduler

    truth = random_truth(pristine("skyreels-v2"), seed=15, paths=_linears(pristine("skyreels-v2"), "blocks.")[:4])
    path = write_lora(tmp_path / "s.safetensors", truth, "W3")
    df = SkyReelsV2DiffusionForcingPipeline(tokenizer=None, text_encoder=None, transformer=family_model("skyreels-v2"),
                                            vae=None, scheduler=UniPCMultistepScheduler())  # fmt: skip
    h = vidlora.attach(df)
    with pytest.raises(VidloraError, match=r"SkyReelsV2DiffusionForcingPipeline: Diffusion Forcing .*\(per-frame timesteps"):
        h.add(path, weight=[1.0, 0.5])
    assert h.names == ()
    h.add(path, weight=0.8)  # a constant strength is fine
    with pytest.raises(VidloraError, match="Diffusion Forcing"):
        h.set_weight("s", lambda step, n: 1.0 - step / n)
    assert h.weights["s"] == 0.8
    t2v = SkyReelsV2Pipeline(tokenizer=None, text_encoder=None, transformer=family_model("skyreels-v2"), vae=None,
                             scheduler=UniPCMultistepScheduler())  # fmt: skip
    vidlora.attach(t2v).add(path, weight=[1.0, 0.5])  # T2V: one step index per call


def test_framepack_schedule_restarts_in_every_section(tmp_path):
    """FramePack's pipeline runs a full denoising loop per section (its own set_timesteps):
    the strength in force at each transformer call follows the section's step index."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoFramepackPipeline
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_framepack import retrieve_timesteps

    pipe = HunyuanVideoFramepackPipeline(
        text_encoder=None, tokenizer=None, transformer=family_model("framepack"), vae=None,
        scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder_2=None, tokenizer_2=None, image_encoder=None,
        feature_extractor=None,
    )  # fmt: skip
    truth = random_truth(pristine("framepack"), seed=16, paths=_linears(pristine("framepack"), "transformer_blocks."))
    h = vidlora.attach(pipe)
    n = 4
    values = [0.1, 0.4, 0.7, 1.0]
    h.add(write_lora(tmp_path / "fp.safetensors", truth, "H5"), name="fp", weight=values)
    inputs = family_inputs("framepack")
    seen = []
    for _section in range(3):  # the pipeline's section loop, step by step
        sigmas = np.linspace(1.0, 0.0, n + 1)[:-1]
        timesteps, _ = retrieve_timesteps(pipe.scheduler, n, "cpu", sigmas=sigmas, mu=0.7)
        latents = inputs["hidden_states"]
        for t in timesteps:
            pred = pipe.transformer(**dict(inputs, hidden_states=latents, timestep=t.expand(1)), return_dict=False)[0]
            seen.append(h.current_weight("fp"))
            latents = pipe.scheduler.step(pred, t, latents, return_dict=False)[0]
    assert seen == values * 3


# ------------------------------------------------------------------ refused by name
def test_wan_animate_2_refused_by_name():
    from diffusers import WanAnimate2Transformer3DModel

    model = WanAnimate2Transformer3DModel(patch_size=(1, 2, 2), text_len=16, in_dim=36, dim=32, ffn_dim=64, freq_dim=32,
                                          text_dim=32, out_dim=16, num_heads=2, num_layers=1, cross_attn_norm=True,
                                          use_img_emb=False)  # fmt: skip
    with pytest.raises(VidloraError, match="Wan2.2-Animate-2 \\(WanAnimate2Transformer3DModel\\) is not supported"):
        vidlora.attach(model)

    class Pipe:
        transformer = model

    with pytest.raises(VidloraError, match="Pipe.transformer: Wan2.2-Animate-2"):
        vidlora.attach(Pipe())


def test_motion_linear_and_pickles_refused_by_name(tmp_path):
    keys = {"diffusion_model.motion_encoder.enc.fc.0.lora_down.weight": torch.randn(2, 8),
            "diffusion_model.motion_encoder.enc.fc.0.lora_up.weight": torch.randn(8, 2),
            "diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(2, 24),
            "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(24, 2)}  # fmt: skip
    lora = read_lora(write_raw(tmp_path / "motion.safetensors", keys))
    with pytest.raises(LoRAMismatchError, match=r"motion_encoder.motion_network.0 is not an nn.Linear"):
        vidlora.attach(family_model("wan-animate")).add(lora)
    ckpt = tmp_path / "wan2.2_animate_relight.ckpt"
    torch.save({"blocks.0.self_attn.q.lora_A.weight": torch.randn(2, 24)}, ckpt)
    with pytest.raises(UnsafeFileError):
        read_lora(str(ckpt))
