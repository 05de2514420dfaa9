"""One rank of the context-parallel tests (tests/runtime/test_context_parallel.py).

    python -m helpers.cp_worker FAMILY RANK WORLD INIT_FILE OUT_DIR

Joins a gloo process group through INIT_FILE, runs every variant of FAMILY and saves
{variant: {"out": ..., "ref": ..., "base": ..., "info": {...}} | {"error": "..."}} to
OUT_DIR/rank{RANK}.pt. ``ref`` is computed in this same process with no parallelism (the
one-process result), ``out`` with ``vidlora.context_parallel`` on; the test compares them.
"""

from __future__ import annotations

import datetime
import inspect
import sys
import traceback

import torch
import torch.distributed as dist
from torch import nn

import vidlora
from vidlora.app.tiny import TINY_TRANSFORMER_CONFIGS, build_tiny_pipeline, tiny_transformer
from vidlora.app.tiny.models import randomized as _randomized
from vidlora.app.tiny import tiny_prompt_template, tiny_transformer_inputs
from vidlora.model import inventory, spec_for_model
from vidlora.runtime.parallel import CPU_LSE_BACKEND

from helpers.models import random_lora

CPU_RING = dict(ring=2, ulysses=1, attention_backend=CPU_LSE_BACKEND)


def _run(model, inputs):
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


def _lora(model, seed, extra=(), deltas=()):
    """A LoRA on every block Linear plus ``extra`` Linears (e.g. the hooked proj_out)."""
    paths = [n for n, m in model.named_modules()
             if type(m) is nn.Linear and (n.split(".")[0].endswith("blocks") or n in extra)]  # fmt: skip
    lora = random_lora(model, seed, inventory(model).family, paths=paths, deltas=list(deltas), name=f"l{seed}")
    lora.arch = spec_for_model(model).name  # the helper knows two archs; derived families have their own
    return lora


def _tokens_seen(model, block):
    """Records the token count entering ``block`` (proof that the sequence was split)."""
    seen = []
    handle = model.get_submodule(block).register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).shape[1]), with_kwargs=True
    )
    return seen, handle


def _transformer_case(kind, cp_kwargs, *, when="after", fp8=False, extra=(), deltas=(), blocks=None,
                      schedule=False, inputs=None, model_fn=None, mesh=None):  # fmt: skip
    """ref: a one-process model with the LoRA; out: the same with context parallelism
    turned on before (when="before") or after attach + add."""
    make = model_fn or (lambda: tiny_transformer(kind))
    inputs = inputs or tiny_transformer_inputs(kind)
    ref_model = make()
    base = _run(ref_model, inputs)
    lora = _lora(ref_model, 7, extra, deltas)
    weight = [1.0, -0.5] if schedule else 0.8

    def attach_and_add(model):
        h = vidlora.attach(model, fp8=fp8, keep_original=fp8)
        h.add(lora, weight=weight, blocks=blocks)
        if schedule:
            h.set_step(1, 2)
        return h

    h = attach_and_add(ref_model)
    ref = _run(ref_model, inputs)
    h.remove(lora.name)
    ref_removed = _run(ref_model, inputs)  # FP8: the quantized base
    h.detach()

    model = make()
    group = "blocks" if hasattr(model, "blocks") else "transformer_blocks"
    seen, probe = _tokens_seen(model, f"{group}.1")
    if when == "before":  # context parallelism first, then attach / add
        cp = vidlora.context_parallel(model, mesh=mesh, **cp_kwargs)
        h = attach_and_add(model)
    else:
        h = attach_and_add(model)
        cp = vidlora.context_parallel(model, mesh=mesh, **cp_kwargs)
    out = _run(model, inputs)
    info = {"tokens_seen": seen[0], "proj_out": type(model.proj_out).__name__, "proj_out_hooked": _hooked(model)}
    h.remove(lora.name)
    removed = _run(model, inputs)
    h.detach()
    detached = _run(model, inputs)
    info.update(detached_proj_out=type(model.proj_out).__name__, detached_proj_out_hooked=_hooked(model))
    cp.remove()
    after = _run(model, inputs)
    probe.remove()
    return {"out": out, "ref": ref, "base": base, "ref_removed": ref_removed, "removed": removed,
            "detached": detached, "after_remove": after, "info": info}


