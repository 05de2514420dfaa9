"""Backend selection and dispatch of torch.ops.vidlora.lora_linear."""

from __future__ import annotations

import pytest
import torch

import vidlora
from vidlora.errors import BackendUnavailableError
from vidlora.kernels import backend as backend_mod
from vidlora.kernels import lora_linear, lora_linear_reference
from vidlora.kernels.backend import get_backend, resolve_backend, use_backend

from helpers.paths import REPO_ROOT


def _args(dtype=torch.float32, r=4, m=9, n=12, k=20):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(m, k, generator=g).to(dtype),
        torch.randn(n, k, generator=g).to(dtype),
        torch.randn(n, generator=g).to(dtype),
        torch.randn(r, k, generator=g).to(dtype),
        torch.randn(n, r, generator=g).to(dtype),
        torch.rand(r, generator=g),
    )


@pytest.fixture(autouse=True)
def _no_env_backend(monkeypatch):
    monkeypatch.delenv(backend_mod.ENV_VAR, raising=False)


def test_public_names_reexported_from_vidlora():
    assert vidlora.use_backend is use_backend and vidlora.get_backend is get_backend


def test_default_is_auto_and_cpu_runs_the_reference_bit_for_bit():
    assert get_backend() == "auto"
    assert resolve_backend("cpu") == "torch"
    args = _args(torch.bfloat16)
    assert torch.equal(lora_linear(*args), lora_linear_reference(*args))


def test_context_manager_nests_and_restores():
    with use_backend("torch"):
        assert get_backend() == "torch"
        with use_backend("triton") as name:
            assert name == "triton" and get_backend() == "triton"
        assert get_backend() == "torch"
    assert get_backend() == "auto"


def test_context_manager_restores_after_an_exception():
    with pytest.raises(RuntimeError), use_backend("torch"):
        raise RuntimeError("boom")
    assert get_backend() == "auto"


def test_env_var_selects_and_context_manager_wins(monkeypatch):
    monkeypatch.setenv("VIDLORA_BACKEND", "Torch")
    assert get_backend() == "torch"
    with use_backend("triton"):
        assert get_backend() == "triton"


def test_unknown_names_are_errors(monkeypatch):
    with pytest.raises(BackendUnavailableError, match="unknown vidlora backend 'cuda'.*auto, triton, torch"):
        with use_backend("cuda"):
            pass
    monkeypatch.setenv("VIDLORA_BACKEND", "fast")
    with pytest.raises(BackendUnavailableError, match="VIDLORA_BACKEND"):
        get_backend()


def test_triton_on_cpu_runs_the_kernels_under_the_interpreter(monkeypatch):
    from vidlora.kernels import lora_gemm

    calls = []
    real = lora_gemm.lora_linear_triton
    monkeypatch.setattr(lora_gemm, "lora_linear_triton", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = _args(torch.float16)
    with use_backend("triton"):
        y = lora_linear(*args)
    assert calls == [1]
    ref = lora_linear_reference(*(a.float() for a in args))
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=2e-3)


def test_triton_on_cpu_without_interpreter_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with use_backend("triton"), pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        lora_linear(*_args())


def test_triton_missing_is_an_error(monkeypatch):
    monkeypatch.setattr(backend_mod, "triton_installed", lambda: False)
    with pytest.raises(BackendUnavailableError, match="triton package is not installed"):
        with use_backend("triton"):
            pass
    # auto on a CUDA device needs Triton too: refused, never silently the reference.
    with pytest.raises(BackendUnavailableError, match="VIDLORA_BACKEND=torch"):
        resolve_backend("cuda")
    assert resolve_backend("cpu") == "torch"


@pytest.mark.parametrize("capability,expected", [((9, 0), "triton"), ((8, 0), "triton"), ((7, 5), None)])
def test_cuda_resolution_by_compute_capability(monkeypatch, capability, expected):
    # No GPU here: the capability query is the only CUDA call resolution makes.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    monkeypatch.setattr(torch.version, "hip", None)
    if expected is None:
        with pytest.raises(BackendUnavailableError, match="Test GPU is 7.5"):
            resolve_backend("cuda")
    else:
        assert resolve_backend("cuda") == expected
    with use_backend("torch"):
        assert resolve_backend("cuda") == "torch"


