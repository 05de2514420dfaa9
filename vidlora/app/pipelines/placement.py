"""Where a loaded pipeline runs: all of it on one device, or offloaded to CPU memory and
brought to the device as it runs (diffusers' three offload modes)."""

from __future__ import annotations

from vidlora.errors import VidloraError

__all__ = ["OFFLOAD_MODES", "place_pipeline", "apply_offload"]

OFFLOAD_MODES = ("model", "group", "sequential")


def place_pipeline(pipe, device: str, offload: str | None = None) -> None:
    """Put ``pipe`` where it runs: all of it on ``device``, or offloaded (OFFLOAD_MODES)."""
    if offload is None:
        pipe.to(device)
    else:
        apply_offload(pipe, offload, device)


def apply_offload(pipe, mode: str, device: str = "cuda") -> None:
    """Keep the weights in CPU memory and bring them to ``device`` as they run.

    "model": one whole component at a time (diffusers' enable_model_cpu_offload); a 14B
        transformer must fit in GPU memory on its own (in FP8: ~15 GB).
    "group": one transformer block at a time, prefetched on a side CUDA stream
        (enable_group_offload, block level): near "model" speed, a fraction of its memory.
    "sequential": one layer at a time (enable_sequential_cpu_offload): least memory,
        slowest.
    Blocks are offloaded whole, so modules vidlora patched inside them move with them.
    """
    import torch

    if mode not in OFFLOAD_MODES:
        raise VidloraError(f"offload mode must be one of {', '.join(OFFLOAD_MODES)}; got {mode!r}")
    device = torch.device(device)
    if mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.enable_group_offload(
            onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level",
            num_blocks_per_group=1, use_stream=device.type == "cuda",
        )
