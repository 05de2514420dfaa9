"""The ``vidlora`` command line (console script ``vidlora = vidlora.app.cli:main``).

- parser: the argument parser (no torch)
- main: dispatch and the error policy (one line, exit 2; a stage's error, exit 1)
- plan: every check that needs no torch, in cheapest-first order
- generate_cmd: ``i2v`` / ``t2v`` (read LoRAs, load + attach + place, denoise, write)
- inspect_cmd: ``inspect``
- demo: ``demo`` and its side-by-side comparison
- console, stages: messages on stderr; named stages with one-line errors
"""

from .main import main
from .parser import build_parser

__all__ = ["main", "build_parser"]
