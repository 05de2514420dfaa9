"""The tiny embedded models: test fixtures and the pipelines behind ``--model tiny``.

- configs: the tiny transformer configs and pipeline kinds (pure data, no torch)
- models: random-weight tiny transformers and their forward inputs
- byte_tokenizers: tokenizers over UTF-8 bytes (nothing downloaded) and Hunyuan's template
- builders: the tiny diffusers pipelines, in memory
- cache: the on-disk folder of each pipeline, built once (``tiny_pipeline_dir``)
- demo_assets: the demo's example image and two LoRA files (also test fixtures)

The loaded pipeline is ``vidlora.tiny_pipeline(kind)`` (``vidlora.app.pipelines``).
Names load lazily, so reading the configs imports no torch.
"""

from __future__ import annotations

from vidlora.common.lazy import lazy_exports

__all__ = [
    "TINY_TRANSFORMER_CONFIGS",
    "TINY_PIPELINE_KINDS",
    "TINY_PIPELINE_TASKS",
    "TINY_MARKER_FILE",
    "tiny_transformer",
    "tiny_transformer_inputs",
    "build_tiny_pipeline",
    "tiny_pipeline_dir",
    "tiny_prompt_template",
    "write_demo_assets",
]

_LAZY = {
    "TINY_TRANSFORMER_CONFIGS": "configs",
    "TINY_PIPELINE_KINDS": "configs",
    "TINY_PIPELINE_TASKS": "configs",
    "TINY_MARKER_FILE": "configs",
    "tiny_transformer": "models",
    "tiny_transformer_inputs": "models",
    "build_tiny_pipeline": "builders",
    "tiny_pipeline_dir": "cache",
    "tiny_prompt_template": "byte_tokenizers",
    "write_demo_assets": "demo_assets",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)


