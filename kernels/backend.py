"""Which implementation ``vidlora::lora_linear`` runs: the Triton kernels or the torch reference.

Names:
- ``"auto"`` (default): Triton on CUDA tensors, the torch reference on every other device
  (CPU included, even under ``TRITON_INTERPRET=1``: the interpreter is ~1000x slower than
  the reference, so it is only used when asked for by name).
- ``"triton"``: the Triton kernels. On CUDA tensors; on CPU tensors only when
  ``TRITON_INTERPRET=1`` was set before the kernels were first imported (the interpreter
  runs them through numpy, so a whole patched model can be checked on the kernels' own
  code path without a GPU).
- ``"torch"``: the pure-torch reference (``reference.py``) on any device.

Selection, strongest first: the innermost :func:`use_backend` block (a context variable,
so threads and async tasks each see their own), the ``VIDLORA_BACKEND`` environment
variable (read at every call, so it can be changed between calls), ``"auto"``.

A backend that cannot run where it is asked to raises
:class:`vidlora.errors.BackendUnavailableError` naming what is missing; it never falls back
silently to another one (a silent fall back turns a fused ~1.05x layer into the ~1.3-1.6x
unfused one without anyone noticing). The check is cheap and initialises no CUDA context
until a CUDA tensor is actually seen.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os
from collections.abc import Iterator

import torch

from .errors import BackendUnavailableError

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "get_backend",
    "use_backend",
    "resolve_backend",
    "triton_installed",
    "interpreter_enabled",
]

BACKENDS = ("auto", "triton", "torch")
ENV_VAR = "VIDLORA_BACKEND"

# The kernels are compiled and audited for sm_80 (A100), sm_89 (L40S/4090), sm_90 (H100):
# bf16 tensor-core MMA needs sm_80, so older GPUs are refused by name instead of failing
# deep inside Triton's compiler.
_MIN_CAPABILITY = (8, 0)

_selected: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "vidlora_backend", default=None
)


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown vidlora backend {name!r} ({where}); expected one of {', '.join(BACKENDS)}"
        )
    return name.strip().lower()


def triton_installed() -> bool:
    """True when the ``triton`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


def interpreter_enabled() -> bool:
    """True when ``TRITON_INTERPRET`` asks Triton to interpret kernels on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def get_backend() -> str:
    """The selected backend name: "auto", "triton" or "torch" (not yet resolved per device)."""
    name = _selected.get()
    if name is not None:
        return name
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return _check_name(env, f"environment variable {ENV_VAR}")
    return "auto"


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Run the enclosed code with backend ``name`` ("auto", "triton" or "torch").

    Asking for "triton" where the package is not installed fails here, at the ``with``;
    whether it can run on a given tensor's device is checked at each call.
    """
    checked = _check_name(name, "use_backend")
    if checked == "triton" and not triton_installed():
        raise BackendUnavailableError(
            "backend 'triton' requested but the triton package is not installed; "
            "install triton or use backend 'torch'"
        )
    token = _selected.set(checked)
    try:
        yield checked
    finally:
        _selected.reset(token)


def _require_triton(device: torch.device, selected: str) -> str:
    if not triton_installed():
        raise BackendUnavailableError(
            f"backend {selected!r} needs Triton for {device.type} tensors but the triton "
            f"package is not installed; install triton or set {ENV_VAR}=torch"
        )
    if device.type == "cuda":
        if torch.version.hip is None:
            cap = torch.cuda.get_device_capability(device)
            if cap < _MIN_CAPABILITY:
                raise BackendUnavailableError(
                    f"backend {selected!r}: the Triton kernels need a GPU of compute "
                    f"capability >= {_MIN_CAPABILITY[0]}.{_MIN_CAPABILITY[1]} (bf16 tensor "
                    f"cores); {torch.cuda.get_device_name(device)} is {cap[0]}.{cap[1]}; "
                    f"set {ENV_VAR}=torch"
                )
        return "triton"
    if device.type == "cpu":
        if not interpreter_enabled():
            raise BackendUnavailableError(
                "backend 'triton' on CPU tensors needs the Triton interpreter: set "
                "TRITON_INTERPRET=1 before vidlora's kernels are imported, or use backend "
                "'torch' (or 'auto') for CPU tensors"
            )
        return "triton"
    raise BackendUnavailableError(
        f"backend 'triton' cannot run on {device.type} tensors (CUDA, or CPU under "
        "TRITON_INTERPRET=1); use backend 'torch'"
    )


def resolve_backend(device: torch.device | str) -> str:
    """The implementation that runs for tensors on ``device``: "triton" or "torch"."""
    device = torch.device(device)
    selected = get_backend()
    if selected == "torch":
        return "torch"
    if selected == "auto" and device.type != "cuda":
        return "torch"
    return _require_triton(device, selected)
