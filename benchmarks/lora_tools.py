"""The LoRA tools at the sizes users meet: ``vidlora loras`` on a folder of 200 files, and
``vidlora extract`` on one real-shape Wan 14B block pair, projected to the whole 14B pair.

    vidlora bench --only lora_tools

loras: 200 generated Wan 14B LoRA files in musubi's naming (40 blocks x 10 Linears at the
real 14B shapes, rank 4, 1,200 keys with alpha; the tensor bytes are a sparse hole, since
listing reads the header and the alpha scalars, never the weights), listed from their
headers three times (the fastest is kept); ``value`` is ms per file. Goal: <= 25 ms per file (200 files
in 5 s on a 2-core VM). With --hash the sha256 of every file is computed once and cached; the listing
after it reads the cache.

extract: base and tuned checkpoints holding one Wan 14B block in original names (q/k/v/o
of self and cross attention at 5120 x 5120, the FFN at 13824 x 5120 and 5120 x 13824;
bf16, 0.70 GB each), the tuned one with a rank-16 delta on every Linear; extracted at
rank 32 on the CPU. The measured per-Linear times give the projection for the whole Wan
2.1 14B pair (``ExtractReport.projected_seconds``: each of the real model's Linears takes
the mean measured time of its shape, the 10 top-level ones the measured seconds per
weight). Peak memory is one Linear pair and its delta: 3 x 283 MB for the FFN in fp32.
"""

from __future__ import annotations

import json
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .rows import RunContext, goal_row

__all__ = ["BENCHMARK", "run"]

BENCHMARK = "lora_tools"
_FILES = 200
_GOAL_MS_PER_FILE = 25.0
_WIDTH_14B, _FFN_14B = 5120, 13824


def _sparse_lora(path: Path, shapes: dict[str, tuple[int, int]], rank: int, meta: dict[str, str]) -> None:
    """A musubi-style LoRA file at real shapes whose tensor bytes are a sparse hole (zeros,
    no disk blocks): listing reads the header and the alpha scalars, never the weights, so
    only the header's size matters. The alphas (1.0, musubi's default) are written for real."""
    header: dict = {"__metadata__": meta}
    offset, alphas = 0, []
    for b in range(40):
        for name, (out, inp) in shapes.items():
            key = f"lora_unet_blocks_{b}_{name.replace('.', '_')}"
            for suffix, shape in ((".lora_down.weight", [rank, inp]), (".lora_up.weight", [out, rank])):
                n = shape[0] * shape[1] * 2
                header[key + suffix] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
                offset += n
            header[key + ".alpha"] = {"dtype": "F32", "shape": [], "data_offsets": [offset, offset + 4]}
            alphas.append(offset)
            offset += 4
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        base = f.tell()
        for a in alphas:
            f.seek(base + a)
            f.write(struct.pack("<f", 1.0))
        f.truncate(base + offset)


def _write_folder(folder: Path, files: int) -> None:
    w, ffn, rank = _WIDTH_14B, _FFN_14B, 4
    shapes = {"self_attn.q": (w, w), "self_attn.k": (w, w), "self_attn.v": (w, w), "self_attn.o": (w, w),
              "cross_attn.q": (w, w), "cross_attn.k": (w, w), "cross_attn.v": (w, w), "cross_attn.o": (w, w),
              "ffn.0": (ffn, w), "ffn.2": (w, ffn)}  # fmt: skip
    for i in range(files):
        sub = folder / ("wan" if i % 2 else "other")
        sub.mkdir(exist_ok=True)
        meta = {"modelspec.trigger_phrase": f"style{i}", "ss_base_model_version": "wan", "ss_network_dim": str(rank)}
        _sparse_lora(sub / f"lora_{i:03d}.safetensors", shapes, rank, meta)


