"""Wan 2.1/2.2 and HunyuanVideo diffusers pipelines: what a model is, loading it, placing
it, and running one generation.

- configs: model_index.json and component configs, from a folder, the Hub or tiny (no weights)
- info: ``ModelInfo`` / ``model_info``: what a model is and accepts, from its configs
- checks: frame/size rounding, the transformer's limits, generate's argument rules
- images: the input image (opened, fitted to the video's aspect ratio)
- loading: ``load_pipeline`` (diffusers from_pretrained with vidlora's dtype rules), ``tiny_pipeline``
- placement: on one device, or one of diffusers' offload modes
- generation: ``generate``, one generation -> frames for ``video.write_mp4``

configs, info, checks and images import no torch: the CLI runs them before it loads any.
``"tiny"`` is the embedded tiny model (``vidlora.app.tiny``): ``tiny`` picks the Wan kind
for the task; ``tiny:KIND`` any of ``TINY_PIPELINE_KINDS`` (e.g. ``tiny:hunyuan-t2v``).
Names load lazily (PEP 562), so ``from vidlora.app.pipelines import model_info`` stays
torch-free.
"""

from __future__ import annotations

from vidlora.common.lazy import lazy_exports

__all__ = [
    "DEFAULT_MODELS",
    "OFFLOAD_MODES",
    "ModelInfo",
    "model_info",
    "round_frames",
    "round_size",
    "check_model_limits",
    "load_pipeline",
    "tiny_pipeline",
    "place_pipeline",
    "apply_offload",
    "load_image",
    "fit_image",
    "generate",
]

_LAZY = {
    "DEFAULT_MODELS": "info",
    "ModelInfo": "info",
    "model_info": "info",
    "round_frames": "checks",
    "round_size": "checks",
    "check_model_limits": "checks",
    "load_image": "images",
    "fit_image": "images",
    "load_pipeline": "loading",
    "tiny_pipeline": "loading",
    "OFFLOAD_MODES": "placement",
    "place_pipeline": "placement",
    "apply_offload": "placement",
    "generate": "generation",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)


