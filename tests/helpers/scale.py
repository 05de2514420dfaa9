"""For the sweep and serve tests: a real local Ray cluster (one per test module), the LoRA
files they use, and MP4 frames decoded back.

Ray is an optional extra; the README's test command installs it. Outside CI a missing
Ray skips these tests; in CI (``CI`` set) it is an error, so they can never skip there.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

__all__ = ["ray_or_skip", "local_ray", "scale_loras", "decoded", "free_port"]


def ray_or_skip():
    if os.environ.get("CI"):
        import ray  # noqa: F401 - CI installs the ray extra: failing here is the point

        return ray
    return pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[test,ray]"')


def local_ray(num_cpus: int = 2):
    """Start a real local Ray cluster for a test module (Ray 2.60 has no local mode)."""
    import logging

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             object_store_memory=256 * 1024 * 1024)  # fmt: skip
    return ray


def scale_loras(folder: Path) -> dict[str, Path]:
    """The demo's motion LoRA (it fits the tiny T2V model), a second one with other
    weights ("motion_b": its up factors negated and halved), a truncated copy, a
    HunyuanVideo LoRA (another model) and a pickle."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from vidlora.app.tiny import write_demo_assets

    folder.mkdir(parents=True, exist_ok=True)
    assets = write_demo_assets(folder.parent / f"{folder.name}-demo")  # beside: one "motion" in the folder
    motion = folder / "motion.safetensors"
    shutil.copy(assets["motion"], motion)
    with safe_open(str(motion), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    other = {k: (-0.5 * v if "lora_up" in k else v) for k, v in tensors.items()}
    save_file(other, str(folder / "motion_b.safetensors"), metadata=metadata)
    data = motion.read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.randn(2, 3072),
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.randn(3072, 2)},
              str(folder / "hunyuan.safetensors"))  # fmt: skip
    (folder / "weights.ckpt").write_bytes(b"\x80\x04K\x01.")
    return {name: folder / f"{name}.safetensors" for name in ("motion", "motion_b", "truncated", "hunyuan")} | {
        "pickle": folder / "weights.ckpt"
    }


def decoded(path_or_bytes, tmp: Path | None = None) -> np.ndarray:
    """An MP4's frames, uint8 [F, H, W, 3]."""
    import imageio.v3 as iio

    if isinstance(path_or_bytes, (bytes, bytearray)):
        assert tmp is not None
        tmp.write_bytes(path_or_bytes)
        path_or_bytes = tmp
    return np.asarray(iio.imread(path_or_bytes))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
