"""The one safetensors validator: the reader (read_lora), a local source (resolve_source)
and a download (the loopback server) refuse the same bytes with the same message, only
the error class (LoRAFormatError for a read, SourceError for a source; UnsafeFileError
for a pickle on every path) and the name of the file differ."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save as save_safetensors

from helpers.http_server import LoopbackServer, send_bytes
from vidlora.errors import LoRAFormatError, SourceError, UnsafeFileError
from vidlora.lora import read_lora
from vidlora.lora.safetensors_check import MAX_HEADER_BYTES, check_safetensors_file, is_pickle_name
from vidlora.lora.sources import resolve_source

LORA = save_safetensors(
    {"blocks.0.attn1.to_q.lora_A.weight": torch.arange(48.0).reshape(2, 24),
     "blocks.0.attn1.to_q.lora_B.weight": torch.ones(24, 2)},
)


def _with_header(edit) -> bytes:
    (n,) = struct.unpack("<Q", LORA[:8])
    header = json.loads(LORA[8 : 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + LORA[8 + n :]


def _torch_save() -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    return buf.getvalue()


def _unknown_dtype(h):
    h["blocks.0.attn1.to_q.lora_B.weight"]["dtype"] = "F12"


def _int_metadata(h):
    h["__metadata__"] = {"steps": 3}


CASES = {
    # name: (bytes, error class of a read, what the message says)
    "pickle": (pickle.dumps({"w": [1]}, protocol=2), UnsafeFileError, "refused: it is a pickle (protocol 2)"),
    "torch.save": (_torch_save(), UnsafeFileError, "refused: it is a zip archive (torch.save format"),
    "html": (b"<!DOCTYPE html><html>please log in</html>", LoRAFormatError, "it is an HTML page"),
    "json": (b'{"error": "rate limited"}', LoRAFormatError, "it is JSON text"),
    "empty": (b"", LoRAFormatError, "truncated file: 0 bytes"),
    "cut data": (LORA[:-10], LoRAFormatError, "truncated file: tensors need"),
    "cut header": (LORA[:40], LoRAFormatError, "truncated file: header of"),
    "over bound": (struct.pack("<Q", MAX_HEADER_BYTES + 1) + b'{"a": 1}', LoRAFormatError,
                   f"header length {MAX_HEADER_BYTES + 1} exceeds the 100000000-byte bound"),
    "trailing bytes": (LORA + b"\0" * 8, LoRAFormatError, "8 bytes after the last tensor"),
    "unknown dtype": (_with_header(_unknown_dtype), LoRAFormatError, "unknown dtype 'F12'"),
    "int metadata": (_with_header(_int_metadata), LoRAFormatError, "__metadata__ must map strings to strings"),
}


@pytest.fixture(scope="module")
def server():
    srv = LoopbackServer()
    yield srv
    srv.close()


def _raised(call) -> BaseException:
    with pytest.raises(Exception) as err:
        call()
    return err.value


@pytest.mark.parametrize("case", list(CASES))
def test_one_message_on_every_path(tmp_path, server, case):
    data, read_error, says = CASES[case]
    path = tmp_path / "x.safetensors"
    path.write_bytes(data)
    with pytest.raises(read_error) as err:
        check_safetensors_file(path, what="X")
    assert type(err.value) is read_error and str(err.value).startswith("X: ") and says in str(err.value)
    problem = str(err.value)[len("X: "):]
    source_error = UnsafeFileError if read_error is UnsafeFileError else SourceError

    read = _raised(lambda: read_lora(str(path)))
    assert type(read) is read_error and str(read) == f"{path}: {problem}"

    local = _raised(lambda: resolve_source(str(path), cache_dir=tmp_path / "cache"))
    assert type(local) is source_error and str(local) == f"{path}: {problem}"

    route = f"/{case.replace(' ', '_')}.safetensors"
    server.routes[route] = send_bytes(data)
    url = server.url + route
    got = _raised(lambda: resolve_source(url, cache_dir=tmp_path / "cache", progress=False))
    assert type(got) is source_error and str(got) == f"the file downloaded from {url}: {problem}"
    kept = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.name != ".lock"]
    assert kept == [], "a refused download must not stay in the cache"


def test_a_valid_file_passes_every_path(tmp_path, server):
    path = tmp_path / "ok.safetensors"
    path.write_bytes(LORA)
    header = check_safetensors_file(path)
    assert header.size == len(LORA) and header.metadata == {}
    assert read_lora(str(path)).rank == 2
    assert resolve_source(str(path)).path == path.resolve()
    server.routes["/ok.safetensors"] = send_bytes(LORA)
    assert resolve_source(f"{server.url}/ok.safetensors", cache_dir=tmp_path / "c", progress=False).path.read_bytes() == LORA


def test_header_bound_is_safetensors_own(tmp_path):
    # the same number as safetensors' reader (100,000,000, decimal): a header just under
    # it is not refused for its length (it fails later, as truncated), one byte over is.
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", MAX_HEADER_BYTES) + b'{"a": 1}')
    with pytest.raises(LoRAFormatError, match="truncated file: header of 100000000 bytes"):
        check_safetensors_file(path)
    path.write_bytes(struct.pack("<Q", MAX_HEADER_BYTES + 1) + b'{"a": 1}')
    with pytest.raises(LoRAFormatError, match="exceeds the 100000000-byte bound"):
        check_safetensors_file(path)


@pytest.mark.parametrize("name", ["m.ckpt", "m.PT", "dir/m.pth", "m.bin", "m.pkl", "m.pickle"])
def test_one_pickle_suffix_list(tmp_path, name):
    assert is_pickle_name(name)
    path = tmp_path / name.replace("dir/", "")
    path.write_bytes(LORA)  # even real safetensors bytes: the name alone decides, nothing is opened
    for call in (lambda: read_lora(str(path)), lambda: resolve_source(str(path)), lambda: check_safetensors_file(path)):
        err = _raised(call)
        assert type(err) is UnsafeFileError and "is a pickled checkpoint" in str(err) and path.suffix in str(err)
    assert not is_pickle_name("m.safetensors") and not is_pickle_name("m.pt.safetensors")
