"""The argparse value types the commands share: each checks what it can alone, without
torch (a bad argument costs milliseconds)."""

from __future__ import annotations

import argparse
import math

__all__ = ["size", "positive_int", "finite_float", "positive_float"]


def size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("*", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or min(int(p) for p in parts) <= 0:
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT in pixels (e.g. 832x480); got {text!r}")
    return int(parts[0]), int(parts[1])


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return v


def finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number; got {text!r}")
    return v


def positive_float(text: str) -> float:
    v = finite_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {text!r}")
    return v
