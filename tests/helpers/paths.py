"""Where the repository is (tests that start subprocesses from its root)."""

from pathlib import Path

__all__ = ["REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]
