"""Named stages of a CLI run: an error escaping from inside a library becomes one line
naming the stage (``vidlora: error: while denoising: RuntimeError: ...``) with the full
traceback behind ``--debug`` or ``VIDLORA_DEBUG=1``.

vidlora's own errors (VidloraError: bad files, a LoRA for another model...) pass through
unchanged: they already are one line naming the thing. CUDA out of memory becomes a
VidloraError with the usual ways out.
"""

from __future__ import annotations

import contextlib
import os

from vidlora.errors import VidloraError

from ..messages import first_line

__all__ = ["StageError", "stage", "debug_requested"]


class StageError(Exception):
    """An unexpected error inside a stage; ``__cause__`` is the original exception."""

    def __init__(self, stage: str, exc: BaseException):
        super().__init__(f"while {stage}: {type(exc).__name__}: {first_line(exc)}")
        self.stage = stage


def debug_requested(args=None) -> bool:
    """--debug on the command line, or VIDLORA_DEBUG set to anything but 0/false/no."""
    if getattr(args, "debug", False):
        return True
    return os.environ.get("VIDLORA_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def stage(name: str):
    """``with stage("denoising"):`` -- see the module docstring."""
    try:
        yield
    except (VidloraError, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, torch already imported
            raise _oom_error(exc) from None
        raise StageError(name, exc) from exc


def _oom_error(e: BaseException) -> VidloraError:
    return VidloraError(
        "CUDA out of memory. Try --fp8 (halves the transformer's weights), --offload model|group|sequential, "
        f"fewer --frames or a smaller --size ({str(e).splitlines()[0][:160]})"
    )
