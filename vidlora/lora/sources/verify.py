"""A file a source produced -> checked by the one safetensors validator, and its sha256.

For a source, a file that is not safetensors is a problem of where it came from (a
login page instead of the file, a cut transfer, a wrong link): the validator's
LoRAFormatError becomes a SourceError with the same message; a pickle stays an
UnsafeFileError.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vidlora.errors import LoRAFormatError, SourceError, UnsafeFileError

from ..safetensors_check import check_safetensors_file

__all__ = ["check_source_file", "sha256_file"]

_CHUNK_BYTES = 1 << 20


def check_source_file(path: Path, what: str) -> None:
    """Raise UnsafeFileError for a pickle, SourceError for anything else that is not a
    complete safetensors file; ``what`` names the file in the message."""
    try:
        check_safetensors_file(path, what=what)
    except UnsafeFileError:
        raise
    except LoRAFormatError as exc:
        raise SourceError(str(exc)) from None
    except PermissionError:
        raise SourceError(f"{what}: not readable (permission denied)") from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()
