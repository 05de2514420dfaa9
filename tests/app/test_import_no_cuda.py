"""Importing vidlora and running the op on CPU initialises no CUDA and loads no kernels.

On a CPU-only torch a plain ``torch.cuda.is_initialized()`` check cannot fail, so the
subprocess replaces ``torch.cuda._lazy_init`` (the one path to a CUDA context) with a
function that raises, then imports and uses the package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch

    def _refuse(*args, **kwargs):
        raise AssertionError("CUDA was initialised")

    torch.cuda._lazy_init = _refuse

    import vidlora
    import vidlora.kernels
    from vidlora.kernels import lora_linear
    from vidlora.kernels.backend import resolve_backend

    x = torch.randn(3, 5, 16)
    w, a, b, c = torch.randn(8, 16), torch.randn(4, 16), torch.randn(8, 4), torch.rand(4)
    assert lora_linear(x, w, None, a, b, c).shape == (3, 5, 8)
    with vidlora.use_backend("torch"):
        assert vidlora.get_backend() == "torch"
    assert resolve_backend("cpu") == "torch"
    # The Triton kernel module is imported on first Triton use only.
    assert "vidlora.kernels.lora_gemm" not in sys.modules, "kernels imported eagerly"
    # The lazy_init replacement is live (a call through it must raise).
    try:
        torch.cuda._lazy_init()
    except AssertionError:
        print("OK")
    """
)


def test_import_and_cpu_call_initialise_no_cuda():
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "VIDLORA_BACKEND")}
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK"), out.stdout
