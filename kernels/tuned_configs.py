"""Measured kernel configs, stored as data: ``configs/<gpu-name>.json`` (one file per GPU).

Files are written only by ``python -m vidlora.kernels.tuner`` on the GPU they describe
(configs/README.md says how); without a file for the current GPU, or without an entry for a
shape, the launcher uses the documented heuristic in heuristics.py.

Format::

    {"device": "NVIDIA H100 80GB HBM3", "triton": "3.9.0", "date": "...",
     "entries": [{"dtype": "bfloat16", "n": 15360, "k": 5120, "r_bucket": 32,
                  "m_bucket": 32768, "strategy": "shrink_expand",
                  "gemm": {"block_m": 128, ...}, "shrink": {"block_m": 64, ...},
                  "ms": 2.91}]}

Keys: exact N and K (the model widths are few), the rank rounded up to a multiple of 16
(callers pad stacks to 16: DESIGN.md) and M rounded up to a power of two.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path
from typing import Any

import torch

from .heuristics import STRATEGIES, GemmConfig, ShrinkConfig

__all__ = ["CONFIG_DIR", "config_path", "load_tuned", "lookup", "tuned_plan", "rank_bucket", "m_bucket", "entry_json"]

CONFIG_DIR = Path(__file__).with_name("configs")


def rank_bucket(r: int) -> int:
    return -(-r // 16) * 16


def m_bucket(m: int) -> int:
    return max(16, 1 << max(0, m - 1).bit_length())


def config_path(device_name: str, directory: Path | None = None) -> Path:
    """configs/<device name, lower case, runs of other characters as '-'>.json."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")
    return (directory or CONFIG_DIR) / f"{slug}.json"


def entry_json(
    dtype: torch.dtype, n: int, k: int, r: int, m: int, strategy: str,
    gemm: GemmConfig, shrink: ShrinkConfig | None, ms: float,
) -> dict[str, Any]:
    """One entry of a config file, in the format :func:`load_tuned` reads."""
    return {
        "dtype": str(dtype).removeprefix("torch."), "n": n, "k": k,
        "r_bucket": rank_bucket(r), "m_bucket": m_bucket(m), "strategy": strategy,
        "gemm": dataclasses.asdict(gemm), "shrink": dataclasses.asdict(shrink) if shrink else None,
        "ms": ms,
    }  # fmt: skip


def _entry_key(dtype: str, n: int, k: int, r_bucket: int, m_bucket: int) -> tuple:
    return (dtype, n, k, r_bucket, m_bucket)


def _parse_entry(path: Path, i: int, e: dict[str, Any]) -> tuple[tuple, tuple]:
    where = f"{path} entry {i}"
    try:
        strategy = e["strategy"]
        if strategy not in STRATEGIES:
            raise ValueError(f"{where}: unknown strategy {strategy!r}")
        gemm = GemmConfig(**e["gemm"])
        shrink = ShrinkConfig(**e["shrink"]) if e.get("shrink") else None
        if (strategy == "shrink_expand") != (shrink is not None):
            raise ValueError(f"{where}: 'shrink' is required for shrink_expand and only for it")
        key = _entry_key(str(e["dtype"]), int(e["n"]), int(e["k"]), int(e["r_bucket"]), int(e["m_bucket"]))
    except (KeyError, TypeError) as err:
        raise ValueError(f"{where}: malformed tuned config ({err!r})") from err
    return key, (strategy, gemm, shrink)


@functools.lru_cache(maxsize=None)
def load_tuned(path: Path) -> dict[tuple, tuple]:
    """The entries of one config file by key; {} when the file does not exist."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ValueError(f"{path}: a tuned config file must be an object with an 'entries' list")
    return dict(_parse_entry(path, i, e) for i, e in enumerate(data["entries"]))


@functools.lru_cache(maxsize=None)
def _device_config_path(index: int) -> Path:
    return config_path(torch.cuda.get_device_name(index))


def tuned_plan(
    device: torch.device, m: int, n: int, k: int, r: int, dtype: torch.dtype
) -> tuple[str, GemmConfig, ShrinkConfig | None] | None:
    """The measured (strategy, gemm, shrink) for this call, or None (use the heuristic)."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return lookup(load_tuned(_device_config_path(index)), m, n, k, r, dtype)


def lookup(
    entries: dict[tuple, tuple], m: int, n: int, k: int, r: int, dtype: torch.dtype
) -> tuple[str, GemmConfig, ShrinkConfig | None] | None:
    """The entry for (dtype, N, K, rank bucket, M bucket) if it applies to rank ``r``."""
    found = entries.get(_entry_key(str(dtype).removeprefix("torch."), n, k, rank_bucket(r), m_bucket(m)))
    if found is None:
        return None
    strategy, gemm, shrink = found
    if (strategy == "plain") != (r == 0) or (strategy == "fused" and gemm.block_r < r):
        return None  # measured for another rank of the same bucket; heuristic instead
    return found
