"""``WorkerSession``: one pipeline loaded, attached and kept, running job after job.

What a sweep worker and a serve replica hold. It runs the CLI's own path (``open_session``,
``denoise``, ``write_result`` of ``vidlora t2v|i2v``) on a ``Plan`` that the CLI's checks
made, so a job gives the frames the command gives with the same settings. What it adds:

- The pipeline is loaded and attached once; LoRA files are read once per path and kept
  in host memory (``LoRAFile``), so returning to a set costs its bytes, never a re-read.
- Only the current job's adapters are in the rank stacks: another LoRA set is swapped in
  by removing every adapter (the stacks shrink back to empty, exactly as after a fresh
  ``attach``) and adding the new set in its order, so the stacks hold what the CLI's
  would and the frames are the same bits. A strength change within a set writes the
  scale vectors in place: no swap.
- A failed swap (a LoRA for another model...) puts the previous set back before the
  error goes on: the session is as it was.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ..cli.console import Messages, quiet_libraries
from ..cli.generate_cmd import denoise, open_session, pick_device, write_result
from ..cli.plan import LoraRequest, Plan
from ..cli.stages import stage

__all__ = ["WorkerSession", "SilentMessages", "adapter_names"]

_KEY_FIELDS = ("model", "task", "fp8", "offload", "device")


class SilentMessages(Messages):
    """Messages that print nothing and keep the notes and warnings (a worker's stderr is
    not the user's terminal; the caller decides what to show)."""

    def __init__(self):  # no console
        self.lines: list[str] = []

    def print(self, text: str, style: str | None = None) -> None:
        pass

    def note(self, text: str) -> None:
        self.lines.append(f"note: {text}")

    def warn(self, text: str) -> None:
        self.lines.append(f"warning: {text}")


def adapter_names(loras: list[LoraRequest]) -> None:
    """Name each read LoRA as ``read_loras`` does: its file's name, ``_2``, ``_3``... for
    the same name again (e.g. one file on both Wan 2.2 experts)."""
    used: dict[str, int] = {}
    for r in loras:
        base = r.lora.name
        used[base] = used.get(base, 0) + 1
        r.name = base if used[base] == 1 else f"{base}_{used[base]}"


class WorkerSession:
    """A pipeline for the model, task, FP8 mode and offload of ``first`` (see the module
    docstring). ``threads``: torch's intra-op threads (Ray sets OMP_NUM_THREADS to an
    actor's whole CPUs, 1 for a fraction; set it explicitly to what the worker was given)."""

    def __init__(self, first: Plan, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        self.say = SilentMessages()
        quiet_libraries(progress=False)
        self.key = _key(first)
        started = time.perf_counter()
        device = pick_device(self.say, first)
        self.session = open_session(dataclasses.replace(first, loras=[]), self.say, device)
        self.load_seconds = time.perf_counter() - started
        self._files: dict[str, Any] = {}  # path -> LoRAFile, host memory
        self._active: list[tuple] = []  # (path, LoRAFile, name, weight, expert) in the stacks, in order
        self.swaps = 0

    @property
    def device(self) -> str:
        return self.session.device

    @property
    def active(self) -> tuple[str, ...]:
        """The adapter names in the rank stacks now."""
        return tuple(self.session.handle.names)

    def read(self, loras: list[LoraRequest]) -> None:
        """Read each LoRA file once (kept in host memory) and name the adapters."""
        from vidlora.lora import read_lora

        with stage("reading the LoRA files"):
            for r in loras:
                if r.path not in self._files:
                    self._files[r.path] = read_lora(r.path)
                r.lora = self._files[r.path]
                r.triggers = tuple(dict.fromkeys([*r.lora.trigger_words, *r.triggers]))
        adapter_names(loras)

    def use(self, loras: list[LoraRequest]) -> bool:
        """Make ``loras`` (read, named) the adapters in the stacks with their strengths;
        True when that took a swap (another set was there, or none and now one)."""
        handle = self.session.handle
        wanted = [(r.path, r.lora, r.name, r.weight, r.expert) for r in loras]
        with stage("attaching the LoRAs"):
            if _set_key(wanted) == _set_key(self._active):
                for r in loras:
                    handle.set_weight(r.name, r.weight)
                self._active = wanted
                return False
            previous, self._active = self._active, []
            self._clear()
            try:
                for _, lora, name, weight, expert in wanted:
                    handle.add(lora, name=name, weight=weight, expert=expert)
            except BaseException:
                self._clear()
                for _, lora, name, weight, expert in previous:
                    handle.add(lora, name=name, weight=weight, expert=expert)
                self._active = previous
                raise
        self._active = wanted
        self.swaps += 1
        return True

    def _clear(self) -> None:
        # every adapter out: each stack shrinks back to no rows, as after attach
        handle = self.session.handle
        for name in list(handle.names):
            handle.remove(name)

    def run(self, plan: Plan, out: Path | None = None) -> tuple[Path, bool]:
        """One job: read its LoRA files (once per path), then :meth:`generate`."""
        self.read(plan.loras)
        return self.generate(plan, out)

    def generate(self, plan: Plan, out: Path | None = None) -> tuple[Path, bool]:
        """Swap in ``plan.loras`` (read and named), denoise, write the MP4 with the CLI's
        metadata to ``out`` (default ``plan.out``). Returns (path, swapped)."""
        if _key(plan) != self.key:
            raise ValueError(f"this worker runs {dict(zip(_KEY_FIELDS, self.key))}; the job asks for "
                             f"{dict(zip(_KEY_FIELDS, _key(plan)))}")  # fmt: skip
        started = time.perf_counter()
        swapped = self.use(plan.loras)
        video = denoise(self.session, plan, progress=False)
        target = dataclasses.replace(plan, out=Path(out)) if out is not None else plan
        path = write_result(target, self.session, video, self.say, started)
        return path, swapped


def _set_key(entries: list[tuple]) -> tuple:
    return tuple((path, name, expert) for path, _, name, _, expert in entries)


def _key(plan: Plan) -> tuple:
    r = plan.request
    return (plan.info.source, r.task, r.fp8, r.offload, r.device)
