"""A model's transformer config without its weights: from a local folder, a built-in real
config, or ``transformer/config.json`` alone from the Hugging Face Hub."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from vidlora.errors import SourceError
from vidlora.model import HUB_MODEL_IDS, REAL_CONFIGS

__all__ = ["transformer_config_from"]

_log = logging.getLogger(__name__)


def _read_config_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: not a readable transformer config.json ({exc})") from None
    if not isinstance(config, dict):
        raise SourceError(f"{path}: a config.json must hold a JSON object")
    return config


def transformer_config_from(model_id_or_dir: str) -> dict[str, Any]:
    """The transformer config of a model, without weights.

    A local diffusers folder (``transformer/config.json``, or a transformer folder's own
    ``config.json``); a REAL_CONFIGS name; else ``transformer/config.json`` alone from
    the Hugging Face Hub (cached by huggingface_hub). When the Hub cannot be reached and
    the id is a released model in HUB_MODEL_IDS, the built-in config stands in (logged).
    """
    if os.path.isdir(model_id_or_dir):
        for candidate in ("transformer/config.json", "config.json"):
            path = os.path.join(model_id_or_dir, candidate)
            if os.path.isfile(path):
                config = _read_config_json(path)
                if candidate == "config.json" and "_class_name" in config and "Transformer" not in str(
                    config["_class_name"]
                ):
                    continue
                return config
        raise SourceError(
            f"{model_id_or_dir}: no transformer/config.json in this folder (expected a diffusers "
            "model folder or its transformer/ subfolder)"
        )
    if model_id_or_dir in REAL_CONFIGS:
        return dict(REAL_CONFIGS[model_id_or_dir])
    if model_id_or_dir.count("/") != 1:
        raise SourceError(
            f"{model_id_or_dir!r} is neither a local folder nor a Hub model id (owner/name); "
            f"built-in configs: {sorted(REAL_CONFIGS)}"
        )
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(model_id_or_dir, "transformer/config.json")
    except Exception as exc:  # network, auth, missing repo/file: all one user-facing failure
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        known = HUB_MODEL_IDS.get(model_id_or_dir)
        if known is not None:
            _log.warning("vidlora: Hub unavailable for %s (%s); using the built-in %s config", model_id_or_dir, why, known)
            return dict(REAL_CONFIGS[known])
        raise SourceError(
            f"cannot fetch transformer/config.json of {model_id_or_dir!r} from the Hugging Face Hub ({why})"
        ) from None
    return _read_config_json(path)
