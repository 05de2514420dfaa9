"""Test-session setup.

TRITON_INTERPRET must be set before any @triton.jit function is created (i.e. before the
kernel modules are imported), so it is set here, at the top of the first file pytest
imports. Tests that compile kernels ahead of time for real GPUs run in a subprocess with
the variable removed (the interpreter and AOT compilation cannot share a process).
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
