"""vidlora's exception types.

Every failure a user can cause (a bad file, a LoRA for another model, a bad CLI argument)
raises a subclass of :class:`VidloraError` with one message that names the thing and what
was expected. The CLI prints that message and exits non-zero, without a traceback.
"""

from __future__ import annotations

__all__ = [
    "VidloraError",
    "LoRAFormatError",
    "LoRAMismatchError",
    "UnsafeFileError",
    "BackendUnavailableError",
    "SourceError",
]


class VidloraError(Exception):
    """Base class of every error vidlora raises on purpose."""


class LoRAFormatError(VidloraError):
    """A LoRA file is malformed or uses a scheme/algorithm vidlora does not apply."""


class UnsafeFileError(LoRAFormatError):
    """A file would have to be unpickled (.ckpt/.pt/.bin/.pth): refused, never loaded."""


class LoRAMismatchError(VidloraError):
    """A LoRA does not fit the model it is applied to (family, size, or unmatched keys)."""


class BackendUnavailableError(VidloraError):
    """The requested compute backend cannot run here (e.g. Triton on CPU tensors)."""


class SourceError(VidloraError):
    """A LoRA/model source could not be resolved or downloaded."""
