"""The version of vidlora: one home (pyproject reads it from here)."""

__version__ = "0.1.0"
