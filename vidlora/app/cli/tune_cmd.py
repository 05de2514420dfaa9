"""``vidlora tune``: measure the kernels' first-use path choice for a model's Linear shapes
ahead of time, so the first denoising step of a later run does not pay for it.

    vidlora tune --model Wan-AI/Wan2.1-T2V-14B-Diffusers --size 832x480 --frames 81 --rank 32
    vidlora tune --model wan2.1-t2v-14b --tokens 32760 --list     # the shape classes only

The shapes come from the model's transformer config on the meta device (no weights are
read): every Linear vidlora patches, q/k/v fused as at run time, at the rows it sees in
one forward: the video tokens (latent frames x latent height x latent width over the
patch, from the pipeline's configs and the size and frames rounded as ``t2v``/``i2v``
round them; ``--tokens`` overrides, and is needed for a bare transformer config name),
``--context-tokens`` for the text side (cross-attention k/v, HunyuanVideo's text stream;
default 512, Wan's text length), 1 for the modulation Linears (the family specs say which
Linear is which; HunyuanVideo's single-stream blocks are counted at the video tokens,
though the text tokens join them there). Each shape is measured with
no adapter (R = 0: the base path, never slower than ``F.linear``) and once per ``--rank``
(an adapter of that rank on every Linear; a fused unit stores its parts' ranks together,
padded to 16). The choices go to the path cache on disk
(``vidlora.kernels.kernel_cache_dir()``, per GPU name and versions), where every later
process on this machine finds them. Needs a CUDA device: on a CPU vidlora runs the torch
reference and there is nothing to choose (``--list`` works anywhere).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from vidlora.errors import VidloraError

from .console import quiet_libraries
from .stages import stage

__all__ = ["run_tune", "TunePlan", "tune_plan"]

_DTYPES = ("bf16", "fp16")


@dataclass(frozen=True)
class TunePlan:
    model: str
    tokens: int
    where: str  # how the token count was found
    cases: list  # vidlora.kernels.ShapeCase, one per distinct Linear call


def _tokens_from_pipeline(model: str | None, task: str, size, frames) -> tuple[int, str, str]:
    """(tokens, the transformer's location, how) from the pipeline's configs."""
    from ..pipelines.checks import round_frames, round_size
    from ..pipelines.info import model_info

    info = model_info(model, task)
    frames, _ = round_frames(frames or info.default_frames, info)
    width, height, _ = round_size(*(size or info.default_size), info)
    latent_frames = (frames - 1) // info.frame_step + 1
    tokens = latent_frames * (height // info.size_multiple) * (width // info.size_multiple)
    how = f"{width}x{height}, {frames} frames: {latent_frames} x {height // info.size_multiple} x {width // info.size_multiple}"
    return tokens, info.location, how


def tune_plan(model: str | None, task: str, size=None, frames=None, tokens: int | None = None,
              ranks=(32,), fp8: str | None = None, dtype: str = "bf16", context_tokens: int = 512) -> TunePlan:  # fmt: skip
    """The shape classes ``vidlora tune`` measures (see the module doc)."""
    import torch

    import vidlora
    from vidlora.model import REAL_CONFIGS, meta_transformer

    from ..model_configs import transformer_config_from

    if model in REAL_CONFIGS:
        if tokens is None:
            raise VidloraError(f"--model {model} is a transformer config, not a pipeline: give --tokens N (latent "
                               "tokens per forward; Wan at 832x480 and 81 frames: 32760)")  # fmt: skip
        location, where = model, f"--tokens {tokens}"
    else:
        counted, location, where = _tokens_from_pipeline(model, task, size, frames)
        if tokens is not None:
            where = f"--tokens {tokens} (the configs give {counted}: {where})"
        tokens = tokens or counted
    transformer = meta_transformer(transformer_config_from(location))
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    for lin in transformer.modules():  # the Linears only (diffusers keeps norms etc. in fp32)
        if type(lin) is torch.nn.Linear:
            lin.to(torch_dtype)
    h = vidlora.attach(transformer, fp8=fp8)
    cases = h.kernel_shapes(tokens, context_tokens, ranks=(0, *ranks))
    h.detach()
    return TunePlan(model=str(model or "the default model"), tokens=tokens, where=where, cases=cases)


def run_tune(args) -> int:
    if not args.list:
        import torch

        if not torch.cuda.is_available():
            raise VidloraError("vidlora tune measures GPU kernel paths and this machine has no CUDA device (on a CPU "
                               "vidlora runs the torch reference: nothing to choose); --list prints the shape classes")  # fmt: skip
    quiet_libraries(progress=False)
    with stage("reading the model's configs"):
        plan = tune_plan(args.model, args.task, args.size, args.frames, args.tokens, tuple(args.rank), args.fp8, args.dtype,
                         args.context_tokens)  # fmt: skip
    rows = [{"m": c.m, "n": c.n, "k": c.k, "r": c.r, "dtype": str(c.dtype).removeprefix("torch."), "bias": c.bias,
             "fp8": c.fp8} for c in plan.cases]  # fmt: skip
    if not args.list:
        from vidlora.kernels import kernel_cache_dir, warm_up

        with stage("measuring the kernel paths"):
            records = warm_up(plan.cases, "cuda")
        for row, rec in zip(rows, records):
            row.update(chosen=rec.get("chosen"), timings_ms=rec.get("timings_ms"), excluded=rec.get("excluded"))
    if args.json:
        json.dump({"model": plan.model, "tokens": plan.tokens, "tokens_from": plan.where, "shapes": rows}, sys.stdout,
                  indent=2, default=str)  # fmt: skip
        print()
        return 0
    print(f"{plan.model}: {len(rows)} Linear shape classes at {plan.tokens} tokens ({plan.where})")
    for row in rows:
        line = (f"  M={row['m']:>6} N={row['n']:>6} K={row['k']:>6} R={row['r']:>4} {row['dtype']}"
                f"{' ' + row['fp8'] if row['fp8'] else ''}")
        if "chosen" in row:
            best = (row["timings_ms"] or {}).get(row["chosen"])
            line += f"  -> {row['chosen']}" + (f" ({best:.3f} ms)" if best is not None else "")
            if row["excluded"]:
                line += f"  excluded: {', '.join(row['excluded'])}"
        print(line)
    if not args.list:
        print(f"choices cached in {kernel_cache_dir()}")
    return 0
