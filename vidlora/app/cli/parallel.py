"""``--gpus N``: one video on N GPUs from the command line (context parallelism).

    vidlora t2v --prompt ... --gpus 4                # Ulysses over 4 GPUs
    vidlora t2v --prompt ... --gpus 8 --ulysses 4 --ring 2
    torchrun --nproc_per_node 4 -m vidlora t2v ...   # under a launch of your own: same thing

1. The launching process checks, before torch is imported, the split itself: Ulysses x
   ring = N, the heads divide by the Ulysses degree, the video's tokens divide by N (from
   the configs: frames, size, VAE factors, patch). Then how many GPUs torch sees (fewer
   than N is an error), then it runs the same command line N times under
   ``torch.distributed.run`` (one process per GPU, NCCL; ``--device cpu``: N CPU processes
   over gloo, which is how the tests run it) and returns their exit code.
2. Under ``torchrun`` (relaunched, or the user's own), each rank joins the process group,
   takes GPU ``LOCAL_RANK``, loads and patches the pipeline, and turns on
   ``vidlora.context_parallel``. Only rank 0 prints, shows progress, decodes and writes
   the MP4; its settings record the layout (``"parallel": {gpus, ulysses, ring, backend}``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from vidlora.errors import VidloraError

__all__ = ["ParallelRun", "parallel_run", "check_split", "relaunch", "SilentMessages", "rank_prefix"]


@dataclass
class ParallelRun:
    """The layout of a ``--gpus`` run. ``launched``: this process is one of the ranks."""

    gpus: int
    ulysses: int
    ring: int
    launched: bool
    rank: int = 0
    local_rank: int = 0
    backend: str = ""
    handle: object = None  # vidlora ContextParallel, once enabled

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def record(self) -> dict:
        """What the MP4's settings say about the layout."""
        return {"gpus": self.gpus, "ulysses": self.ulysses, "ring": self.ring, "backend": self.backend}

    # ------------------------------------------------------------------ on each rank
    def start(self, device: str) -> None:
        """Join the process group (NCCL on CUDA, gloo on CPU) and take this rank's GPU."""
        import torch
        import torch.distributed as dist

        self.backend = "nccl" if device == "cuda" else "gloo"
        if device == "cuda":
            torch.cuda.set_device(self.local_rank)  # "cuda" now means this rank's GPU
        if not dist.is_initialized():
            dist.init_process_group(self.backend)

    def enable(self, pipe) -> None:
        """context_parallel on the placed pipeline (ring: a backend that returns the
        log-sum-exp, chosen for the device)."""
        import warnings

        import diffusers

        import vidlora

        # diffusers' notes ("experimental feature", "split will not be applied" for Wan's
        # 1-D timestep, torch's deprecation of all_gather_tensor) say nothing a user can act on
        diffusers.utils.logging.set_verbosity_error()
        warnings.filterwarnings("ignore", message=r".*all_gather_tensor.*", category=FutureWarning)
        self.handle = vidlora.context_parallel(pipe, ulysses=self.ulysses, ring=self.ring, attention_backend="auto")

    def finish(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()  # rank 0 has written the MP4
            dist.destroy_process_group()


def parallel_run(args) -> ParallelRun | None:
    """The run's layout from ``--gpus/--ulysses/--ring`` and a torchrun environment, or
    None for one process. Checks the numbers (no torch)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    launched = world > 1
    gpus, ulysses, ring = getattr(args, "gpus", None), getattr(args, "ulysses", None), getattr(args, "ring", None)
    if launched and gpus is not None and gpus != world:
        raise VidloraError(f"--gpus {gpus}, but this torchrun launch has {world} processes: drop --gpus under torchrun, "
                           f"or make them match")  # fmt: skip
    gpus = world if launched else (gpus or 1)
    if gpus == 1:
        if (ulysses or 1) > 1 or (ring or 1) > 1:
            raise VidloraError("--ulysses/--ring split one video over several GPUs: give --gpus N too")
        return None
    ring = ring or 1
    if gpus % ring:
        raise VidloraError(f"--ring {ring} does not divide --gpus {gpus}")
    ulysses = ulysses or gpus // ring
    if ulysses * ring != gpus:
        raise VidloraError(f"--ulysses {ulysses} x --ring {ring} = {ulysses * ring}, but --gpus is {gpus}: the product "
                           f"must equal the number of GPUs")  # fmt: skip
    return ParallelRun(gpus=gpus, ulysses=ulysses, ring=ring, launched=launched,
                       rank=int(os.environ.get("RANK", "0")), local_rank=int(os.environ.get("LOCAL_RANK", "0")))  # fmt: skip


def check_split(par: ParallelRun, plan) -> None:
    """The split checks that need only the configs: heads and tokens (see the docstring)."""
    info = plan.info
    config = (info.configs or {}).get("transformer") or {}
    heads = int(config.get("num_attention_heads") or 0)
    if heads and heads % par.ulysses:
        fits = [d for d in range(2, par.gpus + 1) if heads % d == 0 and par.gpus % d == 0]
        hint = f"--ulysses {fits[-1]} --ring {par.gpus // fits[-1]}" if fits else f"--ring {par.gpus}"
        raise VidloraError(f"{info.family} has {heads} attention heads, which do not divide by --ulysses "
                           f"{par.ulysses} (Ulysses gives each GPU heads/ulysses of them): use {hint}")  # fmt: skip
    p_t, p_h, p_w = info.patch
    latent_frames = (plan.frames + info.dropped_frames - 1) // info.vae_temporal + 1
    grid = (latent_frames // p_t, plan.height // info.vae_spatial // p_h, plan.width // info.vae_spatial // p_w)
    tokens = grid[0] * grid[1] * grid[2]
    if tokens % par.gpus:
        raise VidloraError(
            f"{plan.width}x{plan.height} at {plan.frames} frames makes {grid[0]} x {grid[1]} x {grid[2]} = {tokens} "
            f"video tokens, which do not divide by --gpus {par.gpus}: choose a --size or --frames whose token count "
            f"divides by {par.gpus}"
        )


def relaunch(par: ParallelRun, argv: list[str], device: str | None) -> int:
    """Run ``vidlora <argv>`` on ``par.gpus`` processes under torch.distributed.run; the
    exit code of the launch (the first failing rank's)."""
    import torch

    if device == "cpu" and torch.accelerator.device_count() == 0:
        raise VidloraError(
            f"--gpus {par.gpus} --device cpu: diffusers 0.42.1's context parallelism picks each rank's device as "
            "rank % torch.accelerator.device_count(), and this torch sees no accelerator (0). CPU processes over "
            "gloo need a CUDA build of torch on a machine with a GPU; on GPUs, drop --device cpu"
        )
    if device != "cpu":
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if have < par.gpus:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
            fix = f"ask for at most {have}" if have else "check the driver"
            raise VidloraError(f"--gpus {par.gpus}: torch sees {have} CUDA GPU{'s' if have != 1 else ''}{where}; "
                               f"{fix} (--device cpu runs {par.gpus} CPU processes instead, to check a setup)")  # fmt: skip
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, without its warning
    import logging

    # a failing rank already printed its one line; the launcher's own report would repeat it as a log dump
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    launch = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={par.gpus}", "-m", "vidlora", *argv]
    )
    try:
        run(launch)
    except ChildFailedError as e:  # each rank already printed its one-line error
        codes = [f.exitcode for f in e.failures.values()]
        return next((c for c in codes if c > 0), 1)
    return 0


class SilentMessages:
    """The console of a rank other than 0: it says nothing (rank 0 says it once)."""

    def print(self, text: str, style: str | None = None) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def warn(self, text: str) -> None:
        pass


def _silent_rank() -> bool:
    """A rank other than 0 of a torchrun launch (prints nothing but its own errors)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and os.environ.get("RANK", "0") != "0"


def rank_prefix() -> str:
    """ "[rank 1] " in the error lines of ranks other than 0 (an error can be one rank's own)."""
    return f"[rank {os.environ.get('RANK')}] " if _silent_rank() else ""
