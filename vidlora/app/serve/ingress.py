"""The HTTP side of ``vidlora serve``: ``Ingress`` (a Ray Serve deployment, see ``app.py``).

    POST /v1/generate   JSON body (``request.py``) -> video/mp4, settings in its metadata
    POST /v1/jobs       the same body -> 202 and a job id; GET/DELETE /v1/jobs/ID[/video] (``jobs.py``)
    GET  /v1/loras      the LoRA sources this server has resolved (sha256, bytes, uses)
    GET  /healthz       {"status": "ok", ...}; open even when a token is set

For a generation it checks the token, reads at most ``max_body`` bytes, parses and checks
the body, applies the source rules (``policy.py``), resolves every LoRA source (a
missing file, a login page, a pickle: 422 naming it), and sends the request to the model
deployment with ``multiplexed_model_id`` = the hash of its sorted sources (weights
excluded), so it lands where that set is held. Over ``max_queued`` waiting requests the
answer is 503 naming the limit. Errors are JSON ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from vidlora.errors import VidloraError

from ..messages import first_line
from .config import ServeConfig
from .jobs import JobStore
from .policy import check_image_url, check_resolved, check_token, is_remote_origin, locate_source
from .request import RequestError, parse_body

__all__ = ["Ingress", "lora_set_id"]

_IMAGE_TIMEOUT_S = 20


def lora_set_id(sources: list[str]) -> str:
    """The multiplexed model id of a LoRA set: its sorted sources, hashed (weights excluded;
    the ingress appends each file's sha256 to its source)."""
    if not sources:
        return ""
    return hashlib.sha256("\n".join(sorted(sources)).encode()).hexdigest()[:24]


class Ingress:
    """``model``: a handle to the model deployment (``ModelReplica``); ``replicas``: how
    many it has (jobs run at most one per replica at a time)."""

    def __init__(self, config: ServeConfig, model, replicas: int = 1):
        self._config, self._model = config, model
        self._jobs = JobStore(self._call_model, config.max_jobs, replicas)
        self._resolved: dict[str, dict[str, Any]] = {}  # canonical source -> facts for /v1/loras
        self._cache: dict[str, tuple] = {}  # source -> (ResolvedSource, (mtime, size) of its file)
        from vidlora.lora.lora_dirs import use_lora_dirs

        use_lora_dirs(config.lora_dirs)  # names (ComfyUI-style "motion") are found there, in this process

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        path, method = request.url.path.rstrip("/") or "/", request.method
        try:
            if path == "/healthz" and method == "GET":
                return JSONResponse({"status": "ok", "model": self._config.model or "default", "task": self._config.task})
            check_token(self._config, request.headers.get("authorization"))
            if path == "/v1/generate" and method == "POST":
                return await self._generate(request)
            if path == "/v1/jobs" or path.startswith("/v1/jobs/"):
                return await self._job_route(request, path, method)
            if path == "/v1/loras" and method == "GET":
                return JSONResponse({"loras": sorted(self._resolved.values(), key=lambda r: r["source"])})
            if path in ("/v1/generate", "/v1/loras", "/healthz"):
                raise RequestError(405, f"{method} {path} is not served; see the README (serve)")
            raise RequestError(404, f"no route {path}; this server has POST /v1/generate, POST /v1/jobs, "
                               "GET /v1/jobs/ID[/video], GET /v1/loras, GET /healthz")  # fmt: skip
        except RequestError as exc:
            headers = {401: {"WWW-Authenticate": "Bearer"}, 503: {"Retry-After": "5"}}.get(exc.status)
            return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
        except Exception as exc:  # noqa: BLE001 - an answer, never a dead ingress
            return JSONResponse({"error": f"{type(exc).__name__}: {first_line(exc)}", "field": None}, status_code=500)

    async def _generate(self, request):
        from starlette.responses import JSONResponse, Response

        payload, set_id = await self._prepare(request)
        reply = await self._call_model(payload, set_id)
        headers = {k: _header(v) for k, v in reply.get("headers", {}).items()}
        if reply["status"] != 200:
            return JSONResponse({"error": reply["error"], "field": reply.get("field")}, status_code=reply["status"],
                                headers=headers)  # fmt: skip
        return Response(content=reply["mp4"], media_type="video/mp4", headers=headers)

    async def _job_route(self, request, path: str, method: str):
        from starlette.responses import JSONResponse, Response

        parts = path.split("/")[3:]  # "", "v1", "jobs", ID, "video"
        if not parts and method == "POST":
            self._jobs.check_room()  # before the body is read and its LoRAs resolved
            payload, set_id = await self._prepare(request)
            job = self._jobs.submit(payload, set_id)
            return JSONResponse(job.describe(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})
        if not parts and method == "GET":
            return JSONResponse({"jobs": self._jobs.listing()})
        if len(parts) == 1 and method == "GET":
            return JSONResponse(self._jobs.get(parts[0]).describe())
        if len(parts) == 1 and method == "DELETE":
            job = self._jobs.delete(parts[0])
            return JSONResponse({"id": job.id, "deleted": True, "status": job.status})
        if len(parts) == 2 and parts[1] == "video" and method == "GET":
            job = self._jobs.get(parts[0])
            headers = {k: _header(v) for k, v in (job.reply or {}).get("headers", {}).items()}
            if job.status == "done":
                return Response(content=job.reply["mp4"], media_type="video/mp4", headers=headers)
            if job.status == "failed":
                return JSONResponse({"error": job.reply["error"], "field": job.reply.get("field")},
                                    status_code=job.reply["status"], headers=headers)  # fmt: skip
            raise RequestError(409, f"job {job.id} is {job.status}; its video is not made yet (poll /v1/jobs/{job.id})")
        if len(parts) <= 1 or parts[1] == "video":
            raise RequestError(405, f"{method} {path} is not served; jobs take POST /v1/jobs, GET /v1/jobs[/ID[/video]], "
                               "DELETE /v1/jobs/ID")  # fmt: skip
        raise RequestError(404, f"no route {path}; jobs take POST /v1/jobs, GET /v1/jobs[/ID[/video]], DELETE /v1/jobs/ID")

    async def _prepare(self, request) -> tuple[dict[str, Any], str]:
        """The body checked, its image fetched and its LoRAs resolved: (payload, set id)."""
        body = parse_body(await self._json(request), self._config.limits, self._config.task)
        image = body.image
        if body.image_url:
            check_image_url(body.image_url, self._config)
            image = await asyncio.to_thread(self._fetch_image, body.image_url)
        loras, seen = [], {}
        for entry in body.loras:
            source = locate_source(entry.source, self._config, entry.field)
            resolved = await asyncio.to_thread(self._resolve, source, entry.field)
            check_resolved(resolved, self._config, entry.field)
            # a local file by its absolute path, anything else by its origin (hf:..., civitai:..., the URL)
            canonical = resolved.origin if is_remote_origin(resolved.origin) else str(Path(resolved.path).resolve())
            if canonical in seen:
                raise RequestError(400, f"{entry.field}.model names the same LoRA as {seen[canonical]}.model "
                                   f"({entry.source}); give each LoRA once", f"{entry.field}.model")  # fmt: skip
            seen[canonical] = entry.field
            self._note(canonical, entry.source, resolved)
            loras.append({"source": canonical, "asked": entry.source, "weight": _weight(entry.weight),
                          "sha256": resolved.sha256, "field": entry.field})  # fmt: skip
        loras.sort(key=lambda e: e["source"])  # the order of the list must not matter
        # the sources' contents too: a file replaced on disk is another set, never a stale copy
        set_id = lora_set_id([f"{e['source']}#{e['sha256']}" for e in loras])
        payload = {
            "set_id": set_id, "loras": loras, "prompt": body.prompt, "negative_prompt": body.negative_prompt,
            "image": image, "seed": body.seed, "frames": body.frames, "size": body.size, "steps": body.steps,
            "guidance": body.guidance, "guidance_2": body.guidance_2, "flow_shift": body.flow_shift, "fps": body.fps,
        }  # fmt: skip
        return payload, set_id

    async def _call_model(self, payload: dict[str, Any], set_id: str) -> dict[str, Any]:
        from ray.serve.exceptions import BackPressureError

        handle = self._model.options(multiplexed_model_id=set_id) if set_id else self._model
        try:
            return await handle.generate.remote(payload)
        except BackPressureError:
            raise _queue_full(self._config.max_queued) from None
        except Exception as exc:  # noqa: BLE001 - a replica that died, a cancelled call...
            cause = getattr(exc, "cause", None)
            if type(cause).__name__ == "BackPressureError" or "BackPressureError" in type(exc).__name__:
                raise _queue_full(self._config.max_queued) from None
            raise RequestError(500, f"the model replica failed: {type(exc).__name__}: {first_line(exc)}") from None

    async def _json(self, request) -> Any:
        most = self._config.limits.max_body
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > most:
            raise RequestError(413, f"the body is {int(declared)} bytes; this server takes at most {most}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > most:
                raise RequestError(413, f"the body is over {most} bytes, this server's limit")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"the body is not valid JSON: {exc}") from None

    def _resolve(self, source: str, field: str):
        """Resolve once per source; a local file again when it changed on disk (its sha256
        must be that of the bytes the replica will read)."""
        from vidlora.lora.sources import resolve_source

        cached = self._cache.get(source)
        if cached is not None and (is_remote_origin(cached[0].origin) or _stamp(cached[0].path) == cached[1]):
            return cached[0]
        try:
            resolved = resolve_source(source, progress=False)
        except VidloraError as exc:
            raise RequestError(422, f"{field}.model: {exc}", f"{field}.model") from None
        except OSError as exc:
            raise RequestError(422, f"{field}.model: {source}: {first_line(exc)}", f"{field}.model") from None
        self._cache[source] = (resolved, _stamp(resolved.path))
        return resolved

    def _note(self, canonical: str, asked: str, resolved) -> None:
        entry = self._resolved.setdefault(canonical, {"source": canonical, "origin": resolved.origin, "requests": 0})
        size = resolved.path.stat().st_size if resolved.path.is_file() else None
        entry.update(sha256=resolved.sha256, bytes=size, last_asked_as=asked, last_used=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                     time.gmtime()))  # fmt: skip
        entry["requests"] += 1

    def _fetch_image(self, url: str) -> bytes:
        import urllib.error
        import urllib.request

        most = self._config.limits.max_body
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "vidlora-serve"}),
                                        timeout=_IMAGE_TIMEOUT_S) as resp:  # fmt: skip
                data = resp.read(most + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RequestError(422, f"image: cannot fetch {url}: {first_line(exc)}", "image") from None
        if len(data) > most:
            raise RequestError(413, f"image: {url} is over {most} bytes, this server's limit", "image")
        return data


def _stamp(path) -> tuple[int, int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _weight(w):
    return list(w) if isinstance(w, tuple) else w


def _queue_full(limit: int) -> RequestError:
    return RequestError(503, f"the server is busy: {limit} requests are already waiting for a model replica "
                        f"(max_queued_requests={limit}); retry later")  # fmt: skip


def _header(value: Any) -> str:
    """HTTP header values are latin-1 on one line."""
    text = " ".join(str(value).split())
    return text.encode("latin-1", "replace").decode("latin-1")[:2000]
