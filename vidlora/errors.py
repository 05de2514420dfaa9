"""vidlora's exception types.

Every failure a user can cause (a bad file, a LoRA for another model, a bad CLI argument)
raises a subclass of :class:`VidloraError` with one message that names the thing and what
was expected. The CLI prints that message and exits non-zero, without a traceback.
``VidloraError`` and ``BackendUnavailableError`` are defined by the kernels (the lowest
layer, which raises the latter) and re-exported here.
"""

from __future__ import annotations

from vidlora.kernels.errors import BackendUnavailableError, VidloraError

__all__ = [
    "VidloraError",
    "LoRAFormatError",
    "LoRAMismatchError",
    "UnsafeFileError",
    "BackendUnavailableError",
    "SourceError",
]


class LoRAFormatError(VidloraError):
    """A LoRA file is malformed or uses a scheme/algorithm vidlora does not apply."""


class UnsafeFileError(LoRAFormatError):
    """A file would have to be unpickled (.ckpt/.pt/.bin/.pth): refused, never loaded."""


class LoRAMismatchError(VidloraError):
    """A LoRA does not fit the model it is applied to (family, size, or unmatched keys)."""


class SourceError(VidloraError):
    """A LoRA/model source could not be resolved or downloaded."""
