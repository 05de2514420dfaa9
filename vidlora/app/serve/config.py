"""``ServeConfig``: everything ``vidlora serve`` is told, checked once before Ray starts.

Pure data (picklable: Ray ships it to the ingress and to every replica), no torch.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from vidlora.errors import VidloraError

__all__ = ["ServeLimits", "ServeConfig", "TOKEN_ENV", "is_loopback", "DEFAULT_PORT"]

TOKEN_ENV = "VIDLORA_SERVE_TOKEN"
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on one request, so that no body can hold a replica for hours or fill its memory.

    max_frames / max_steps: per request. max_side: the longest side in pixels;
    max_pixels: width x height. max_body: bytes of JSON (a base64 image included).
    max_loras: LoRAs in one request. max_schedule: values in one strength schedule.
    max_prompt: characters of the prompt (and of the negative prompt).
    max_weight: |strength| (strengths past it break any LoRA's look; the bound keeps
    overflow out of the scale vectors)."""

    max_frames: int = 129
    max_steps: int = 100
    max_side: int = 1280
    max_pixels: int = 1280 * 720
    max_body: int = 16 * 1024 * 1024
    max_loras: int = 8
    max_schedule: int = 1000
    max_prompt: int = 4000
    max_weight: float = 8.0

    def __post_init__(self):
        for name in ("max_frames", "max_steps", "max_side", "max_pixels", "max_body", "max_loras", "max_schedule",
                     "max_prompt"):  # fmt: skip
            if getattr(self, name) < 1:
                raise VidloraError(f"serve limit {name} must be >= 1; got {getattr(self, name)}")


@dataclass(frozen=True)
class ServeConfig:
    """model / task: what every replica loads (task: the model's own when None).
    host / port: where Serve's HTTP proxy listens (127.0.0.1 unless told otherwise).
    replicas: model replicas (one per GPU by default; one on CPU only). lru: LoRA sets
    each replica keeps in host memory. max_queued: requests waiting for a replica before
    the next one gets 503. max_jobs: asynchronous jobs the ingress holds (queued, running
    and finished with their MP4; finished ones make room oldest first). token: bearer token the /v1 routes require (None: open).
    lora_dirs: roots that relative LoRA names are looked up in; on a non-loopback bind
    the only places local files may come from. allow_url_hosts: URL hosts allowed for
    LoRAs and images on a non-loopback bind beyond the Hub and Civitai; allow_any_url:
    any host."""

    model: str | None = None
    task: str = "t2v"
    fp8: str | None = None
    offload: str | None = None
    device: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    replicas: int | None = None
    lru: int = 4
    max_queued: int = 8
    max_jobs: int = 64
    token: str | None = None
    lora_dirs: tuple[str, ...] = ()
    allow_url_hosts: tuple[str, ...] = ()
    allow_any_url: bool = False
    limits: ServeLimits = field(default_factory=ServeLimits)

    def __post_init__(self):
        if self.lru < 1:
            raise VidloraError(f"--lru must be >= 1 (LoRA sets kept per replica); got {self.lru}")
        if self.max_queued < 1:
            raise VidloraError(f"--max-queued must be >= 1; got {self.max_queued}")
        if self.max_jobs < 1:
            raise VidloraError(f"--max-jobs must be >= 1; got {self.max_jobs}")
        if self.replicas is not None and self.replicas < 1:
            raise VidloraError(f"--replicas must be >= 1; got {self.replicas}")
        if not 0 <= self.port <= 65535:
            raise VidloraError(f"--port must be 0-65535; got {self.port}")
        for d in self.lora_dirs:
            if not Path(d).is_dir():
                raise VidloraError(f"--lora-dir {d} is not a folder")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @classmethod
    def token_from_env(cls) -> str | None:
        return os.environ.get(TOKEN_ENV) or None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; anything else (0.0.0.0 included) reaches the network."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
