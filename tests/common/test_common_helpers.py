"""The bottom layer's shared helpers: the one byte formatter, the one progress bar, the
one Hugging Face offline probe and the cache-dir rule."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from vidlora.common import hub
from vidlora.common.cache_dir import vidlora_cache_dir
from vidlora.common.progress import progress_bar
from vidlora.common.text import format_bytes, index_ranges


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (1024 * 1024 - 1, "1.00 MiB"),  # 1023.999 KiB rounds up a unit, never "1024.00 KiB"
        (5 * 2**20 + 2**19, "5.50 MiB"),
        (3 * 2**30, "3.00 GiB"),
        (14e9, "13.04 GiB"),  # a 14B-parameter FP8 base, as torch would report it
        (2**42, "4.00 TiB"),
        (2**52, "4096.00 TiB"),
        (1536.0, "1.50 KiB"),  # a speed in bytes/s is a float
    ],
)
def test_format_bytes_uses_binary_units(n, text):
    assert format_bytes(n) == text


def test_index_ranges():
    assert index_ranges([5, 0, 2, 1, 1]) == "0-2, 5"
    assert index_ranges([]) == ""


def test_progress_bar_off_prints_nothing(capsys):
    with progress_bar("download x", 10, unit="bytes", enabled=False) as advance:
        advance(5)
        advance()
    assert capsys.readouterr() == ("", "")


def test_progress_bar_counts_bytes_in_binary_units_on_stderr(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")  # narrow: the sizes must still print whole
    with progress_bar("download motion.safetensors", 3 * 2**20, unit="bytes", completed=2**20) as advance:
        advance(2**20)
        advance(2**20)
    out, err = capsys.readouterr()
    assert out == ""
    assert "download motion.safetensors" in err and "3.00 MiB/3.00 MiB" in err


def test_progress_bar_counts_steps(capsys):
    with progress_bar("denoising", 4) as advance:
        for _ in range(4):
            advance()
    out, err = capsys.readouterr()
    assert out == "" and "denoising" in err and "4/4" in err


def test_progress_bar_refuses_an_unknown_unit():
    with pytest.raises(ValueError, match="unit must be one of steps, bytes"):
        with progress_bar("x", 1, unit="frames"):
            pass


@pytest.fixture
def no_proxy(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_is_reachable_probes_the_host(no_proxy):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert hub.is_reachable(f"http://127.0.0.1:{listener.getsockname()[1]}")
    assert not hub.is_reachable(f"http://127.0.0.1:{_closed_port()}")


def test_is_reachable_trusts_a_proxy(no_proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert hub.is_reachable(f"http://127.0.0.1:{_closed_port()}")


def test_hub_offline(no_proxy, monkeypatch):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint + "/")
    assert hub.hf_endpoint() == endpoint  # read at call time, trailing slash dropped
    assert hub.hub_offline()  # nobody listens there
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not hub.hub_offline(f"http://127.0.0.1:{listener.getsockname()[1]}")

    def no_probe(url):
        raise AssertionError("HF_HUB_OFFLINE must answer without a network probe")

    monkeypatch.setattr(hub, "is_reachable", no_probe)
    for value in ("1", "ON", "yes", "True"):  # huggingface_hub's own truthy spellings
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert hub.hub_offline()


def test_hf_endpoint_default(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert hub.hf_endpoint() == "https://huggingface.co"


def test_cache_dir_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDLORA_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert vidlora_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("VIDLORA_CACHE")
    assert vidlora_cache_dir() == tmp_path / "xdg" / "vidlora"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert vidlora_cache_dir() == tmp_path / "home" / ".cache" / "vidlora"
    monkeypatch.setenv("VIDLORA_CACHE", "~/elsewhere")
    assert vidlora_cache_dir() == Path(tmp_path / "home" / "elsewhere")
