"""The error types raised by vidlora's kernels, and the root of every vidlora error.

``VidloraError`` lives here, in the lowest layer, so that the kernels can raise a
:class:`BackendUnavailableError` that callers catch as a ``VidloraError`` without the
kernels importing anything above them; ``vidlora.errors`` re-exports both.
"""

from __future__ import annotations

__all__ = ["VidloraError", "BackendUnavailableError"]


class VidloraError(Exception):
    """Base class of every error vidlora raises on purpose."""


class BackendUnavailableError(VidloraError):
    """The requested compute backend cannot run here (e.g. Triton on CPU tensors)."""