def _time_listing(folder: Path, cache: Path, hash: bool, repeats: int) -> float:
    from vidlora.lora.tools import list_loras

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        entries = list_loras([folder], hash=hash, cache=cache)
        best = min(best, time.perf_counter() - t0)
        assert len(entries) == _FILES and not any(e.error for e in entries), [e.error for e in entries if e.error][:1]
    return best


def _loras(ctx: RunContext) -> Iterator[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp, "loras"), Path(tmp, "sha256.json")
        folder.mkdir()
        _write_folder(folder, _FILES)
        size = sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
        headers = _time_listing(folder, cache, hash=False, repeats=3)
        row = ctx.row(BENCHMARK, f"loras: {_FILES} files, 1200 keys each", "vidlora", "time per file",
                      headers / _FILES * 1e3, "ms", files=_FILES, total_s=headers, folder_bytes=size)  # fmt: skip
        yield goal_row(row, f"listing <= {_GOAL_MS_PER_FILE:g} ms per file", _GOAL_MS_PER_FILE, key="value")
        hashing = _time_listing(folder, cache, hash=True, repeats=1)
        yield ctx.row(BENCHMARK, f"loras --hash: {_FILES} files (first run)", "vidlora", "time per file",
                      hashing / _FILES * 1e3, "ms", files=_FILES, total_s=hashing, folder_bytes=size)  # fmt: skip
        cached = _time_listing(folder, cache, hash=True, repeats=3)
        yield ctx.row(BENCHMARK, f"loras --hash: {_FILES} files (cached)", "vidlora", "time per file",
                      cached / _FILES * 1e3, "ms", files=_FILES, total_s=cached)  # fmt: skip


def _write_block(path: Path, tuned: bool) -> None:
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    w, f = _WIDTH_14B, _FFN_14B
    shapes = {"self_attn.q": (w, w), "self_attn.k": (w, w), "self_attn.v": (w, w), "self_attn.o": (w, w),
              "cross_attn.q": (w, w), "cross_attn.k": (w, w), "cross_attn.v": (w, w), "cross_attn.o": (w, w),
              "ffn.0": (f, w), "ffn.2": (w, f)}  # fmt: skip
    state = {}
    dgen = torch.Generator().manual_seed(1)
    for name, shape in shapes.items():
        t = torch.randn(shape, generator=gen).mul_(0.02)
        if tuned:
            t += 1e-3 * (torch.randn(shape[0], 16, generator=dgen) @ torch.randn(16, shape[1], generator=dgen))
        state[f"model.diffusion_model.blocks.0.{name}.weight"] = t.to(torch.bfloat16)
        del t
    save_file(state, str(path))


def _extract(ctx: RunContext) -> Iterator[dict[str, Any]]:
    from vidlora.lora.tools import extract_lora

    with tempfile.TemporaryDirectory() as tmp:
        base, tuned = Path(tmp, "base.safetensors"), Path(tmp, "tuned.safetensors")
        _write_block(base, tuned=False)
        _write_block(tuned, tuned=True)
        t0 = time.perf_counter()
        report = extract_lora(base, tuned, Path(tmp, "lora.safetensors"), rank=32, progress=False, device=ctx.device)
        wall = time.perf_counter() - t0
        case = "extract: one Wan 14B block pair (bf16), rank 32"
        yield ctx.row(BENCHMARK, case, "vidlora", "time per block", wall, "s", linears=len(report.timings),
                      per_linear_s=[round(t, 3) for _, t in report.timings],
                      s_per_gweight=report.seconds_per_element() * 1e9, worst_error=max(report.errors.values()))
        projected = report.projected_seconds("wan2.1-t2v-14b")
        yield ctx.row(BENCHMARK, "extract: Wan 2.1 14B pair (projected from the block)", "vidlora",
                      "projected time", projected / 60, "min", source="measured per-Linear times of the block",
                      peak_memory_note="one Linear pair + delta in fp32 (FFN: 3 x 283 MB)")  # fmt: skip


def run(ctx: RunContext) -> Iterator[dict[str, Any]]:
    yield from _loras(ctx)
    yield from _extract(ctx)
