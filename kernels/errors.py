"""The error types raised by vidlora's kernels, and the root of every vidlora error.

``VidloraError`` lives here, in the lowest layer, so that the kernels can raise a
:class:`BackendUnavailableError` that callers catch as a ``VidloraError`` without the
kernels importing anything above them; ``vidlora.errors`` re-exports both.
"""

from __future__ import annotations

__all__ = ["VidloraError", "BackendUnavailableError", "KernelResourceError", "KernelMismatchError"]


class VidloraError(Exception):
    """Base class of every error vidlora raises on purpose."""


class BackendUnavailableError(VidloraError):
    """The requested compute backend cannot run here (e.g. Triton on CPU tensors)."""


class KernelResourceError(BackendUnavailableError):
    """A compiled kernel needs more of a GPU resource (shared memory) than the device has."""


class KernelMismatchError(VidloraError):
    """A kernel's result on this device disagreed with the torch reference (first-use check)."""
