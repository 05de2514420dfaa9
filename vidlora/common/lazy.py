"""Public names that load on first use (PEP 562), the one implementation for vidlora's
packages (``kernels/__init__.py`` keeps its own: kernels import nothing of vidlora).

    _LAZY = {"read_lora": "read", ...}          # name -> submodule (or full module name)
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)

The table stays a literal ``_LAZY`` dict in each package: tests/test_layers.py reads it to
draw the import graph the lazy names make.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, table: Mapping[str, str], names: Sequence[str],
                 absolute: bool = False) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:  # fmt: skip
    """``(__getattr__, __dir__)`` for ``package``: a name in ``table`` is imported from
    its module (``package.<module>``, or the module itself when ``absolute``) the first
    time it is asked for, then kept in the package's namespace; ``__dir__`` lists ``names``."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module if absolute else f"{package}.{module}"), name)
        sys.modules[package].__dict__[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
