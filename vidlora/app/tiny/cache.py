"""The on-disk cache of the tiny pipelines: each kind is built once, saved with diffusers'
``save_pretrained`` into the vidlora cache, and loaded back through ``from_pretrained``
like any real model (``--model tiny``).

Finding a folder that is already built imports neither torch nor diffusers (the versions
in its name come from the installed packages' metadata), so the CLI can read a tiny
model's configs before it imports torch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from .configs import TINY_BUILD, TINY_MARKER_FILE, TINY_PIPELINE_KINDS, TINY_SEEDS

__all__ = ["tiny_pipeline_dir"]


def tiny_pipeline_dir(kind: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the saved tiny pipeline ``kind``, built on first use.

    Lives under ``cache_dir`` (default: the vidlora cache, ``$VIDLORA_CACHE``) in a
    folder named after the build number and the diffusers/transformers versions (their
    save formats differ). Written to a temporary folder and renamed, so a crash or two
    processes building at once never leave a half folder.
    """
    if kind not in TINY_PIPELINE_KINDS:
        raise ValueError(f"unknown tiny pipeline {kind!r}; expected one of {', '.join(TINY_PIPELINE_KINDS)}")
    if cache_dir is None:
        from vidlora.common.cache_dir import vidlora_cache_dir

        cache_dir = vidlora_cache_dir()
    version = f"build{TINY_BUILD}-diffusers{_version('diffusers')}-transformers{_version('transformers')}"
    root = Path(cache_dir).expanduser() / "tiny-pipelines" / version
    final = root / kind
    if (final / TINY_MARKER_FILE).is_file():
        return final
    from .builders import build_tiny_pipeline

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}.", dir=root))
    try:
        pipe = build_tiny_pipeline(kind)
        pipe.save_pretrained(tmp)
        marker = {"kind": kind, "build": TINY_BUILD, "seeds": TINY_SEEDS, **_extras(kind, pipe)}
        # the marker goes last: a folder without it is never taken for a finished build
        (tmp / TINY_MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / TINY_MARKER_FILE).is_file():  # not another process's finished build
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _version(package: str) -> str:
    # the installed distribution's version, which is the package's __version__, without
    # importing it (importing diffusers costs seconds)
    return metadata.version(package)


def _extras(kind: str, pipe) -> dict[str, Any]:
    if kind.startswith("hunyuan1.5"):
        from .byte_tokenizers import hunyuan15_crop_start

        return {"crop_start": hunyuan15_crop_start(pipe)}
    if kind.startswith("hunyuan") or kind == "framepack":
        from .byte_tokenizers import tiny_prompt_template

        return {"prompt_template": tiny_prompt_template(kind, pipe.tokenizer)}
    return {}
