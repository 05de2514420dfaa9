"""Real configs of the released models, and transformers built on the meta device from them.

:data:`REAL_CONFIGS` collects every family's transformer configs; :func:`meta_transformer`
builds any of them on the meta device in well under a second (Wan 14B: 16.4 G
parameters, no memory), so checking a LoRA against a 14B model needs no weights.
"""

from __future__ import annotations

from typing import Any

import torch

from vidlora.errors import LoRAMismatchError, SourceError

from .registry import FAMILIES, spec_for_class

__all__ = ["REAL_CONFIGS", "HUB_MODEL_IDS", "meta_transformer", "transformer_class"]

REAL_CONFIGS: dict[str, dict[str, Any]] = {k: dict(v) for spec in FAMILIES for k, v in spec.real_configs.items()}
HUB_MODEL_IDS: dict[str, str] = {k: v for spec in FAMILIES for k, v in spec.hub_ids.items()}


def transformer_class(config: dict[str, Any]):
    """The diffusers class a transformer config names (``_class_name``), if vidlora knows it."""
    name = config.get("_class_name")
    if name is None:  # configs written by hand: the layout tells
        name = "HunyuanVideoTransformer3DModel" if "num_single_layers" in config else "WanTransformer3DModel"
    if spec_for_class(name) is None:
        known = " or ".join(c for spec in FAMILIES for c in spec.classes)
        raise LoRAMismatchError(f"transformer class {name} is not supported: expected {known}")
    import diffusers

    return getattr(diffusers, name)


def meta_transformer(config_or_name: str | dict[str, Any]) -> torch.nn.Module:
    """A diffusers transformer built on the meta device (shapes only, no memory).

    ``config_or_name``: a REAL_CONFIGS name, a known Hub model id, or a config dict.
    """
    if isinstance(config_or_name, str):
        key = HUB_MODEL_IDS.get(config_or_name, config_or_name)
        if key not in REAL_CONFIGS:
            raise SourceError(
                f"unknown model config {config_or_name!r}: expected one of {sorted(REAL_CONFIGS)} or a config dict"
            )
        config = REAL_CONFIGS[key]
    else:
        config = config_or_name
    cls = transformer_class(config)
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        with torch.device("meta"):
            return cls(**kwargs).eval()
    except TypeError as exc:  # a config key this diffusers version does not know
        raise SourceError(f"cannot build {cls.__name__} from this config: {exc}") from None
