"""The README's Python examples keep working: the tiny-pipeline block runs as written, the
``from_pretrained`` line of the API example raises no FutureWarning with this diffusers,
and the public names it uses are in ``vidlora.__all__``."""

from __future__ import annotations

import re
import warnings

import pytest

import vidlora
from helpers.paths import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_public_names_the_readme_uses():
    for name in ("attach", "read_lora", "write_mp4", "tiny_pipeline", "tiny_pipeline_dir"):
        assert name in vidlora.__all__ and callable(getattr(vidlora, name)), name
        assert f"vidlora.{name}(" in README, name
    assert "overwrite=True" in README


def test_the_tiny_pipeline_block_runs_as_written(tmp_path, monkeypatch):
    (block,) = [b for b in _python_blocks() if "vidlora.tiny_pipeline(" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert type(namespace["pipe"]).__name__ == "WanPipeline"
    assert namespace["h"].report()["adapters"] == []
    assert (tmp_path / "fox.mp4").stat().st_size > 0
    exec(compile(block, "README.md", "exec"), namespace)  # overwrite=True: a second run replaces it


def test_the_api_examples_from_pretrained_raises_no_future_warning():
    import torch

    (line,) = [l for b in _python_blocks() for l in b.splitlines() if ".from_pretrained(" in l]
    cls_name, args = re.match(r"\s*pipe = (\w+)\.from_pretrained\((.*)\)\s*$", line).groups()
    model_id, kwargs = re.match(r'"([^"]+)",\s*(.*)', args).groups()
    assert "torch_dtype" not in kwargs  # deprecated in diffusers 0.42 (a FutureWarning)
    import diffusers

    folder = vidlora.tiny_pipeline_dir("wan-i2v")  # the same call, on the tiny model of that class
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        pipe = eval(f"cls.from_pretrained(folder, {kwargs})",  # noqa: S307 - our own README
                    {"cls": getattr(diffusers, cls_name), "folder": folder, "torch": torch})
    assert pipe.transformer.dtype == torch.bfloat16
    with pytest.raises(FutureWarning):  # the check is live: the old spelling does warn
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            getattr(diffusers, cls_name).from_pretrained(folder, torch_dtype=torch.bfloat16)
