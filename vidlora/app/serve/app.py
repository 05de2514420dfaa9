"""The Ray Serve application of ``vidlora serve``: an ingress and the model deployment.

    ingress (1 replica, no CPU reserved)  --.options(multiplexed_model_id=set)-->  model (N replicas)

The model deployment is ``ModelReplica`` with ``serve.multiplexed(max_num_models_per_replica
=lru)`` as its LoRA-set loader, ``max_ongoing_requests=1`` (vidlora is not thread-safe; a
GPU runs one video at a time best) and ``max_queued_requests`` (over it the ingress answers
503). Replicas get one GPU each, or on CPU their share of the cores with torch threads set
to it (``workers.ray_setup.worker_shape``).
"""

from __future__ import annotations

from dataclasses import dataclass

from vidlora.errors import VidloraError

from .config import ServeConfig
from .ingress import Ingress
from .replica import ModelReplica

__all__ = ["APP_NAME", "ServerInfo", "model_task", "build_app", "start_server", "stop_server"]

APP_NAME = "vidlora"


@dataclass(frozen=True)
class ServerInfo:
    url: str
    replicas: int
    shape: str


def model_task(model: str | None, task: str | None) -> str:
    """``task``, checked against the model; else the model's own (t2v when it does both)."""
    from ..pipelines.info import model_info

    if task:
        return model_info(model, task).task
    try:
        return model_info(model, "t2v").task
    except VidloraError as first:
        try:
            return model_info(model, "i2v").task
        except VidloraError:
            raise first from None


def build_app(config: ServeConfig, shape):
    """The bound application (ingress -> model deployment) for ``serve.run``."""
    from ray import serve

    lru = config.lru

    class VidloraModel(ModelReplica):
        @serve.multiplexed(max_num_models_per_replica=lru)
        async def get_set(self, set_id: str):
            return await self.load_set(set_id)

        def replica_id(self) -> str:
            return serve.get_replica_context().replica_id.unique_id

    model = serve.deployment(
        name="vidlora-model", num_replicas=shape.count, max_ongoing_requests=1, max_queued_requests=config.max_queued,
        ray_actor_options={"num_cpus": shape.num_cpus, "num_gpus": shape.num_gpus},
    )(VidloraModel)  # fmt: skip
    ingress = serve.deployment(
        name="vidlora-ingress", num_replicas=1, max_ongoing_requests=max(64, 4 * config.max_queued),
        ray_actor_options={"num_cpus": 0},
    )(Ingress)  # fmt: skip
    return ingress.bind(config, model.bind(config, shape.threads), shape.count)


def start_server(config: ServeConfig) -> ServerInfo:
    """Start Serve's HTTP proxy on config.host:config.port and deploy the application (on
    the Ray this process is connected to; ``workers.ray_setup.connect`` first). Returns once
    every replica has loaded the model."""
    from ray import serve

    from ..workers.ray_setup import worker_shape

    shape = worker_shape(config.replicas)
    serve.start(http_options={"host": config.host, "port": config.port})
    serve.run(build_app(config, shape), name=APP_NAME, route_prefix="/")
    host = f"[{config.host}]" if ":" in config.host else config.host
    return ServerInfo(url=f"http://{host}:{config.port}", replicas=shape.count, shape=shape.describe("replica"))


def stop_server() -> None:
    from ray import serve

    serve.delete(APP_NAME)
    serve.shutdown()
