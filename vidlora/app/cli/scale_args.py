"""Arguments of ``vidlora sweep`` and ``vidlora serve`` (many videos, many GPUs; on Ray).
Imports no torch and no Ray: ``build_parser`` adds these subcommands."""

from __future__ import annotations

import argparse

from .arg_types import positive_int
from .tools_cmd import add_lora_dir_arg

__all__ = ["add_scale_commands"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535; got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535; got {text!r}")
    return value


def add_scale_commands(sub, add_common_args) -> None:
    """Add ``sweep`` and ``serve`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "sweep", help="many videos from one plan (prompts x seeds x LoRAs x strengths), on Ray workers",
        description="Run every job of PLAN (JSON or YAML: a grid of prompts, seeds, LoRA sets and strengths, or a "
        "jobs list) on Ray workers that load the model once and keep it; jobs are grouped by LoRA set so swaps are "
        "rare. Writes one MP4 per job into --out with manifest.jsonl, contact_sheet.png and index.html. Re-running "
        "skips the jobs already made; a failing job is recorded and the others go on (exit 1 if any failed). "
        'Needs Ray: pip install "vidlora[ray]".',
    )  # fmt: skip
    p.add_argument("plan", help="the sweep plan (.json, .yaml or .yml; see the README's sweep section)")
    p.add_argument("--out", required=True, help="folder for the videos, manifest.jsonl, contact_sheet.png, index.html")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="workers (default: one per GPU; on CPU only, one: N shares the cores out)")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster (auto, ray://HOST:10001, ...) instead of starting a local one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_lora_dir_arg(p)
    add_common_args(p)

    p = sub.add_parser(
        "serve", help="an HTTP API (POST /v1/generate) with per-request LoRAs, on Ray Serve",
        description="Serve --model over HTTP on Ray Serve: POST /v1/generate with JSON {prompt, lora: [{model, "
        "weight}], seed, num_frames, size, steps, ...} returns the MP4; GET /v1/loras, GET /healthz. Replicas keep "
        "the model loaded and multiplex LoRA sets (an LRU of --lru sets in host memory each). Binds 127.0.0.1 "
        'unless --host says otherwise. Needs Ray: pip install "vidlora[ray]".',
    )  # fmt: skip
    p.add_argument("--model", default=None, help="Hub id, local diffusers folder, or tiny / tiny:KIND (every replica loads it)")
    p.add_argument("--task", choices=["t2v", "i2v"], default=None, help="default: the model's own (t2v when it does both)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs --token and limits LoRA sources)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    p.add_argument("--replicas", type=positive_int, default=None, help="model replicas (default: one per GPU; one on CPU)")
    p.add_argument("--address", default=None, help="join this Ray cluster instead of starting a local one")
    p.add_argument("--lru", type=positive_int, default=4, help="LoRA sets each replica keeps in host memory (default 4)")
    p.add_argument("--max-queued", type=positive_int, default=8,
                   help="requests that may wait for a replica; past it: 503 (default 8)")
    p.add_argument("--max-jobs", type=positive_int, default=64,
                   help="asynchronous jobs (POST /v1/jobs) held, finished ones with their MP4 (default 64)")
    p.add_argument("--token", default=None,
                   help="bearer token the /v1 routes require (or set VIDLORA_SERVE_TOKEN); needed off loopback")
    p.add_argument("--lora-dir", action="append", default=[], metavar="DIR",
                   help="a LoRA folder (repeatable): requests may name its files by path or name (motion, "
                   "wan/motion.safetensors); off loopback the only place local files may come from")  # fmt: skip
    p.add_argument("--allow-url-host", action="append", default=[], metavar="HOST",
                   help="off loopback, also allow LoRA/image URLs from HOST (the Hub and Civitai always are)")
    p.add_argument("--allow-any-url", action="store_true", help="off loopback, allow URLs from any host")
    p.add_argument("--allow-no-token", action="store_true", help="listen off loopback without a token (behind your own auth)")
    p.add_argument("--max-frames", type=positive_int, default=129, help="most frames a request may ask for (default 129)")
    p.add_argument("--max-steps", type=positive_int, default=100, help="most steps a request may ask for (default 100)")
    p.add_argument("--max-size", type=positive_int, default=1280, help="longest side in pixels a request may ask for (default 1280)")
    p.add_argument("--fp8", nargs="?", const="w8a16", default=None, choices=["w8a16", "w8a8"],
                   help="store the transformer's block weights in FP8 on every replica")
    p.add_argument("--offload", choices=["model", "group", "sequential"], default=None, help="CPU offload on every replica")
    p.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    add_common_args(p)
