"""resolve_source / parse_lora_spec against a loopback HTTP server (no internet).

The server plays three roles: a plain file host (Range requests, truncated transfers,
wrong content), the Civitai API (HTTP 401 without a token, redirects to storage) and the
Hugging Face Hub (HF_ENDPOINT points at it; repo tree + resolve endpoints).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import socket
import threading
import time

import pytest
import torch
from safetensors.torch import save as save_safetensors

from vidlora.errors import SourceError, UnsafeFileError, VidloraError

from helpers.http_server import LoopbackServer, send_bytes, send_json, send_status
from vidlora.lora.safetensors_check import check_safetensors_file
from vidlora.lora.sources import parse_lora_spec, resolve_source
from vidlora.lora.sources.civitai import civitai_ref_from_page_url

LORA = save_safetensors(
    {"blocks.0.attn1.to_q.lora_A.weight": torch.arange(48.0).reshape(2, 24),
     "blocks.0.attn1.to_q.lora_B.weight": torch.ones(24, 2)},
    metadata={"ss_tag_frequency": "{}"},
)
LORA_SHA = hashlib.sha256(LORA).hexdigest()
PICKLE = pickle.dumps({"weight": [1, 2, 3]}, protocol=2)


@pytest.fixture
def server():
    srv = LoopbackServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _no_tokens(monkeypatch, tmp_path):
    for name in ("CIVITAI_TOKEN", "HF_TOKEN", "VIDLORA_CIVITAI_API", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no stored Hub token is picked up


# ---------------------------------------------------------------------------- parse_lora_spec


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("motion.safetensors", ("motion.safetensors", 1.0)),
        ("motion.safetensors:0.8", ("motion.safetensors", 0.8)),
        ("motion.safetensors:-0.5", ("motion.safetensors", -0.5)),
        ("motion.safetensors:1e-1", ("motion.safetensors", 0.1)),
        ("motion.safetensors:0.9,0.8,0.7", ("motion.safetensors", [0.9, 0.8, 0.7])),
        ("civitai:120096@135931", ("civitai:120096@135931", 1.0)),
        ("civitai:120096@135931:0.6", ("civitai:120096@135931", 0.6)),
        ("civitai:120096", ("civitai:120096", 1.0)),
        ("http://host:8080/x.safetensors", ("http://host:8080/x.safetensors", 1.0)),
        ("http://host:8080/x.safetensors:0.5", ("http://host:8080/x.safetensors", 0.5)),
        ("owner/repo/file.safetensors:2", ("owner/repo/file.safetensors", 2.0)),
        ("C:\\loras\\x.safetensors", ("C:\\loras\\x.safetensors", 1.0)),
        ("C:\\loras\\x.safetensors:0.3", ("C:\\loras\\x.safetensors", 0.3)),
    ],
)
def test_parse_lora_spec(spec, expected):
    assert parse_lora_spec(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty LoRA spec"),
        ("motion.safetensors:", "no strength"),
        ("motion.safetensors:0.9,,0.7", "not a strength"),
        ("motion.safetensors:1.2.3", "not a strength"),
        ("motion.safetensors:nan", "not a finite number"),
        (":0.5", "no source"),
    ],
)
def test_parse_lora_spec_rejects(spec, message):
    with pytest.raises(VidloraError, match=message):
        parse_lora_spec(spec)


# ---------------------------------------------------------------------------- local files


def test_local_file(tmp_path):
    path = tmp_path / "motion.safetensors"
    path.write_bytes(LORA)
    resolved = resolve_source(str(path), cache_dir=tmp_path / "cache")
    assert resolved.path == path.resolve()
    assert resolved.sha256 == LORA_SHA
    assert resolved.origin == str(path)


def test_local_pickles_and_junk_are_refused(tmp_path):
    (tmp_path / "model.pt").write_bytes(PICKLE)
    with pytest.raises(UnsafeFileError, match="pickled checkpoint"):
        resolve_source(str(tmp_path / "model.pt"))
    disguised = tmp_path / "disguised.safetensors"
    disguised.write_bytes(PICKLE)
    with pytest.raises(UnsafeFileError, match="a pickle .*arbitrary code"):
        resolve_source(str(disguised))
    zipped = tmp_path / "zipped.safetensors"
    torch.save({"w": torch.ones(2)}, zipped)  # torch.save writes a zip holding a pickle
    with pytest.raises(UnsafeFileError, match="zip"):
        resolve_source(str(zipped))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(LORA[:-10])
    with pytest.raises(SourceError, match="truncated"):
        resolve_source(str(truncated))
    with pytest.raises(SourceError, match="is a folder"):
        resolve_source(str(tmp_path))


def test_missing_local_file_mentions_strength_rule(tmp_path):
    with pytest.raises(SourceError, match="not an existing file.*strength only when it is a number"):
        resolve_source(str(tmp_path / "x.safetensors:abc"))


def test_safetensors_with_brace_like_length_bytes_is_accepted(tmp_path):
    # A header of 8827 bytes has length bytes '{"\0\0\0\0\0\0': still safetensors.
    header = {"__metadata__": {"pad": "x" * 8000}, "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    raw = json.dumps(header).encode()
    raw += b" " * (8827 - len(raw))
    path = tmp_path / "padded.safetensors"
    path.write_bytes((8827).to_bytes(8, "little") + raw + b"\0\0\0\0")
    assert path.read_bytes()[:2] == b'{"'
    check_safetensors_file(path)


# ---------------------------------------------------------------------------- URLs


def test_url_download_is_cached_with_sha256(server, tmp_path):
    server.routes["/files/motion.safetensors"] = send_bytes(LORA)
    url = f"{server.url}/files/motion.safetensors"
    resolved = resolve_source(url, cache_dir=tmp_path, progress=False)
    assert resolved.path.read_bytes() == LORA
    assert resolved.path.name == "motion.safetensors"
    assert resolved.sha256 == LORA_SHA
    assert resolved.origin == url
    assert not list(resolved.path.parent.glob("*.part"))
    # second resolution comes from the cache: no new request
    count = len(server.log)
    again = resolve_source(url, cache_dir=tmp_path, progress=False)
    assert again.path == resolved.path and len(server.log) == count


def test_url_name_from_content_disposition(server, tmp_path):
    server.routes["/dl"] = send_bytes(LORA, headers={"Content-Disposition": 'attachment; filename="Style v2.safetensors"'})
    resolved = resolve_source(f"{server.url}/dl?token=secret123", cache_dir=tmp_path, progress=False)
    assert resolved.path.name == "Style_v2.safetensors"
    assert "secret123" not in resolved.origin


def test_url_404_and_401(server, tmp_path):
    with pytest.raises(SourceError, match="HTTP 404"):
        resolve_source(f"{server.url}/nothing.safetensors", cache_dir=tmp_path, progress=False)
    server.routes["/private.safetensors"] = send_status(401)
    with pytest.raises(SourceError, match="HTTP 401.*credentials"):
        resolve_source(f"{server.url}/private.safetensors", cache_dir=tmp_path, progress=False)


def _closed_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_url_offline_is_a_clear_error(tmp_path):
    port = _closed_port()
    with pytest.raises(SourceError, match=f"cannot reach 127.0.0.1:{port}.*offline"):
        resolve_source(f"http://127.0.0.1:{port}/x.safetensors", cache_dir=tmp_path, progress=False)


def test_truncated_transfer_is_reported_then_resumed(server, tmp_path):
    url = f"{server.url}/big.safetensors"
    server.routes["/big.safetensors"] = send_bytes(LORA, truncate_at=100, honor_range=False)
    with pytest.raises(SourceError, match="cut off 3 times.*next run resumes"):
        resolve_source(url, cache_dir=tmp_path, progress=False)
    assert not list(tmp_path.rglob("big.safetensors"))  # never a half file under the final name
    parts = list(tmp_path.rglob("download.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == 100

    server.routes["/big.safetensors"] = send_bytes(LORA)  # the server recovers and honours Range
    resolved = resolve_source(url, cache_dir=tmp_path, progress=False)
    assert resolved.path.read_bytes() == LORA and resolved.sha256 == LORA_SHA
    last = server.requests_to("/big.safetensors")[-1]
    assert last[2].get("Range") == "bytes=100-"
    assert not list(tmp_path.rglob("download.part"))


def test_interrupted_download_resumes_within_one_call(server, tmp_path):
    calls = {"n": 0}
    full = send_bytes(LORA)
    cut = send_bytes(LORA, truncate_at=150)

    def flaky(req):
        calls["n"] += 1
        (cut if calls["n"] == 1 else full)(req)

    server.routes["/flaky.safetensors"] = flaky
    resolved = resolve_source(f"{server.url}/flaky.safetensors", cache_dir=tmp_path, progress=True)
    assert resolved.path.read_bytes() == LORA
    ranges = [entry[2].get("Range") for entry in server.requests_to("/flaky.safetensors")]
    assert ranges == [None, "bytes=150-"]


def test_part_without_validator_is_restarted_not_resumed(server, tmp_path):
    calls = {"n": 0}

    def flaky(req):
        calls["n"] += 1
        send_bytes(LORA, truncate_at=150 if calls["n"] == 1 else None, etag=None)(req)

    server.routes["/noetag.safetensors"] = flaky
    resolved = resolve_source(f"{server.url}/noetag.safetensors", cache_dir=tmp_path, progress=False)
    assert resolved.path.read_bytes() == LORA
    # no ETag/Last-Modified: nothing proves the file is unchanged, so no Range request
    assert [entry[2].get("Range") for entry in server.requests_to("/noetag.safetensors")] == [None, None]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    calls = {"n": 0}

    def flaky(req):
        calls["n"] += 1
        send_bytes(LORA, truncate_at=150 if calls["n"] == 1 else None, honor_range=False)(req)

    server.routes["/norange.safetensors"] = flaky
    resolved = resolve_source(f"{server.url}/norange.safetensors", cache_dir=tmp_path, progress=False)
    assert resolved.path.read_bytes() == LORA  # not 150 bytes + the whole file again


def test_changed_file_is_not_glued_onto_an_old_part(server, tmp_path):
    url = f"{server.url}/changing.safetensors"
    server.routes["/changing.safetensors"] = send_bytes(b"\0" * 300, truncate_at=120, etag='"old"', honor_range=False)
    with pytest.raises(SourceError, match="cut off"):
        resolve_source(url, cache_dir=tmp_path, progress=False)
    server.routes["/changing.safetensors"] = send_bytes(LORA, etag='"new"')  # If-Range "old" fails -> 200
    assert resolve_source(url, cache_dir=tmp_path, progress=False).path.read_bytes() == LORA


def test_pickle_and_html_served_as_safetensors_are_refused(server, tmp_path):
    server.routes["/evil.safetensors"] = send_bytes(PICKLE)
    with pytest.raises(UnsafeFileError, match="pickle.*never|pickle.*arbitrary code"):
        resolve_source(f"{server.url}/evil.safetensors", cache_dir=tmp_path, progress=False)
    server.routes["/login.safetensors"] = send_bytes(b"<!DOCTYPE html><html>please log in</html>")
    with pytest.raises(SourceError, match="HTML page"):
        resolve_source(f"{server.url}/login.safetensors", cache_dir=tmp_path, progress=False)
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".part", ".safetensors")]
    assert leftovers == []


def test_url_secrets_stay_out_of_messages_origins_and_records(server, tmp_path):
    server.routes["/signed.safetensors"] = send_bytes(LORA)
    url = f"{server.url}/signed.safetensors?X-Amz-Signature=s3cr3t&token=t0ken&version=2"
    resolved = resolve_source(url, cache_dir=tmp_path, progress=False)
    assert resolved.origin == f"{server.url}/signed.safetensors?X-Amz-Signature=***&token=***&version=2"
    (record,) = tmp_path.rglob("record.json")
    assert json.loads(record.read_text())["url"] == resolved.origin
    server.routes["/gone.safetensors"] = send_status(404)
    with pytest.raises(SourceError) as err:
        resolve_source(f"{server.url}/gone.safetensors?api_key=k3y", cache_dir=tmp_path, progress=False)
    assert "k3y" not in str(err.value) and "api_key=***" in str(err.value)
    # a password in the netloc is never printed, not even when the host cannot be reached
    port = _closed_port()
    with pytest.raises(SourceError, match=f"cannot reach 127.0.0.1:{port} ") as err:
        resolve_source(f"http://user:pa55@127.0.0.1:{port}/x.safetensors", cache_dir=tmp_path, progress=False)
    assert "pa55" not in str(err.value)


def test_requests_name_vidlora(server, tmp_path):
    server.routes["/ua.safetensors"] = send_bytes(LORA)
    resolve_source(f"{server.url}/ua.safetensors", cache_dir=tmp_path, progress=False)
    assert server.requests_to("/ua.safetensors")[0][2]["User-Agent"].startswith("vidlora")


def test_a_damaged_record_means_download_again(server, tmp_path):
    server.routes["/r.safetensors"] = send_bytes(LORA)
    url = f"{server.url}/r.safetensors"
    first = resolve_source(url, cache_dir=tmp_path, progress=False)
    (record,) = tmp_path.rglob("record.json")
    for damage in ("not json", json.dumps({"file": first.path.name}), json.dumps({**json.loads(record.read_text()), "size": 1})):
        record.write_text(damage)
        count = len(server.requests_to("/r.safetensors"))
        again = resolve_source(url, cache_dir=tmp_path, progress=False)
        assert again.path == first.path and again.sha256 == LORA_SHA
        assert len(server.requests_to("/r.safetensors")) == count + 1
    assert len(list((tmp_path / "downloads").iterdir())) == 1  # one folder per URL
    server.routes["/other.safetensors"] = send_bytes(LORA)
    resolve_source(f"{server.url}/other.safetensors", cache_dir=tmp_path, progress=False)
    assert len(list((tmp_path / "downloads").iterdir())) == 2


def test_two_resolutions_at_once_download_once(server, tmp_path):
    serve = send_bytes(LORA)
    started = threading.Event()

    def slow(req):
        started.set()
        time.sleep(0.3)  # the second caller arrives while the first one downloads
        serve(req)

    server.routes["/shared.safetensors"] = slow
    url = f"{server.url}/shared.safetensors"
    results, errors = [], []

    def run():
        try:
            results.append(resolve_source(url, cache_dir=tmp_path, progress=False))
        except Exception as exc:  # reported below
            errors.append(exc)

    first = threading.Thread(target=run)
    first.start()
    assert started.wait(5)
    second = threading.Thread(target=run)
    second.start()
    first.join(10)
    second.join(10)
    assert errors == [] and len(results) == 2
    assert results[0].path == results[1].path and results[0].path.read_bytes() == LORA
    assert len(server.requests_to("/shared.safetensors")) == 1  # the second waited on the lock, then read the record


# ---------------------------------------------------------------------------- Civitai


def _civitai_version(server, *, download_path="/api/download/models/135931", sha=LORA_SHA, model_id=120096,
                     download_host=None):
    host = download_host or server.url
    return {
        "id": 135931, "modelId": model_id, "baseModel": "Wan Video 14B i2v 480p",
        "trainedWords": ["sks dance", " "],
        "files": [
            {"name": "motion_v1.pt", "type": "Model", "metadata": {"format": "PickleTensor"},
             "downloadUrl": f"{host}/never"},
            {"name": "motion_v1.safetensors", "type": "Model", "primary": True,
             "metadata": {"format": "SafeTensor"}, "hashes": {"SHA256": sha.upper()},
             "downloadUrl": f"{host}{download_path}"},
            {"name": "training_data.zip", "type": "Training Data", "downloadUrl": f"{host}/never"},
        ],
    }


def _needs_token(token):
    ok = send_bytes(LORA)

    def route(req):
        if req.headers.get("Authorization") != f"Bearer {token}":
            send_status(401, b'{"error":"Unauthorized"}')(req)
        else:
            ok(req)

    return route


def test_civitai_with_token(server, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDLORA_CIVITAI_API", server.url)
    monkeypatch.setenv("CIVITAI_TOKEN", "tok123")
    server.routes["/api/v1/model-versions/135931"] = send_json(_civitai_version(server))
    server.routes["/api/download/models/135931"] = _needs_token("tok123")
    resolved = resolve_source("civitai:120096@135931", cache_dir=tmp_path, progress=False)
    assert resolved.path.read_bytes() == LORA
    assert resolved.path.name == "motion_v1.safetensors"
    assert resolved.sha256 == LORA_SHA
    assert resolved.origin == "civitai:120096@135931"
    assert resolved.trigger_words == ("sks dance",)
    assert resolved.info["base_model"] == "Wan Video 14B i2v 480p"
    assert server.requests_to("/never") == []


def test_civitai_401_without_token(server, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDLORA_CIVITAI_API", server.url)
    server.routes["/api/v1/model-versions/135931"] = send_json(_civitai_version(server))
    server.routes["/api/download/models/135931"] = _needs_token("tok123")
    with pytest.raises(SourceError, match="HTTP 401.*set CIVITAI_TOKEN"):
        resolve_source("civitai:120096@135931", cache_dir=tmp_path, progress=False)
    monkeypatch.setenv("CIVITAI_TOKEN", "wrong")
    with pytest.raises(SourceError, match="HTTP 401.*key in CIVITAI_TOKEN was refused"):
        resolve_source("civitai:120096@135931", cache_dir=tmp_path, progress=False)


def test_civitai_redirect_to_storage_drops_the_token(server, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDLORA_CIVITAI_API", server.url)
    monkeypatch.setenv("CIVITAI_TOKEN", "tok123")
    server.routes["/api/v1/model-versions/135931"] = send_json(_civitai_version(server))
    # same server under another host name: urllib would forward Authorization to it
    storage = f"http://localhost:{server.port}/bucket/signed.safetensors"
    server.routes["/api/download/models/135931"] = send_status(302, headers={"Location": storage})
    server.routes["/bucket/signed.safetensors"] = send_bytes(LORA)
    resolved = resolve_source("civitai:120096@135931", cache_dir=tmp_path, progress=False)
    assert resolved.path.read_bytes() == LORA
    assert server.requests_to("/api/download/models/135931")[0][2].get("Authorization") == "Bearer tok123"
    assert "Authorization" not in server.requests_to("/bucket/signed.safetensors")[0][2]


def test_civitai_login_page_names_the_token(server, tmp_path, monkeypatch):
    # Civitai answers a download that needs a key with its login page (HTTP 200)
    monkeypatch.setenv("VIDLORA_CIVITAI_API", server.url)
    server.routes["/api/v1/model-versions/135931"] = send_json(_civitai_version(server))
    server.routes["/api/download/models/135931"] = send_bytes(b"<!DOCTYPE html><html>Sign in</html>")
    with pytest.raises(SourceError, match="HTML page.*Civitai serves a login page.*set CIVITAI_TOKEN"):
        resolve_source("civitai:120096@135931", cache_dir=tmp_path, progress=False)
    monkeypatch.setenv("CIVITAI_TOKEN", "tok123")  # with a key, the page is something else: no advice to set one
    with pytest.raises(SourceError, match="HTML page") as err:
        resolve_source("civitai:120096@135931", cache_dir=tmp_path, progress=False)
    assert "CIVITAI_TOKEN" not in str(err.value)
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".part", ".safetensors")]


def test_civitai_checks_hash_model_and_format(server, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDLORA_CIVITAI_API", server.url)
    server.routes["/api/download/models/135931"] = send_bytes(LORA)
    server.routes["/api/v1/model-versions/135931"] = send_json(_civitai_version(server, sha="ab" * 32))
    with pytest.raises(SourceError, match="sha256 .* but the source lists abab"):
        resolve_source("civitai:120096@135931", cache_dir=tmp_path / "a", progress=False)
    server.routes["/api/v1/model-versions/135931"] = send_json(_civitai_version(server, model_id=999))
    with pytest.raises(SourceError, match="belongs to model 999, not 120096"):
        resolve_source("civitai:120096@135931", cache_dir=tmp_path / "b", progress=False)
    pickles_only = _civitai_version(server)
    pickles_only["files"] = pickles_only["files"][:1]
    server.routes["/api/v1/model-versions/135931"] = send_json(pickles_only)
    with pytest.raises(UnsafeFileError, match="no SafeTensor file.*motion_v1.pt"):
        resolve_source("civitai:120096@135931", cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(SourceError, match="HTTP 404"):
        resolve_source("civitai:120096@1", cache_dir=tmp_path / "d", progress=False)
    with pytest.raises(SourceError, match="civitai:MODEL@VERSION"):
        resolve_source("civitai:abc", cache_dir=tmp_path / "e", progress=False)


def test_civitai_latest_version_and_offline_reuse(server, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDLORA_CIVITAI_API", server.url)
    server.routes["/api/v1/models/120096"] = send_json({"id": 120096, "modelVersions": [{"id": 135931}, {"id": 1}]})
    server.routes["/api/v1/model-versions/135931"] = send_json(_civitai_version(server))
    server.routes["/api/download/models/135931"] = send_bytes(LORA)
    first = resolve_source("civitai:120096", cache_dir=tmp_path, progress=False)
    assert first.origin == "civitai:120096@135931"
    server.close()  # offline from now on
    again = resolve_source("civitai:120096@135931", cache_dir=tmp_path, progress=False)
    assert again.path == first.path and again.sha256 == LORA_SHA


def test_civitai_page_url_goes_through_the_api(server, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDLORA_CIVITAI_API", server.url)
    server.routes["/api/v1/model-versions/135931"] = send_json(_civitai_version(server))
    server.routes["/api/download/models/135931"] = send_bytes(LORA)
    assert civitai_ref_from_page_url("https://civitai.com/models/120096/x?modelVersionId=135931") == \
        "civitai:120096@135931"
    resolved = resolve_source("https://civitai.com/models/120096/some-name?modelVersionId=135931",
                              cache_dir=tmp_path, progress=False)
    assert resolved.origin == "civitai:120096@135931"


# ---------------------------------------------------------------------------- Hugging Face Hub


def _hub_repo(server, repo, files, *, commit="c" * 40):
    tree = [{"type": "file", "path": name, "size": len(data), "oid": "1" * 40} for name, data in files.items()]
    server.routes[f"/api/models/{repo}/tree/main"] = send_json(tree)
    for name, data in files.items():
        server.routes[f"/{repo}/resolve/main/{name}"] = send_bytes(
            data, etag=f'"{hashlib.sha256(data).hexdigest()}"', headers={"X-Repo-Commit": commit})


def test_hub_single_file_repo_and_explicit_file(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    _hub_repo(server, "owner/motion", {"README.md": b"hi", "lora/motion.safetensors": LORA})
    resolved = resolve_source("owner/motion", cache_dir=tmp_path, progress=False)
    assert resolved.path.read_bytes() == LORA and resolved.sha256 == LORA_SHA
    assert resolved.origin == "hf:owner/motion/lora/motion.safetensors"
    assert str(tmp_path / "huggingface") in str(resolved.path)  # huggingface_hub's cache layout
    explicit = resolve_source("owner/motion/lora/motion.safetensors", cache_dir=tmp_path, progress=False)
    assert explicit.path.read_bytes() == LORA
    server.close()  # offline: both forms resolve from the Hub cache
    assert resolve_source("owner/motion", cache_dir=tmp_path, progress=False).path == resolved.path
    assert resolve_source("owner/motion/lora/motion.safetensors", cache_dir=tmp_path).path.read_bytes() == LORA
    with pytest.raises(SourceError, match="cannot reach owner/other"):
        resolve_source("owner/other", cache_dir=tmp_path, progress=False)


def test_hub_repo_with_several_files_asks_for_one(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    _hub_repo(server, "owner/pack", {"high.safetensors": LORA, "low.safetensors": LORA, "old.pt": PICKLE})
    with pytest.raises(SourceError, match=r"(?s)holds 2 \.safetensors files.*owner/pack/high\.safetensors\n.*owner/pack/low"):
        resolve_source("owner/pack", cache_dir=tmp_path, progress=False)
    with pytest.raises(UnsafeFileError, match="pickled checkpoint"):
        resolve_source("owner/pack/old.pt", cache_dir=tmp_path, progress=False)


def test_hub_errors(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    # the Hub answers 401 + RepoNotFound for a repo that is missing or private
    server.routes["/api/models/owner/missing/tree/main"] = send_status(401, headers={"X-Error-Code": "RepoNotFound"})
    with pytest.raises(SourceError, match="no repository owner/missing.*HF_TOKEN"):
        resolve_source("owner/missing", cache_dir=tmp_path, progress=False)
    _hub_repo(server, "owner/pickles", {"model.bin": PICKLE})
    with pytest.raises(UnsafeFileError, match="only pickled checkpoints \\(model.bin\\)"):
        resolve_source("owner/pickles", cache_dir=tmp_path, progress=False)
    server.routes["/owner/pickles/resolve/main/evil.safetensors"] = send_bytes(
        PICKLE, headers={"X-Repo-Commit": "c" * 40})
    with pytest.raises(UnsafeFileError, match="a pickle"):
        resolve_source("owner/pickles/evil.safetensors", cache_dir=tmp_path, progress=False)
    with pytest.raises(SourceError, match="must name a .safetensors file"):
        resolve_source("owner/pickles/notes.txt", cache_dir=tmp_path, progress=False)


# ---------------------------------------------------------------------------- through the public API


def test_adapters_add_and_read_lora_take_urls_and_hub_ids(server, tmp_path, monkeypatch):
    """`read_lora` and `Adapters.add` resolve remote sources through the same call."""
    import vidlora
    from vidlora.app.tiny import write_demo_assets
    from vidlora.app.tiny import tiny_transformer

    data = write_demo_assets(tmp_path / "assets")["motion"].read_bytes()
    monkeypatch.setenv("VIDLORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    server.routes["/files/motion.safetensors"] = send_bytes(data)
    _hub_repo(server, "owner/motion", {"motion.safetensors": data})

    lora = vidlora.read_lora(f"{server.url}/files/motion.safetensors")
    assert lora.rank == 8 and lora.trigger_words == ["bouncing"]
    h = vidlora.attach(tiny_transformer("wan-t2v"))
    assert h.add(f"{server.url}/files/motion.safetensors", weight=0.5) == "motion"
    assert h.add("owner/motion", name="from_hub") == "from_hub"
    assert h.report()["adapters"][1]["linears"] == h.report()["adapters"][0]["linears"] > 0
