"""``ModelReplica``: one model replica of ``vidlora serve`` (a plain class; ``app.py`` makes
it a Ray Serve deployment with ``max_ongoing_requests=1``: vidlora is not thread-safe,
and one forward at a time is what a GPU runs best anyway).

- The pipeline is loaded and attached once (``WorkerSession``).
- LoRA sets are multiplexed: the ingress sends each request with
  ``multiplexed_model_id`` = a hash of its sorted LoRA sources, so Serve routes it to a
  replica that holds the set. A held set is its ``LoRAFile``s in host memory, kept in an
  LRU of ``--lru`` sets (``serve.multiplexed``); eviction drops them.
- Only the request's own adapters are in the rank stacks during its forward: a request
  for another set swaps (the stacks emptied, the set added in sorted order, so the same
  LoRAs in any order give the same stacks and the same video); strengths are written per
  request, in place. A larger LRU costs host memory, never FLOPs.
- A set is read and checked against the model (family, shapes) *before* it enters the
  LRU: a bad LoRA is a 422 that evicts nothing, and a swap that fails puts the previous
  adapters back. Every error is an answer, never a dead replica.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from vidlora.errors import VidloraError

from ..cli.plan import GenerateRequest, LoraRequest, Plan, plan_generation
from ..cli.stages import StageError
from ..messages import first_line
from .config import ServeConfig

__all__ = ["ModelReplica"]


def _answer(status: int, error: str, field: str | None = None, headers: dict | None = None) -> dict[str, Any]:
    """A replica's reply to the ingress: {"status", "error", "field", "headers"} or, on
    success, {"status": 200, "mp4": bytes, "headers"}."""
    return {"status": status, "error": error, "field": field, "headers": headers or {}}


class _LoraSet:
    """A LoRA set held in host memory: source path -> LoRAFile."""

    def __init__(self, set_id: str, files: dict[str, Any]):
        self.set_id, self.files = set_id, files
        self.on_evict = None

    def __del__(self):  # serve.multiplexed calls it on LRU eviction
        callback, self.on_evict = self.on_evict, None
        if callback is not None:
            try:
                callback(self.set_id)
            except Exception:  # noqa: BLE001 - never raise from a finaliser
                pass


class ModelReplica:
    """``threads``: torch intra-op threads (this replica's share of the CPUs)."""

    def __init__(self, config: ServeConfig, threads: int | None = None):
        from ..pipelines.info import model_info
        from ..workers.session import WorkerSession

        self._config = config
        self._info = model_info(config.model, config.task)
        self._tmp = Path(tempfile.mkdtemp(prefix="vidlora-serve-"))
        self._session = WorkerSession(self._warm_plan(), threads=threads)
        self._sets: dict[str, _LoraSet] = {}  # the sets in the multiplex LRU
        self._staged: dict[str, _LoraSet] = {}  # read and checked, about to be loaded
        self._loaded_now = False
        self._inventories = None
        self.loads = 0

    # ----------------------------------------------------------------- multiplexing
    async def load_set(self, set_id: str) -> _LoraSet:
        """The multiplexed loader: takes the set this request staged (read and checked)."""
        entry = self._staged.pop(set_id, None)
        if entry is None:  # pragma: no cover - generate() stages before it loads
            raise RuntimeError(f"LoRA set {set_id} was not staged")
        entry.on_evict = self._evicted
        self._sets[set_id] = entry
        self._loaded_now = True
        self.loads += 1
        return entry

    async def get_set(self, set_id: str) -> _LoraSet:
        """Overridden by the deployment with the ``serve.multiplexed`` LRU; here: a plain dict."""
        return self._sets.get(set_id) or await self.load_set(set_id)

    def _evicted(self, set_id: str) -> None:
        self._sets.pop(set_id, None)

    def replica_id(self) -> str:
        return "local"

    # ----------------------------------------------------------------- one request
    async def generate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One checked request from the ingress -> the reply (see :func:`_answer`)."""
        set_id = payload.get("set_id") or ""
        base = {"X-Vidlora-Replica": self.replica_id(), "X-Vidlora-Lora-Set": set_id or "none"}
        image = None
        try:
            try:
                image = self._image_file(payload.get("image"))
                say, plan = self._plan(payload, image)
            except VidloraError as exc:
                message, field = _as_fields(str(exc))
                return _answer(400, message, field, headers=base)
            loras = [LoraRequest(spec=e["source"], source=e["source"], weight=e["weight"], expert=None,
                                 sha256=e["sha256"]) for e in payload["loras"]]  # fmt: skip
            loaded = False
            if loras:
                if set_id not in self._sets:
                    try:
                        self._staged[set_id] = await asyncio.to_thread(self._read_set, set_id, loras)
                    except VidloraError as exc:
                        return _answer(422, str(exc), _lora_field(str(exc), payload), headers=base)
                self._loaded_now = False
                entry = await self.get_set(set_id)
                loaded = self._loaded_now
                self._assign(entry, loras)
            plan.loras = loras
            started = time.perf_counter()
            try:
                mp4, swapped = await asyncio.to_thread(self._run, plan)
            except VidloraError as exc:
                return _answer(422, str(exc), headers={**base, "X-Vidlora-Lora-Loaded": _flag(loaded)})
            headers = {
                **base, "X-Vidlora-Lora-Loaded": _flag(loaded), "X-Vidlora-Swapped": _flag(swapped),
                "X-Vidlora-Seconds": f"{time.perf_counter() - started:.3f}",
            }  # fmt: skip
            if say.lines:
                headers["X-Vidlora-Notes"] = " | ".join(say.lines)
            return {"status": 200, "mp4": mp4, "headers": headers}
        except StageError as exc:
            return _answer(500, str(exc), headers=base)
        except Exception as exc:  # noqa: BLE001 - an answer, never a dead replica
            return _answer(500, f"{type(exc).__name__}: {first_line(exc)}", headers=base)
        finally:
            self._staged.pop(set_id, None)
            if image is not None:
                image.unlink(missing_ok=True)

    def stats(self) -> dict[str, Any]:
        return {"replica": self.replica_id(), "loads": self.loads, "sets": sorted(self._sets),
                "active": list(self._session.active), "device": self._session.device}  # fmt: skip

    # ----------------------------------------------------------------- helpers
    def _warm_plan(self) -> Plan:
        """A Plan that only names the model: WorkerSession loads from it, never runs it."""
        c, info = self._config, self._info
        req = GenerateRequest(task=info.task, prompt="-", model=c.model, fp8=c.fp8, offload=c.offload, device=c.device,
                              quiet=True)  # fmt: skip
        w, h = info.default_size
        return Plan(request=req, info=info, out=self._tmp / "unused.mp4", image=None, loras=[], frames=info.default_frames,
                    width=w, height=h, steps=info.default_steps, guidance=info.default_guidance, fps=info.default_fps)  # fmt: skip

    def _plan(self, p: dict[str, Any], image: Path | None):
        """The CLI's checks on the request (rounding, limits, image crop, defaults)."""
        from ..workers.session import SilentMessages

        c = self._config
        req = GenerateRequest(
            task=self._info.task, prompt=p["prompt"], model=c.model, image=str(image) if image else None,
            negative_prompt=p.get("negative_prompt"), fp8=c.fp8, frames=p.get("frames"), steps=p.get("steps"),
            guidance=p.get("guidance"), guidance_2=p.get("guidance_2"), flow_shift=p.get("flow_shift"),
            size=tuple(p["size"]) if p.get("size") else None, seed=p.get("seed", 0), fps=p.get("fps"),
            offload=c.offload, out=str(self._tmp / f"{uuid.uuid4().hex}.mp4"), overwrite=True, device=c.device,
            quiet=True,
        )  # fmt: skip
        say = SilentMessages()
        return say, plan_generation(req, say, info=self._info)

    def _image_file(self, data: bytes | None) -> Path | None:
        if data is None:
            return None
        path = self._tmp / f"in-{uuid.uuid4().hex}.img"
        path.write_bytes(data)
        return path

    def _read_set(self, set_id: str, loras: list[LoraRequest]) -> _LoraSet:
        """Resolve (a cache hit after the ingress's), read and check each file against the
        model's config on the meta device: a LoRA for another model fails here, in host
        memory, before the LRU or the stacks see it."""
        from vidlora.lora import match_lora, read_lora
        from vidlora.lora.sources import resolve_source

        files = {}
        for r in loras:
            resolved = resolve_source(r.source, progress=False)
            if r.sha256 and resolved.sha256 != r.sha256:
                raise VidloraError(f"{r.source} changed while the request was on its way (sha256 {resolved.sha256[:12]}, "
                                   f"expected {r.sha256[:12]}); send it again")  # fmt: skip
            lora = read_lora(resolved.path)
            for inv in self._model_inventories():
                for part in (lora.experts.values() if lora.experts else [lora]):
                    match_lora(part, inv, strict=True)
            files[r.source] = lora
        return _LoraSet(set_id, files)

    def _model_inventories(self) -> list:
        if self._inventories is None:
            from vidlora.model import inventory, meta_transformer

            cfg = (self._info.configs or {}).get("transformer")
            self._inventories = [inventory(meta_transformer(cfg))] if cfg else []
        return self._inventories

    def _assign(self, entry: _LoraSet, loras: list[LoraRequest]) -> None:
        from ..workers.session import adapter_names

        for r in loras:
            r.lora = entry.files[r.source]
            r.path = r.source
            r.origin = r.source
            r.resolved = True
        adapter_names(loras)

    def _run(self, plan: Plan) -> tuple[bytes, bool]:
        path, swapped = self._session.generate(plan)
        try:
            return path.read_bytes(), swapped
        finally:
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".json").unlink(missing_ok=True)


# the CLI's checks name its flags; a request names its fields
_FLAG_FIELDS = {"--guidance-2": "guidance_2", "--flow-shift": "flow_shift", "--frames": "num_frames", "--size": "size",
                "--fps": "fps", "--prompt": "prompt", "--image": "image", "--steps": "steps", "--guidance": "guidance"}


def _as_fields(message: str) -> tuple[str, str | None]:
    field = None
    for flag, name in _FLAG_FIELDS.items():
        if flag in message:
            message = message.replace(flag, name)
            field = field or name
    return message, field


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _lora_field(message: str, payload: dict[str, Any]) -> str | None:
    """The request field of the LoRA an error names (``lora[1].model``), if one does."""
    for e in payload["loras"]:
        if e["source"] in message or (e.get("asked") and e["asked"] in message):
            return f"{e['field']}.model"
    return None
