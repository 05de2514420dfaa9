"""``vidlora sweep`` and ``vidlora serve``: thin layers over ``vidlora.app.sweep.run_sweep``
and ``vidlora.app.serve.start_server``. Without Ray installed each says what to install
(exit 2) before reading any model."""

from __future__ import annotations

import sys
import time

from vidlora.errors import VidloraError

from .console import Messages

__all__ = ["run_sweep_cmd", "run_serve_cmd"]


def run_sweep_cmd(args) -> int:
    from ..sweep.run import run_sweep

    result = run_sweep(args.plan, args.out, workers=args.workers, address=args.address, say=Messages(),
                       progress=not args.quiet)  # fmt: skip
    return 1 if result.failed else 0


def run_serve_cmd(args) -> int:
    from ..serve.app import model_task, start_server, stop_server
    from ..serve.config import ServeConfig, ServeLimits
    from ..workers.ray_setup import connect, disconnect, require_ray

    say = Messages()
    require_ray("serve")
    token = args.token or ServeConfig.token_from_env()
    config = ServeConfig(
        model=args.model, task=model_task(args.model, args.task), fp8=args.fp8, offload=args.offload,
        device=args.device, host=args.host, port=args.port, replicas=args.replicas, lru=args.lru,
        max_queued=args.max_queued, max_jobs=args.max_jobs, token=token, lora_dirs=tuple(args.lora_dir),
        allow_url_hosts=tuple(args.allow_url_host), allow_any_url=args.allow_any_url,
        limits=ServeLimits(max_frames=args.max_frames, max_steps=args.max_steps, max_side=args.max_size,
                           max_pixels=args.max_size * args.max_size),
    )  # fmt: skip
    if not config.loopback and not token and not args.allow_no_token:
        raise VidloraError(f"--host {args.host} reaches beyond this machine: give a --token (or set VIDLORA_SERVE_TOKEN), "
                           "or --allow-no-token when your own proxy checks who calls")  # fmt: skip
    if not config.loopback and not config.lora_dirs:
        say.note(f"--host {args.host}: requests may use LoRAs from the Hub and Civitai only (add --lora-dir DIR for "
                 "local files)")  # fmt: skip
    started = connect(args.address, "serve")
    try:
        say.print(f"loading {config.model or 'the default model'} ({config.task}) on the replicas ...")
        info = start_server(config)
        say.print(f"vidlora serve: {info.url} ({info.shape}; {config.lru} LoRA sets per replica, "
                  f"{config.max_queued} queued at most){' with a bearer token' if token else ''}", style="green")  # fmt: skip
        say.print(f"  curl -s {info.url}/healthz    POST {info.url}/v1/generate (or /v1/jobs)    Ctrl-C stops")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("vidlora serve: stopping", file=sys.stderr)
        stop_server()
    finally:
        disconnect(started)
    return 0
