"""The ``vidlora`` argument parser. Imports no torch: a bad argument costs milliseconds.

Value types check what they can alone (sizes, positive counts, finite numbers, a positive
flow shift); rules that need the model's configs live in ``plan.py``.
"""

from __future__ import annotations

import argparse

from ..pipelines.info import DEFAULT_MODELS
from .arg_types import finite_float, positive_float, positive_int, size
from .tools_cmd import add_lora_dir_arg, add_tool_parsers
from .scale_args import add_scale_commands

__all__ = ["build_parser", "EXIT_USER_ERROR"]

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one vidlora-style line."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_USER_ERROR, f"vidlora: error: {message} (see `{self.prog} --help`)\n")


def _flow_shift(text: str) -> float:
    v = finite_float(text)
    if v <= 0:
        # 0 collapses every sigma to 0 and a negative shift flips them: the whole loop
        # would run and decode NaN frames
        raise argparse.ArgumentTypeError(f"the flow shift must be > 0 (Wan uses 3.0 at 480p, 5.0 at 720p); got {text!r}")
    return v


def _add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true",
                   help="print the full traceback of an error from inside the pipeline (or set VIDLORA_DEBUG=1)")


def _strength(text: str) -> float:
    v = finite_float(text)
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"--strength is the share of the input video re-noised, in (0, 1]; got {text!r}")
    return v


def _add_input_args(p: argparse.ArgumentParser, task: str) -> None:
    """The inputs beyond a prompt: an input video (v2v), VACE's references and mask, an end frame."""
    if task == "i2v":
        p.add_argument("--image", required=True, help="input image (PNG/JPEG/WebP); centre-cropped to the video's aspect ratio when it differs")
        p.add_argument("--last-image", default=None,
                       help="end frame (Wan 2.1 FLF2V, FramePack): the video goes from --image to it")
    if task == "v2v":
        p.add_argument("--video", required=True, help="input video (MP4 or any format ffmpeg reads)")
        p.add_argument("--strength", type=_strength, default=None,
                       help="share of the input video re-noised, in (0, 1] (Wan V2V; default the pipeline's 0.8)")
    p.add_argument("--reference-image", action="append", default=None, metavar="IMAGE",
                   help="VACE: a subject / style reference image (repeatable)")
    p.add_argument("--mask", default=None,
                   help="VACE v2v: an image or video, white where the input video is regenerated, black where kept")


