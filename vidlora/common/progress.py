"""The one progress bar (rich, on stderr): downloads count bytes, generation counts steps.

    with progress_bar("download motion.safetensors", total, unit="bytes") as advance:
        advance(len(chunk))
    with progress_bar("denoising", steps) as advance:
        advance()

Disabled (``enabled=False``), it yields a no-op ``advance`` and prints nothing. rich is
imported only when a bar is shown, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from .text import format_bytes

__all__ = ["progress_bar"]

_UNITS = ("steps", "bytes")


@contextlib.contextmanager
def progress_bar(
    description: str, total: float | None, *, unit: str = "steps", completed: float = 0, enabled: bool = True
) -> Iterator[Callable[..., None]]:
    """A live bar labelled ``description``; yields ``advance(n=1)``.

    total: the count at 100% (None: unknown, the bar pulses). unit: ``"steps"`` shows
    done/total and elapsed time; ``"bytes"`` shows sizes and speed in binary units
    (:func:`~vidlora.common.text.format_bytes`). completed: where the bar starts (a
    resumed download).
    """
    if unit not in _UNITS:
        raise ValueError(f"progress_bar unit must be one of {', '.join(_UNITS)}; got {unit!r}")
    if not enabled:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if unit == "bytes":
        counts = _byte_columns()
    else:
        counts = (MofNCompleteColumn(), TimeElapsedColumn())
    columns = (TextColumn("{task.description}"), BarColumn(), *counts, TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda n=1: bar.advance(task, n)


def _byte_columns() -> tuple:
    # rich's DownloadColumn / TransferSpeedColumn format in decimal units (MB); these two
    # use format_bytes, so the bar and every report speak the same units.
    from rich.progress import ProgressColumn
    from rich.table import Column
    from rich.text import Text

    class _Size(ProgressColumn):
        def render(self, task) -> Text:
            total = "?" if task.total is None else format_bytes(task.total)
            return Text(f"{format_bytes(task.completed)}/{total}", style="progress.download")

    class _Speed(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("?" if speed is None else f"{format_bytes(speed)}/s", style="progress.data.speed")

    # no_wrap: a narrow terminal squeezes the bar, never splits "3.00 MiB" over two lines
    return _Size(table_column=Column(no_wrap=True)), _Speed(table_column=Column(no_wrap=True))
