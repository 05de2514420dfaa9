"""A model's configs without its weights: model_index.json and the component configs that
describe it, from a local folder, the Hugging Face Hub (those few KB alone), or the
embedded tiny model's cached folder. Imports no torch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vidlora.errors import SourceError, VidloraError

from ..messages import first_line
from ..tiny.configs import TINY_MARKER_FILE, TINY_PIPELINE_KINDS

__all__ = ["read_configs", "has_component"]

# plain "tiny" per task: v2v runs the Wan T2V transformer in WanVideoToVideoPipeline
_TINY_FOR_TASK = {"t2v": "wan-t2v", "i2v": "wan-i2v", "v2v": "wan-t2v", "animate": "wan-animate"}
# The config files model_info reads (a Hub id fetches only these).
_CONFIG_FILES = {
    "transformer": "transformer/config.json",
    "transformer_2": "transformer_2/config.json",
    "vae": "vae/config.json",
    "scheduler": "scheduler/scheduler_config.json",
}


def read_configs(text: str, task: str) -> tuple[str, dict[str, Any]]:
    """(location, configs) of ``text``: "tiny" / "tiny:KIND", a local folder or a Hub id.

    configs maps "model_index", "transformer", "transformer_2", "vae", "scheduler" and,
    for a tiny folder, "tiny" (its marker) to the parsed JSON.
    """
    if text == "tiny" or text.startswith("tiny:"):
        from ..tiny.cache import tiny_pipeline_dir

        folder = tiny_pipeline_dir(_tiny_kind(text, task))
        return str(folder), _folder_configs(folder)
    local = Path(text).expanduser()
    if local.exists():
        return str(local), _folder_configs(local)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return text, _hub_configs(text)
    raise SourceError(
        f"model {text!r} is neither a local diffusers folder nor a Hugging Face Hub id (owner/name); "
        "use --model tiny for the embedded model or --model DIR for a local folder"
    )


def has_component(index: dict[str, Any], name: str) -> bool:
    """Whether model_index.json lists component ``name`` (a [library, class] pair)."""
    entry = index.get(name)
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] is not None and entry[1] is not None


def _tiny_kind(text: str, task: str) -> str:
    if text == "tiny":
        return _TINY_FOR_TASK[task]
    kind = text.split(":", 1)[1]
    if kind not in TINY_PIPELINE_KINDS:
        raise VidloraError(f"unknown tiny model {text!r}; expected tiny or tiny:KIND with KIND one of {', '.join(TINY_PIPELINE_KINDS)}")
    return kind


def _folder_configs(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise SourceError(f"model {folder} is a file; --model takes a diffusers folder (with model_index.json) or a Hub id")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise SourceError(f"{folder} is not a diffusers pipeline folder (no model_index.json); save one with pipe.save_pretrained(DIR)")
    configs: dict[str, Any] = {"model_index": _read_json(index_path)}
    for name, rel in _CONFIG_FILES.items():
        if has_component(configs["model_index"], name) and (folder / rel).is_file():
            configs[name] = _read_json(folder / rel)
    marker = folder / TINY_MARKER_FILE
    if marker.is_file():
        configs["tiny"] = _read_json(marker)
    return configs


def _hub_configs(repo_id: str) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download

    from vidlora.common.hub import hf_endpoint, hub_offline

    endpoint = hf_endpoint()
    offline = hub_offline(endpoint)

    def fetch(rel: str) -> dict[str, Any]:
        try:
            return _read_json(Path(hf_hub_download(repo_id, rel, endpoint=endpoint, local_files_only=offline)))
        except Exception as exc:  # huggingface_hub raises many types; all mean "not available"
            reason = "offline and not in the Hugging Face cache" if offline else f"{type(exc).__name__}: {first_line(exc)}"
            raise SourceError(
                f"cannot get {rel} of {repo_id} from {endpoint} ({reason}); "
                "use --model tiny for the embedded model or --model DIR for a local diffusers folder"
            ) from None

    configs: dict[str, Any] = {"model_index": fetch("model_index.json")}
    for name, rel in _CONFIG_FILES.items():
        if has_component(configs["model_index"], name):
            configs[name] = fetch(rel)
    return configs


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise SourceError(f"{path} does not hold a JSON object")
    return value