def _hooked(model) -> bool:
    registry = model.proj_out.__dict__.get("_diffusers_hook")
    return registry is not None and "cp_output---proj_out" in registry._hook_order


def _error(fn):
    try:
        fn()
    except vidlora.VidloraError as e:
        return {"error_message": str(e)}
    return {"error_message": None}


# ---------------------------------------------------------------------------------- Wan


def _wan_variants(world):
    from torch.distributed.device_mesh import init_device_mesh

    uly = init_device_mesh("cpu", (1, world), mesh_dim_names=("ring", "ulysses"))
    ring = init_device_mesh("cpu", (world, 1), mesh_dim_names=("ring", "ulysses"))
    U = dict(ulysses=world)
    wan = "wan-t2v"
    ti2v_inputs = tiny_transformer_inputs(wan)
    tokens = 2 * 4 * 4
    # Wan 2.2 TI2V: one timestep per token (the first latent frame, the image, at t=0)
    ti2v_inputs["timestep"] = torch.cat([torch.zeros(1, tokens // 2), torch.full((1, tokens // 2), 700.0)], 1)
    three_heads = dict(TINY_TRANSFORMER_CONFIGS[wan], num_attention_heads=3, attention_head_dim=8)
    odd_inputs = tiny_transformer_inputs(wan, frames=1, size=6)  # 1 x 3 x 3 = 9 tokens
    return {
        "ulysses_after_attach_fused_schedule": lambda: _transformer_case(wan, U, when="after", schedule=True, mesh=uly),
        "ulysses_hooked_proj_out_added_after": lambda: _transformer_case(
            wan, U, when="before", extra=("proj_out",), deltas=("proj_out.bias", "scale_shift_table"), mesh=uly),
        "ulysses_fp8": lambda: _transformer_case(wan, U, when="before", fp8=True, extra=("proj_out",), mesh=uly),
        "ulysses_blocks": lambda: _transformer_case(wan, U, when="before", blocks=[1], mesh=uly),
        "ulysses_i2v": lambda: _transformer_case("wan-i2v", U, when="after", mesh=uly),
        "ulysses_ti2v_per_token_timesteps": lambda: _transformer_case(wan, U, when="before", inputs=ti2v_inputs,
                                                                      mesh=uly),
        # gloo cannot all-gather pieces of unequal size (NCCL can): even tokens on this path here
        "ulysses_anything": lambda: _transformer_case(wan, dict(U, ulysses_anything=True), mesh=uly),
        "ring_after_attach": lambda: _transformer_case(wan, CPU_RING, when="after", schedule=True, mesh=ring),
        "ring_hooked_proj_out_added_after": lambda: _transformer_case(wan, CPU_RING, when="before",
                                                                      extra=("proj_out",), mesh=ring),
        "error_tokens": lambda: _error(lambda: _run(_cp(tiny_transformer(wan), U, uly), odd_inputs)),
        "error_heads": lambda: _error(lambda: _cp(_randomized(_wan_cls(), three_heads, 0, torch.float32), U, uly)),
        "error_ring_without_lse": lambda: _error(lambda: _cp(tiny_transformer(wan), dict(ring=world), ring)),
        "wan22_two_experts_pipeline": lambda: _pipeline_case("wan2.2-t2v-a14b", U, mesh=uly),
    }


def _wan_cls():
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel


def _cp(model, kwargs, mesh):
    return vidlora.context_parallel(model, mesh=mesh, **kwargs) and model


def _pipeline_case(kind, cp_kwargs, mesh=None, **call):
    """A whole tiny pipeline with a scheduled LoRA on every transformer, one process vs
    context parallel. Every rank but 0 draws other noise: the latents broadcast from rank 0
    must make that harmless."""
    pipe = build_tiny_pipeline(kind)
    cls = type(pipe)
    pipe.set_progress_bar_config(disable=True)
    args = dict(prompt="a red fox", num_frames=5, height=32, width=32, num_inference_steps=3, **call)
    if kind.startswith("wan"):
        args.update(negative_prompt="blur", guidance_scale=4.0)
    else:
        args.update(prompt_template=tiny_prompt_template(kind, pipe.tokenizer))
    lora = _lora(pipe.transformer, 11)
    h = vidlora.attach(pipe)
    h.add(lora, weight=[1.2, 0.4, -0.6])

    def generate(seed, output_type):
        return pipe(**args, output_type=output_type, generator=torch.Generator().manual_seed(seed)).frames

    ref = generate(0, "np")
    ref_latents = generate(0, "latent")
    cp = vidlora.context_parallel(pipe, mesh=mesh, **cp_kwargs)
    rank = dist.get_rank()
    out = generate(rank, "np")  # a different seed on every rank but 0
    info = {"class": type(pipe).__name__, "is_main": cp.is_main, "subclassed": type(pipe) is not cls,
            "signature_kept": inspect.signature(pipe.__call__) == inspect.signature(cls.__call__.__get__(pipe))}
    cp.remove()
    info["class_restored"] = type(pipe) is cls
    h.detach()
    return {"out": torch.as_tensor(out), "ref": torch.as_tensor(ref), "ref_latents": torch.as_tensor(ref_latents),
            "info": info}


# ---------------------------------------------------------------------------------- HunyuanVideo


def _hunyuan_variants(world):
    from torch.distributed.device_mesh import init_device_mesh

    uly = init_device_mesh("cpu", (1, world), mesh_dim_names=("ring", "ulysses"))
    ring = init_device_mesh("cpu", (world, 1), mesh_dim_names=("ring", "ulysses"))
    kind = "hunyuan-t2v"
    padded = tiny_transformer_inputs(kind)
    padded["encoder_attention_mask"][:, 4:] = False  # 4 real text tokens, 2 padding
    U = dict(ulysses=world)
    extra = ("proj_out", "single_transformer_blocks.0.proj_out")
    from diffusers import HunyuanVideoTransformer3DModel

    from vidlora.app.tiny.configs import HUNYUAN_I2V_TRANSFORMER

    i2v_inputs = dict(padded, hidden_states=torch.randn(1, HUNYUAN_I2V_TRANSFORMER["in_channels"], 2, 8, 8,
                                                        generator=torch.Generator().manual_seed(5)))  # fmt: skip
    return {
        "ulysses_text_padding_hooked_added_after": lambda: _transformer_case(kind, U, when="before", extra=extra,
                                                                             inputs=padded, mesh=uly),
        "ulysses_after_attach_schedule": lambda: _transformer_case(kind, U, when="after", schedule=True, mesh=uly),
        "ulysses_fp8": lambda: _transformer_case(kind, U, when="before", fp8=True, inputs=padded, mesh=uly),
        "ulysses_i2v_latent_concat": lambda: _transformer_case(
            kind, U, when="before", inputs=i2v_inputs, mesh=uly,
            model_fn=lambda: _randomized(HunyuanVideoTransformer3DModel, HUNYUAN_I2V_TRANSFORMER, 0, torch.float32)),
        "ring_text_padding": lambda: _transformer_case(kind, dict(ring=world, ulysses=1), when="before", extra=extra,
                                                       inputs=padded, mesh=ring),
        "hunyuan_pipeline": lambda: _pipeline_case(kind, U, mesh=uly, guidance_scale=6.0),
    }


# ---------------------------------------------------------------------------------- derived families


def _derived_variants(world):
    from torch.distributed.device_mesh import init_device_mesh

    from helpers.family_models import family_inputs, family_model

    uly = init_device_mesh("cpu", (1, world), mesh_dim_names=("ring", "ulysses"))
    ring = init_device_mesh("cpu", (world, 1), mesh_dim_names=("ring", "ulysses"))
    U = dict(ulysses=world)

    def case(kind, cp, mesh, inputs=None, **kw):
        return lambda: _transformer_case(kind, cp, mesh=mesh, model_fn=lambda: family_model(kind),
                                         inputs=inputs or family_inputs(kind), **kw)  # fmt: skip

    sky = family_inputs("skyreels-v2")
    sky_df = dict(sky, timestep=torch.tensor([[900, 300]]), enable_diffusion_forcing=True)  # 2 latent frames
    sky_df_odd = dict(sky_df, hidden_states=torch.randn(1, 16, 3, 8, 8), timestep=torch.tensor([[900, 600, 300]]))
    animate = family_inputs("wan-animate")  # 3 latent frames (reference + 2)
    g = torch.Generator().manual_seed(3)
    animate_even = dict(animate, hidden_states=torch.randn(1, 12, 4, 8, 8, generator=g),
                        pose_hidden_states=torch.randn(1, 4, 3, 8, 8, generator=g),
                        face_pixel_values=torch.randn(1, 3, 9, 16, 16, generator=g))  # fmt: skip
    # FramePack's packed sequence, 5 latent frames of 4 x 4 (patch 2): 20 latent + 16 clean
    # (4 frames) + 2 (2x history, 4 frames) + 4 (4x history, 16 frames) = 42 tokens (the
    # tiny inputs' 3 frames make 12 + 8 + 1 + 2 = 23, which does not divide: error_framepack_tokens)
    f, g = 5, torch.Generator().manual_seed(4)
    framepack = dict(family_inputs("framepack"), hidden_states=torch.randn(1, 4, f, 4, 4, generator=g),
                     indices_latents=torch.arange(f), latents_clean=torch.randn(1, 4, f - 1, 4, 4, generator=g),
                     indices_latents_clean=torch.arange(f - 1),
                     latents_history_2x=torch.randn(1, 4, f - 1, 4, 4, generator=g),
                     indices_latents_history_2x=torch.arange(f - 1),
                     latents_history_4x=torch.randn(1, 4, (f - 1) * 4, 4, 4, generator=g),
                     indices_latents_history_4x=torch.arange((f - 1) * 4))  # fmt: skip
    hy15 = family_inputs("hunyuan1.5")
    hy15["encoder_attention_mask"][:, 4:] = 0  # 4 real MLLM tokens, 2 padding
    return {
        "vace_ulysses_hooked_added_after": case("wan-vace", U, uly, when="before", extra=("proj_out",)),
        "vace_ring_after_attach": case("wan-vace", CPU_RING, ring, when="after", schedule=True),
        "skyreels_ulysses": case("skyreels-v2", U, uly, when="before", extra=("proj_out",)),
        "skyreels_i2v_ulysses": case("skyreels-v2-i2v", U, uly, when="after"),
        "skyreels_ring": case("skyreels-v2", CPU_RING, ring, when="before"),
        "skyreels_diffusion_forcing": case("skyreels-v2", U, uly, inputs=sky_df, when="before"),
        "animate_ulysses": case("wan-animate", U, uly, inputs=animate_even, when="before", extra=("proj_out",)),
        "animate_ring": case("wan-animate", CPU_RING, ring, inputs=animate_even, when="after"),
        "framepack_ulysses_hooked_added_after": case("framepack", U, uly, inputs=framepack, when="before",
                                                     extra=("proj_out",)),
        "framepack_ring": case("framepack", CPU_RING, ring, inputs=framepack, when="after"),
        "hunyuan15_ulysses_text_padding": case("hunyuan1.5", U, uly, inputs=hy15, when="before", extra=("proj_out",)),
        "hunyuan15_ring_text_padding": case("hunyuan1.5", CPU_RING, ring, inputs=hy15, when="after"),
        "error_framepack_tokens": lambda: _error(lambda: _run(_cp(family_model("framepack"), U, uly),
                                                              family_inputs("framepack"))),
        "error_skyreels_frames": lambda: _error(lambda: _run(_cp(family_model("skyreels-v2"), U, uly), sky_df_odd)),
        "error_animate_frames": lambda: _error(lambda: _run(_cp(family_model("wan-animate"), U, uly), animate)),
    }


_FAMILIES = {"wan": _wan_variants, "hunyuan": _hunyuan_variants, "derived": _derived_variants}


def main(argv: list[str]) -> None:
    family, rank, world, init_file, out_dir = argv[0], int(argv[1]), int(argv[2]), argv[3], argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))  # a rank that died must not hang the other
    # diffusers 0.42.1 picks each rank's device as rank % torch.accelerator.device_count(),
    # which is 0 on a CPU-only torch: these CPU tests stand in a count of 1 (GPU users need nothing).
    torch.accelerator.device_count = lambda: 1
    only = set(argv[5].split(",")) if len(argv) > 5 and argv[5] else None
    results = {}
    for name, case in _FAMILIES[family](world).items():
        if only is not None and name not in only:
            continue
        try:
            results[name] = case()
        except Exception as e:  # reported by the test, with the traceback
            results[name] = {"crash": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