def _add_generation_args(p: argparse.ArgumentParser, task: str) -> None:
    _add_input_args(p, task)
    p.add_argument("--prompt", required=True, help="text prompt")
    p.add_argument("--negative-prompt", default=None, help="negative prompt (default: the model's usual one)")
    p.add_argument(
        "--lora", action="append", default=[], metavar="SOURCE[:W]",
        help="LoRA to stack (repeatable): a local .safetensors, owner/repo[/file.safetensors] on the Hub, an "
        "https:// URL or civitai:MODEL@VERSION; :W is a strength (any float, default 1.0) or a comma list "
        "spread over the steps (:0.9,0.8,0.7)",
    )
    p.add_argument("--lora-high", action="append", default=[], metavar="SOURCE[:W]",
                   help="LoRA for the high-noise expert only (Wan 2.2 A14B)")
    p.add_argument("--lora-low", action="append", default=[], metavar="SOURCE[:W]",
                   help="LoRA for the low-noise expert only (Wan 2.2 A14B)")
    p.add_argument("--model", default=None,
                   help="Hugging Face Hub id or local diffusers folder; 'tiny' = the embedded tiny model "
                   f"(default: {DEFAULT_MODELS[task]})")
    p.add_argument("--fp8", nargs="?", const="w8a16", default=None, choices=["w8a16", "w8a8"],
                   help="store the transformer's block weights in FP8 (e4m3) with the LoRAs kept exact "
                   "(default mode w8a16; w8a8 also quantizes activations, sm_89+)")
    p.add_argument("--frames", type=positive_int, default=None,
                   help="number of frames (Wan: 4k+1; default: the model's own, 81 for Wan)")
    p.add_argument("--steps", type=positive_int, default=None, help="denoising steps (default: the model's own, 30 for Wan)")
    p.add_argument("--guidance", type=finite_float, default=None, help="guidance scale (default: the model's own, 5.0 for Wan)")
    p.add_argument("--guidance-2", type=finite_float, default=None, help="Wan 2.2 low-noise expert guidance scale")
    p.add_argument("--flow-shift", type=_flow_shift, default=None,
                   help="scheduler flow shift, > 0 (distill LoRAs need a given one)")
    p.add_argument("--size", type=size, default=None, help="WIDTHxHEIGHT (default: the model's own, 832x480 for Wan 480p)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--fps", type=positive_float, default=None, help="output fps (default: Wan 16, HunyuanVideo 24)")
    p.add_argument("--offload", choices=["model", "group", "sequential"], default=None,
                   help="CPU offload so big models fit small GPUs (diffusers' model / group / sequential offload)")
    p.add_argument("--out", default=None, help="output .mp4 (default: out.mp4)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    p.add_argument("--gpus", type=positive_int, default=None,
                   help="split one video over N GPUs (context parallelism): the command runs itself again under "
                   "torch.distributed.run, one process per GPU; with --device cpu, N CPU processes (gloo)")
    p.add_argument("--ulysses", type=positive_int, default=None,
                   help="with --gpus: the Ulysses degree (default: gpus / ring); the model's heads must divide by it")
    p.add_argument("--ring", type=positive_int, default=None, help="with --gpus: the ring attention degree (default 1)")
    p.add_argument("--auto-trigger", action="store_true", help="append the LoRAs' trigger words missing from the prompt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_lora_dir_arg(p)
    _add_common_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vidlora", description="Fused LoRA video generation for Wan 2.1/2.2 and HunyuanVideo.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("i2v", help="image to video with stacked LoRAs",
                       description="Image to video with stacked LoRAs (Wan 2.1/2.2 I2V, HunyuanVideo I2V); writes an MP4.")
    _add_generation_args(p, "i2v")
    p = sub.add_parser("v2v", help="video to video with stacked LoRAs",
                       description="Video to video with stacked LoRAs (Wan V2V on a Wan T2V model, Wan VACE, "
                       "SkyReels V2 DF V2V); writes an MP4.")
    _add_generation_args(p, "v2v")
    p = sub.add_parser("t2v", help="text to video with stacked LoRAs",
                       description="Text to video with stacked LoRAs (Wan 2.1/2.2, HunyuanVideo); writes an MP4.")
    _add_generation_args(p, "t2v")

    p = sub.add_parser("inspect", help="what a LoRA file holds, and whether it fits a model",
                       description="Scheme, family and variant (with the evidence), ranks, alpha, module counts, "
                       "trigger words and training metadata of a LoRA; with --model, whether it fits that model "
                       "(checked on its config alone: no weights are downloaded). Exit 1 when it does not fit.")
    p.add_argument("file", help="LoRA file (or any source --lora accepts)")
    p.add_argument("--model", default=None,
                   help="check against this model: a Hub id, a local diffusers folder, a built-in config name "
                   "(e.g. wan2.1-t2v-1.3b) or tiny / tiny:KIND")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_lora_dir_arg(p)
    _add_common_args(p)

    p = sub.add_parser("demo", help="generate a short video on the embedded tiny model with two stacked LoRAs",
                       description="Writes an example image and two LoRA files for the embedded tiny Wan I2V model, "
                       "then generates with both stacked (one on a strength schedule) over an FP8 base, and beside "
                       "--out a comparison video (no LoRA | motion | motion + style).")
    p.add_argument("--out", default="demo.mp4", help="output .mp4 (default demo.mp4; the comparison goes to demo-compare.mp4)")
    p.add_argument("--overwrite", action="store_true", help="replace --out (and its comparison) if they exist")
    p.add_argument("--workdir", default=None, help="where the example image and LoRAs go (default: beside --out)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_common_args(p)

    add_tool_parsers(sub, _add_common_args)  # convert, merge, extract, loras

    p = sub.add_parser("bench", help="run the benchmark suite",
                       description="Run the benchmark suite (needs the bench extra: pip install 'vidlora[bench]'); "
                       "see benchmarks/README.md.")
    p.add_argument("--quick", action="store_true", help="CPU-sized measurements only (a few minutes)")
    p.add_argument("--only", action="append", default=None, metavar="NAME", help="run only this benchmark (repeatable)")
    p.add_argument("--out", default=None,
                   help="results folder (default: bench-results in the vidlora cache, $VIDLORA_CACHE)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    _add_common_args(p)

    p = sub.add_parser("tune", help="measure the kernels' path choice for a model's shapes ahead of time (CUDA)",
                       description="Measure the first-use kernel path choice for every Linear shape of a model "
                       "(from its configs on the meta device, no weights) at one forward's token count, with no "
                       "adapter and at each --rank; cached on disk per GPU, so later runs skip it. Needs CUDA; "
                       "--list prints the shape classes anywhere.")
    p.add_argument("--model", default=None, help="Hub id, local diffusers folder, tiny / tiny:KIND, or a built-in "
                   "transformer config name (e.g. wan2.1-t2v-14b, with --tokens)")  # fmt: skip
    p.add_argument("--task", choices=["t2v", "i2v"], default="t2v", help="the pipeline's task (default t2v)")
    p.add_argument("--size", type=size, default=None, help="WIDTHxHEIGHT of the videos (default: the model's)")
    p.add_argument("--frames", type=positive_int, default=None, help="frames of the videos (default: the model's)")
    p.add_argument("--tokens", type=positive_int, default=None, help="latent tokens per forward, instead of size/frames")
    p.add_argument("--context-tokens", type=positive_int, default=512,
                   help="rows of the text side (cross-attention k/v, HunyuanVideo's text stream; default 512)")
    p.add_argument("--rank", type=positive_int, action="append", default=None,
                   help="LoRA rank to tune for (repeatable; default 32; no adapter is always tuned)")
    p.add_argument("--fp8", choices=["w8a16", "w8a8"], default=None, help="the FP8 base you will run with")
    p.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16", help="compute dtype (default bf16)")
    p.add_argument("--list", action="store_true", help="print the shape classes, measure nothing")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_common_args(p)

    # many videos, many GPUs (Ray): sweep, serve
    add_scale_commands(sub, _add_common_args)
    return parser


def _version() -> str:
    from vidlora._version import __version__

    return f"vidlora {__version__}"
