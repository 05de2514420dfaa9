"""vidlora: fused LoRA runtime for Wan 2.1/2.2 and HunyuanVideo diffusers pipelines.

Importing vidlora is cheap and initialises no CUDA context: the heavy modules (diffusers,
Triton kernels) load on first use of the names below.

    import vidlora
    h = vidlora.attach(pipe)                 # patch in place, returns an Adapters handle
    h.add("motion.safetensors", weight=0.8)
    vidlora.write_mp4(frames, "out.mp4", fps=16)

    pipe = vidlora.tiny_pipeline("wan-t2v")  # the embedded tiny pipeline, loaded (CPU, fp32)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__
from .common.lazy import lazy_exports
from .errors import (
    BackendUnavailableError,
    LoRAFormatError,
    LoRAMismatchError,
    SourceError,
    UnsafeFileError,
    VidloraError,
)

__all__ = [
    "__version__",
    "attach",
    "Adapters",
    "context_parallel",
    "ContextParallel",
    "read_lora",
    "LoRAFile",
    "write_mp4",
    "tiny_pipeline",
    "tiny_pipeline_dir",
    "load_fp8_scaled_wan",
    "convert_lora",
    "merge_loras",
    "extract_lora",
    "list_loras",
    "use_backend",
    "get_backend",
    "VidloraError",
    "LoRAFormatError",
    "LoRAMismatchError",
    "UnsafeFileError",
    "BackendUnavailableError",
    "SourceError",
]

# public name -> module that defines it (imported lazily, PEP 562)
_LAZY = {
    "attach": "vidlora.runtime.adapters",
    "Adapters": "vidlora.runtime.adapters",
    "context_parallel": "vidlora.runtime.parallel",
    "ContextParallel": "vidlora.runtime.parallel",
    "read_lora": "vidlora.lora",
    "LoRAFile": "vidlora.lora.lora_file",
    "write_mp4": "vidlora.app.video",
    "tiny_pipeline": "vidlora.app.pipelines",
    "tiny_pipeline_dir": "vidlora.app.tiny",
    "load_fp8_scaled_wan": "vidlora.app.fp8_checkpoints",
    "convert_lora": "vidlora.lora.tools",
    "merge_loras": "vidlora.lora.tools",
    "extract_lora": "vidlora.lora.tools",
    "list_loras": "vidlora.lora.tools",
    "use_backend": "vidlora.kernels.backend",
    "get_backend": "vidlora.kernels.backend",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__, absolute=True)


if TYPE_CHECKING:  # pragma: no cover
    from vidlora.runtime.adapters import Adapters, attach
    from vidlora.runtime.parallel import ContextParallel, context_parallel
    from vidlora.lora import read_lora
    from vidlora.app.fp8_checkpoints import load_fp8_scaled_wan
    from vidlora.kernels.backend import get_backend, use_backend
    from vidlora.lora.lora_file import LoRAFile
    from vidlora.lora.tools import convert_lora, extract_lora, list_loras, merge_loras
    from vidlora.app.video import write_mp4
    from vidlora.app.pipelines import tiny_pipeline
    from vidlora.app.tiny import tiny_pipeline_dir
