"""Loading a pipeline through diffusers' ``from_pretrained``, with vidlora's dtype rules and
one clear error when weights cannot be had; ``tiny_pipeline`` loads the embedded one.

With ``prefuse`` the transformers are loaded by ``prefused.py`` instead (sibling
projections written into one buffer while the file is read) and handed to
``from_pretrained``; by default that happens only when the runtime adopts such buffers
without a copy (``runtime_adopts_prefused``): otherwise attach would copy them again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vidlora.errors import SourceError

from ..messages import first_line
from ..tiny.configs import TINY_PIPELINE_KINDS, TINY_PIPELINE_TASKS
from .info import ModelInfo, model_info
from .placement import place_pipeline

__all__ = ["load_pipeline", "tiny_pipeline", "runtime_adopts_prefused"]


def load_pipeline(model: str | os.PathLike | None, task: str, device: str = "cpu", dtype: Any = None, *,
                  offload: str | None = None, prefuse: bool | None = None):  # fmt: skip
    """Load ``model`` for ``task``; returns (pipeline, ModelInfo).

    device: where it runs ("cuda", "cpu", ...). dtype: the transformers' and text
        encoders' dtype (default bfloat16 on CUDA, float32 on CPU); the Wan VAE and CLIP
        image encoder stay in float32, as the Wan releases recommend.
    offload: None (everything moved to ``device``) or one of OFFLOAD_MODES (see
        ``apply_offload``).
    vidlora.attach must run before offloading hooks exist, so the order for patched
    generation is: ``load_pipeline(model, task, "cpu")`` -> ``vidlora.attach(pipe)`` ->
    ``place_pipeline(pipe, device, offload)``.
    prefuse: load the transformers with Wan's sibling projections in one buffer each
        (``prefused.py``); None: when ``runtime_adopts_prefused()``.
    Weights that cannot be loaded (offline, missing files) raise SourceError naming
    what was tried.
    """
    import torch

    info = model_info(model, task)
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    pipe = _from_pretrained(info, info.location, dtype, runtime_adopts_prefused() if prefuse is None else prefuse)
    place_pipeline(pipe, device, offload)
    return pipe, info


def runtime_adopts_prefused() -> bool:
    """Whether ``vidlora.attach`` takes a fusion group whose weights already are adjacent
    row views of one tensor as the fused weight, without copying it (the runtime marks
    this with ``ADOPTS_ADJACENT_ROWS`` in its patching module). Until it does, a prefused
    load would be followed by attach's own concatenation: no pass saved."""
    from vidlora.runtime import patching

    return bool(getattr(patching, "ADOPTS_ADJACENT_ROWS", False))


def tiny_pipeline(kind: str = "wan-t2v", device: str = "cpu"):
    """The embedded tiny pipeline ``kind``, loaded (fp32 on the CPU): what ``--model
    tiny:KIND`` runs. kind: one of "wan-t2v", "wan-i2v", "wan2.2-t2v-a14b",
    "hunyuan-t2v", "hunyuan-i2v", "wan-vace", "wan-vace-a14b", "skyreels-v2-t2v",
    "skyreels-v2-df", "wan-animate", "framepack", "hunyuan1.5-t2v", "hunyuan1.5-i2v"
    (TINY_PIPELINE_KINDS). Built into the vidlora cache on first use (seconds),
    then loaded from there; ``vidlora.app.tiny.tiny_pipeline_dir(kind)`` is the folder.

    >>> pipe = vidlora.tiny_pipeline("wan-t2v")       # doctest: +SKIP
    >>> h = vidlora.attach(pipe)                       # doctest: +SKIP
    """
    if kind not in TINY_PIPELINE_KINDS:
        raise ValueError(f"unknown tiny pipeline {kind!r}; expected one of {', '.join(TINY_PIPELINE_KINDS)}")
    pipe, _ = load_pipeline(f"tiny:{kind}", TINY_PIPELINE_TASKS[kind], device)
    return pipe


def _from_pretrained(info: ModelInfo, location: str, dtype: Any, prefuse: bool = False):
    import diffusers
    import torch

    cls = getattr(diffusers, info.pipeline_class)
    dtypes: Any = dtype
    if info.arch == "wan" and dtype != torch.float32:
        # Wan's VAE and CLIP lose visible detail in half precision (Wan release notes).
        dtypes = {"default": dtype, "vae": torch.float32, "image_encoder": torch.float32}
    kwargs: dict[str, Any] = {}
    if not Path(location).exists():
        from vidlora.common.hub import hub_offline

        kwargs["local_files_only"] = hub_offline()
    try:
        components: dict[str, Any] = {}
        if prefuse:
            # A Hub id: the snapshot folder from_pretrained would have downloaded anyway.
            folder = location if Path(location).exists() else cls.download(location, **kwargs)
            from .prefused import load_prefused_transformer

            for name in info.transformer_names:
                model = load_prefused_transformer(Path(folder) / name, dtype)
                if model is not None:  # else diffusers loads that one as usual
                    components[name] = model
            location = str(folder)
        return cls.from_pretrained(location, **_dtype_kwarg(dtypes), **kwargs, **components)
    except (OSError, ValueError, EnvironmentError, KeyError) as exc:
        offline = " (offline: only the Hugging Face cache was searched)" if kwargs.get("local_files_only") else ""
        raise SourceError(
            f"cannot load the weights of {info.source} from {location}{offline}: {first_line(exc)}; "
            "use --model tiny for the embedded model or --model DIR for a local diffusers folder"
        ) from None


def _dtype_kwarg(dtypes: Any) -> dict[str, Any]:
    """``{"dtype": dtypes}`` for diffusers that renamed ``torch_dtype=`` (the old name warns
    from 0.36 on), else ``{"torch_dtype": dtypes}``: the keyword to pass to from_pretrained."""
    # the helper that maps the old name onto the new one marks versions with the rename
    try:
        from diffusers.utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return {"torch_dtype": dtypes}
    return {"dtype": dtypes}