def test_triton_on_an_unsupported_device_is_an_error():
    with use_backend("triton"), pytest.raises(BackendUnavailableError, match="meta tensors"):
        resolve_backend("meta")


def test_rank_zero_is_exactly_the_base_linear():
    x, w, b, a, bb, c = _args(r=0)
    y = lora_linear(x, w, b, a, bb, c)
    assert torch.equal(y, torch.nn.functional.linear(x, w, b))


@pytest.mark.parametrize(
    "mutate,error,match",
    [
        (lambda a: a.__setitem__(1, a[1][:, :-1]), ValueError, r"x \[9, 20\] has 20 features but weight \[12, 19\]"),
        (lambda a: a.__setitem__(2, a[2][:-1]), ValueError, r"bias must be \[12\]"),
        (lambda a: a.__setitem__(3, a[3][:, :-1]), ValueError, r"lora_a must be \[R, 20\]"),
        (lambda a: a.__setitem__(4, a[4][:, :-1]), ValueError, r"lora_b must be \[12, 4\]"),
        (lambda a: a.__setitem__(5, a[5][:-1]), ValueError, r"lora_scale must be \[4\]"),
        (lambda a: a.__setitem__(5, a[5].double()), TypeError, "lora_scale must be float32"),
        (lambda a: a.__setitem__(1, a[1].half()), TypeError, "weight has dtype torch.float16 but x has torch.float32"),
        (lambda a: [a.__setitem__(i, a[i].double()) for i in range(5)], TypeError, "float16, bfloat16, float32"),
        (lambda a: a.__setitem__(3, a[3].to("meta")), ValueError, "lora_a is on meta but x is on cpu"),
    ],
)
def test_bad_arguments_fail_with_a_precise_message(mutate, error, match):
    args = list(_args())
    mutate(args)
    with pytest.raises(error, match=match):
        lora_linear(*args)


def test_inference_only_backward_raises():
    x, w, b, a, bb, c = _args()
    w.requires_grad_(True)
    y = lora_linear(x, w, b, a, bb, c)
    with pytest.raises(RuntimeError, match="vidlora.lora_linear.default but no autograd formula"):
        y.sum().backward()


_SHADOW_SCRIPT = """
import importlib, os, sys, torch
import vidlora
from vidlora.kernels import lora_linear
import vidlora.kernels.lora_gemm as lg

# What transformers does while probing for Hugging Face's hub `kernels` package; from a
# checkout's root it finds this repository's kernels/ folder instead.
from transformers.utils.import_utils import is_kernels_available
assert is_kernels_available() is False
shadow = sys.modules.get("kernels") or importlib.import_module("kernels")
assert os.path.dirname(shadow.__file__) == os.path.dirname(vidlora.kernels.__file__), shadow.__file__
assert shadow.__all__ == [] and not hasattr(shadow, "lora_linear") and "kernels.ops" not in sys.modules

calls = []
real = lg.lora_linear_triton
lg.lora_linear_triton = lambda *a, **k: calls.append(1) or real(*a, **k)
x, w, a, b, c = torch.randn(3, 40), torch.randn(24, 40), torch.randn(16, 40), torch.randn(24, 16), torch.rand(16)
with vidlora.use_backend("triton"):
    lora_linear(x, w, None, a, b, c)
assert calls == [1], "use_backend('triton') was not honoured"
try:
    import kernels.ops
except ImportError as err:
    assert "import vidlora.kernels.ops, not kernels.ops" in str(err)
else:
    raise AssertionError("kernels.ops imported as a second copy")
print("OK")
"""


def test_top_level_kernels_import_from_a_checkout_is_inert():
    """``import kernels`` from the repo root (transformers' probe) must not re-register the op."""
    import os
    import subprocess
    import sys

    root = REPO_ROOT
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("VIDLORA_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", _SHADOW_SCRIPT], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-3000:]
