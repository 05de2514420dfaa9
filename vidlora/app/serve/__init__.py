"""``vidlora serve``: an HTTP API for video generation with per-request LoRAs, on Ray Serve.

- config: ``ServeConfig`` / ``ServeLimits`` (what the server is told; picklable data)
- request: ``POST /v1/generate`` bodies -> ``GenerateBody`` or a 4xx naming the field
- policy: where LoRA sources and image URLs may come from; the bearer token
- ingress: the HTTP routes; resolves LoRAs, hashes the set, calls the model deployment
- jobs: ``POST /v1/jobs``: asynchronous jobs held by the ingress (bounded, polled, fetched)
- replica: ``ModelReplica``: the pipeline kept, LoRA sets multiplexed (LRU in host memory)
- app: the Ray Serve application; ``start_server`` / ``stop_server``

Names load lazily: the request checks import neither torch nor Ray.
"""

from __future__ import annotations

from vidlora.common.lazy import lazy_exports

__all__ = ["ServeConfig", "ServeLimits", "TOKEN_ENV", "DEFAULT_PORT", "is_loopback", "RequestError", "parse_body",
           "lora_set_id", "ModelReplica", "model_task", "start_server", "stop_server", "ServerInfo", "APP_NAME"]  # fmt: skip

_LAZY = {
    "ServeConfig": "config",
    "ServeLimits": "config",
    "TOKEN_ENV": "config",
    "DEFAULT_PORT": "config",
    "is_loopback": "config",
    "RequestError": "request",
    "parse_body": "request",
    "lora_set_id": "ingress",
    "ModelReplica": "replica",
    "model_task": "app",
    "start_server": "app",
    "stop_server": "app",
    "ServerInfo": "app",
    "APP_NAME": "app",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)


