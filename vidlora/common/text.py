"""Small text formatting shared by the reports (``Adapters.report()``, ``vidlora inspect``,
the CLI summary) and the download progress bar."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["index_ranges", "format_bytes"]

# Binary units, named as such (IEC): torch's allocator messages ("Tried to allocate
# 20.00 GiB"), torch.cuda.mem_get_info and nvidia-smi count in powers of 1024, so a size
# vidlora prints is directly comparable with what the user sees there.
_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: float) -> str:
    """A byte count for people: 512 -> "512 B", 1536 -> "1.50 KiB", 3 * 2**30 -> "3.00 GiB"."""
    value = float(n)
    for unit in _BYTE_UNITS:
        if unit == "B" and abs(value) < 1024:
            return f"{value:.0f} B"
        # round first, so that 1023.999 KiB prints as "1.00 MiB", not "1024.00 KiB"
        if abs(round(value, 2)) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable: the last unit always returns")


def index_ranges(numbers: Iterable[int]) -> str:
    """{0, 1, 2, 5} -> "0-2, 5"."""
    out, run = [], []
    for n in sorted(set(numbers)):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)
