"""``vidlora convert | merge | extract | loras``: thin commands over vidlora.lora.tools.

The parsers import no torch (a bad argument costs milliseconds); each command imports the
tools when it runs, prints the tool's report and exits 0. User errors are VidloraErrors
(one line, exit 2, by main's policy).
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["TOOL_COMMANDS", "add_tool_parsers", "add_lora_dir_arg", "run_tool"]

TOOL_COMMANDS = ("convert", "merge", "extract", "loras")
_TARGETS = ("diffusers", "comfyui", "musubi", "original")
_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16", "fp32": "float32",
           "float32": "float32"}  # fmt: skip
_PROJECT = {"wan": ("wan2.1-t2v-14b", "Wan 14B"), "hunyuan-video": ("hunyuan-video-t2v", "HunyuanVideo")}


def add_lora_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lora-dir", action="append", default=[], metavar="DIR",
                   help="a LoRA folder (ComfyUI models/loras, A1111 models/Lora; repeatable, searched before "
                   "VIDLORA_LORA_DIRS): --lora NAME finds NAME.safetensors there, subfolders included")  # fmt: skip


def _dtype(text: str) -> str:
    if text.lower() not in _DTYPES:
        raise argparse.ArgumentTypeError(f"--dtype must be one of bf16, fp16, fp32; got {text!r}")
    return _DTYPES[text.lower()]


def _rank(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"--rank must be a positive integer; got {text!r}")
    return v


def _common(p: argparse.ArgumentParser, add_common) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    p.add_argument("--dtype", type=_dtype, default=None, help="dtype of the written tensors: bf16, fp16 or fp32")
    p.add_argument("--drop-unsupported", action="store_true",
                   help="drop (and list) entries the target naming has no name for, instead of failing")
    p.add_argument("--split-experts", action="store_true",
                   help="Wan 2.2 A14B: one file per expert (OUT_high_noise / OUT_low_noise) even where the target "
                   "has a two-expert form")  # fmt: skip
    add_lora_dir_arg(p)
    add_common(p)


def add_tool_parsers(sub, add_common) -> None:
    p = sub.add_parser("convert", help="rewrite a LoRA in another tool's key naming",
                       description="Rewrite a LoRA of any scheme vidlora reads (W1-W7, H1-H6) in the naming of "
                       "diffusers (W4/H5), ComfyUI (W2/H4), musubi-tuner (W3/H2) or the original checkpoints "
                       "(W1/H1), exactly: alpha kept, Hunyuan's fused qkv/linear1 split or fused, full-tensor deltas "
                       "kept where the target names them, metadata and the source's sha256 carried.")
    p.add_argument("input", metavar="IN", help="the LoRA (any source --lora accepts)")
    p.add_argument("output", metavar="OUT", help="the .safetensors to write")
    p.add_argument("--to", required=True, choices=_TARGETS, help="target naming")
    p.add_argument("--low", default=None, metavar="FILE",
                   help="join: IN is the Wan 2.2 high-noise LoRA, FILE the low-noise one; writes one two-expert file")
    p.add_argument("--model", default=None,
                   help="check the LoRA against this model first and size what the file leaves unsized (a local "
                   "diffusers folder, a Hub id, a built-in config name or tiny:KIND; configs only, no weights)")
    _common(p, add_common)

    p = sub.add_parser("merge", help="bake a stack of LoRAs with strengths into one file",
                       description="Merge LoRAs with strengths into one file: exact by rank concatenation (the file "
                       "at strength 1 is the stack), or re-ranked to --rank R from the stacked factors with the "
                       "relative error per module reported. One input with --rank is a resize.")
    p.add_argument("inputs", nargs="+", metavar="LORA[:W]", help="LoRAs with a strength each (default 1.0)")
    p.add_argument("--out", required=True, help="the .safetensors to write")
    p.add_argument("--rank", type=_rank, default=None, help="re-rank every module to R (default: exact)")
    p.add_argument("--to", choices=_TARGETS, default=None, help="target naming (default: the first input's)")
    _common(p, add_common)

    p = sub.add_parser("extract", help="extract a LoRA from two checkpoints of one model",
                       description="A LoRA from TUNED - BASE (diffusers pipeline or transformer folders, or single "
                       "files in original or diffusers names; bf16/fp16/fp8/fp8-scaled), streamed tensor by tensor "
                       "(peak memory: a few layers), randomized SVD per Linear, alpha = rank, with the relative "
                       "error per module and the time projected for a 14B pair.")
    p.add_argument("base", metavar="BASE")
    p.add_argument("tuned", metavar="TUNED")
    p.add_argument("--rank", type=_rank, required=True)
    p.add_argument("--out", required=True, help="the .safetensors to write")
    p.add_argument("--to", choices=_TARGETS, default="comfyui", help="target naming (default comfyui)")
    p.add_argument("--include-diff", action="store_true",
                   help="also store exact diff/diff_b/diff_m for norms, biases, modulation tables, patch embedding")
    p.add_argument("--model", default=None,
                   help="the model to project the extraction time for (a built-in config name, a Hub id or a local "
                   "folder; default: Wan 14B / HunyuanVideo for the checkpoints' family)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="where the SVDs run (cpu, cuda)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p, add_common)

    p = sub.add_parser("loras", help="list the LoRAs in LoRA folders",
                       description="Each .safetensors file below DIR (default: --lora-dir / VIDLORA_LORA_DIRS): "
                       "family, variant, rank, size, trigger words and sha256, from the headers alone. sha256 is "
                       "computed with --hash and cached by path, size and modification time.")
    p.add_argument("dirs", nargs="*", metavar="DIR")
    p.add_argument("--hash", action="store_true", help="compute the sha256 of files not in the cache")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_lora_dir_arg(p)
    add_common(p)


def _torch_dtype(name: str | None):
    if name is None:
        return None
    import torch

    return getattr(torch, name)


def _experts(args) -> str | None:
    return "split" if args.split_experts else None


def _run_convert(args) -> int:
    from vidlora.lora.tools import convert_lora

    src = {"high": args.input, "low": args.low} if args.low else args.input
    model = _model(args.model) if args.model else None
    report = convert_lora(src, args.output, to=args.to, experts=_experts(args) or ("join" if args.low else None),
                          drop_unsupported=args.drop_unsupported, overwrite=args.overwrite,
                          dtype=_torch_dtype(args.dtype), model=model)  # fmt: skip
    print(report)
    return 0


def _model(name: str):
    """--model: tiny / tiny:KIND, else a local diffusers folder, a built-in config name or a Hub
    id, as a meta-device transformer (its config alone: no weights)."""
    if name.startswith("tiny"):
        from ..tiny import tiny_transformer

        return tiny_transformer(name.split(":", 1)[1] if ":" in name else "wan-t2v")
    from vidlora.model import meta_transformer

    from ..model_configs import transformer_config_from

    return meta_transformer(transformer_config_from(name))


def _run_merge(args) -> int:
    from vidlora.lora.sources import parse_lora_spec
    from vidlora.lora.tools import merge_loras

    inputs = [parse_lora_spec(spec) for spec in args.inputs]
    report = merge_loras(inputs, args.out, rank=args.rank, to=args.to, experts=_experts(args),
                         drop_unsupported=args.drop_unsupported, overwrite=args.overwrite,
                         dtype=_torch_dtype(args.dtype))  # fmt: skip
    print(report)
    return 0


def _run_extract(args) -> int:
    from vidlora.lora.tools import extract_lora

    kwargs = {"dtype": _torch_dtype(args.dtype)} if args.dtype else {}
    report = extract_lora(args.base, args.tuned, args.out, rank=args.rank, to=args.to, include_diff=args.include_diff,
                          device=args.device, experts=_experts(args), overwrite=args.overwrite,
                          progress=not args.quiet, **kwargs)  # fmt: skip
    print(report)
    from vidlora.lora import read_lora

    arch = read_lora(report.outputs[0]).arch
    config, label = (args.model, args.model) if args.model else _PROJECT.get(arch, (None, None))
    if config:
        from ..model_configs import transformer_config_from

        minutes = report.projected_seconds(transformer_config_from(config)) / 60
        print(f"projected for a {label} pair ({config}) on this machine: {minutes:.1f} min, from the measured "
              f"times of these {len(report.timings)} Linears ({report.seconds_per_element() * 1e9:.1f} s per G "
              "weights; peak memory: one Linear's base, tuned and delta in fp32)")  # fmt: skip
    return 0


def _run_loras(args) -> int:
    from vidlora.common.text import format_bytes
    from vidlora.lora.tools import list_loras

    entries = list_loras(args.dirs or None, hash=args.hash)
    if args.json:
        json.dump([e.as_dict() for e in entries], sys.stdout, indent=2)
        print()
        return 0
    for e in entries:
        if e.error:
            print(f"{e.name}  [unreadable: {e.error}]")
            continue
        rank = e.rank if not isinstance(e.rank, list) else f"{e.rank[0]}-{e.rank[-1]}"
        parts = [e.name, e.family, e.variant or "-", e.kind if e.rank is None else f"{e.kind} rank {rank}",
                 format_bytes(e.size), e.scheme]
        if e.trigger_words:
            parts.append("triggers: " + ", ".join(e.trigger_words))
        parts.append(f"sha256 {e.sha256[:12]}" if e.sha256 else "sha256 (--hash)")
        print("  ".join(str(p) for p in parts))
    print(f"{len(entries)} files")
    return 0


def run_tool(args) -> int:
    return {"convert": _run_convert, "merge": _run_merge, "extract": _run_extract, "loras": _run_loras}[args.command](args)
