"""``vidlora serve`` on a real local Ray cluster (started once for this module): the tiny
Wan T2V model on 2 replicas keeping 2 LoRA sets each, a bearer token, a queue of 1.

What is checked through HTTP alone (the response headers say which replica answered and
whether the LoRA set was loaded for the request): the MP4 equals the CLI's with the same
settings; the LoRA list in another order gives the same video; two sets alternating load
at most once each per replica; bad requests answer 4xx naming the problem and the next
good request still gives the same video; past the queue, 503 naming the limit; an
asynchronous job completes and its video equals the synchronous one."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import numpy as np
import pytest

from helpers.scale import decoded, free_port, local_ray, ray_or_skip, scale_loras

ray_or_skip()
# Ray Serve's own pydantic models warn about pydantic's v1-style Field arguments
pytestmark = pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`")

from vidlora.app.cli import main  # noqa: E402
from vidlora.app.serve import ServeConfig, ServeLimits, start_server, stop_server  # noqa: E402
from vidlora.app.video import read_mp4_metadata  # noqa: E402

_TOKEN = "test-token"
_BASE = {"num_frames": 5, "steps": 2, "size": "32x32"}
_AFTER_BAD: dict = {}  # the good request's frames after the first bad one: every later one must match


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    return scale_loras(tmp_path_factory.mktemp("loras"))


@pytest.fixture(scope="module")
def server(loras):
    ray = local_ray(num_cpus=2)
    config = ServeConfig(model="tiny", task="t2v", port=free_port(), replicas=2, lru=2, max_queued=1, token=_TOKEN,
                         lora_dirs=(str(loras["motion"].parent),), limits=ServeLimits(max_body=256 * 1024))  # fmt: skip
    try:
        info = start_server(config)
        yield info.url
        stop_server()
    finally:
        ray.shutdown()


def _call(url, path, body=None, token=_TOKEN, raw: bytes | None = None, method=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _generate(url, **fields):
    return _call(url, "/v1/generate", {**_BASE, **fields})


def test_the_video_equals_the_cli_and_the_lora_order_does_not_matter(server, loras, tmp_path, capsys):
    two = [{"model": "motion.safetensors", "weight": 0.8}, {"model": str(loras["motion_b"]), "weight": 0.5}]
    status, headers, mp4 = _generate(server, prompt="a paper boat", seed=2, lora=two)
    assert status == 200, mp4[:300]
    assert headers["Content-Type"] == "video/mp4"
    served = decoded(mp4, tmp_path / "served.mp4")
    meta = read_mp4_metadata(tmp_path / "served.mp4")
    assert (meta["prompt"], meta["seed"], meta["frames"], meta["size"]) == ("a paper boat", 2, 5, "32x32")
    assert sorted(l["weight"] for l in meta["loras"]) == [0.5, 0.8] and all(len(l["sha256"]) == 64 for l in meta["loras"])

    cli = tmp_path / "cli.mp4"
    rc = main(["t2v", "--model", "tiny", "--prompt", "a paper boat", "--seed", "2", "--lora", f"{loras['motion']}:0.8",
               "--lora", f"{loras['motion_b']}:0.5", "--frames", "5", "--steps", "2", "--size", "32x32",
               "--out", str(cli), "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert np.array_equal(served, decoded(cli))

    status, headers2, mp4b = _generate(server, prompt="a paper boat", seed=2, lora=two[::-1])
    assert status == 200, mp4b[:300]
    assert headers2["X-Vidlora-Lora-Set"] == headers["X-Vidlora-Lora-Set"]
    assert np.array_equal(decoded(mp4b, tmp_path / "reversed.mp4"), served)
    # and the comparison can fail: other strengths are another video
    status, _, mp4c = _generate(server, prompt="a paper boat", seed=2, lora=[{**two[0], "weight": 0.3}, two[1]])
    assert status == 200 and not np.array_equal(decoded(mp4c, tmp_path / "other.mp4"), served)


def test_two_sets_alternating_load_at_most_once_per_replica(server, tmp_path):
    # "motion": a name found in the --lora-dir folder, as ComfyUI lists its LoRAs
    sets = {"a": [{"model": "motion"}], "b": [{"model": "motion_b.safetensors"}]}
    seen = []
    for i in range(8):
        name = "ab"[i % 2]
        weight = 0.2 + 0.1 * i  # a strength is per request and free
        status, headers, body = _generate(server, prompt="a fox", seed=i, lora=[{**sets[name][0], "weight": weight}])
        assert status == 200, body[:300]
        seen.append((headers["X-Vidlora-Replica"], headers["X-Vidlora-Lora-Set"], headers["X-Vidlora-Lora-Loaded"]))
    loads = Counter((replica, set_id) for replica, set_id, loaded in seen if loaded == "true")
    assert loads and max(loads.values()) == 1, seen
    assert len({set_id for _, set_id, _ in seen}) == 2
    assert sum(loaded == "false" for *_, loaded in seen) >= 4, seen  # most requests found their set held


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, ["not valid JSON"]),
    ([1, 2], 400, ["JSON object"]),
    ({}, 400, ["prompt is required"]),
    ({"prompt": 3}, 400, ["prompt must be a string"]),
    ({"prompt": "x", "num_frames": -1}, 400, ["num_frames", "between 1 and"]),
    ({"prompt": "x", "num_frames": 10_000}, 400, ["num_frames", "129"]),
    ({"prompt": "x", "size": "12"}, 400, ["size", "WIDTHxHEIGHT"]),
    ({"prompt": "x", "size": "4096x4096"}, 400, ["size", "limit"]),
    ({"prompt": "x", "steps": 1.5}, 400, ["steps", "whole number"]),
    ({"prompt": "x", "guidance": "high"}, 400, ["guidance", "finite number"]),
    ({"prompt": "x", "temperature": 0.7}, 400, ["unknown field 'temperature'"]),
    ({"prompt": "x", "image": "aGVsbG8="}, 400, ["image", "text-to-video"]),
    ({"prompt": "x", "guidance_2": 2.0}, 400, ["guidance_2", "Wan 2.2 A14B"]),
    ({"prompt": "x", "lora": {"model": "motion.safetensors"}}, 400, ["lora must be a list"]),
    ({"prompt": "x", "lora": [{"model": "motion.safetensors", "weight": "strong"}]}, 400, ["lora[0].weight"]),
    ({"prompt": "x", "lora": [{"model": "motion.safetensors"}, {"model": "{motion}"}]}, 400, ["same LoRA"]),
    ({"prompt": "x", "lora": [{"model": "missing.safetensors"}]}, 422, ["lora[0].model", "missing.safetensors"]),
    ({"prompt": "x", "lora": [{"model": "weights.ckpt"}]}, 422, ["pickle"]),
    ({"prompt": "x", "lora": [{"model": "truncated.safetensors"}]}, 422, ["truncated"]),
    ({"prompt": "x", "lora": [{"model": "motion.safetensors"}, {"model": "hunyuan.safetensors"}]}, 422,
     ["HunyuanVideo", "Wan"]),
    ({"prompt": "x" * 300_000}, 413, ["at most"]),
])  # fmt: skip
def test_bad_requests_answer_4xx_naming_the_problem(server, loras, tmp_path, body, status, words):
    if isinstance(body, dict) and "lora" in body and isinstance(body["lora"], list):
        body = {**body, "lora": [{**e, "model": e["model"].replace("{motion}", str(loras["motion"]))} for e in body["lora"]]}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, _, reply = _call(server, "/v1/generate", raw=raw)
    assert got == status, reply[:400]
    error = json.loads(reply)["error"]
    for w in words:
        assert w.lower() in error.lower(), (w, error)
    # the replica is alive and its adapters are as they were: the same request, the same video
    good = {"prompt": "a fox", "seed": 11, "lora": [{"model": "motion.safetensors", "weight": 0.7}]}
    ok, _, mp4 = _generate(server, **good)
    assert ok == 200, mp4[:300]
    frames = decoded(mp4, tmp_path / "again.mp4")
    assert np.array_equal(frames, _AFTER_BAD.setdefault("frames", frames))


def test_token_routes_and_resolved_loras(server):
    assert _call(server, "/healthz", token=None)[0] == 200  # open, for load balancers
    status, headers, body = _call(server, "/v1/generate", {"prompt": "x"}, token=None)
    assert status == 401 and "bearer token" in json.loads(body)["error"] and headers["WWW-Authenticate"] == "Bearer"
    assert _call(server, "/v1/generate", {"prompt": "x"}, token="wrong")[0] == 401
    assert _call(server, "/v1/nothing-here")[0] == 404
    status, _, body = _call(server, "/v1/loras")
    listed = {e["source"].rsplit("/", 1)[-1]: e for e in json.loads(body)["loras"]}
    assert status == 200 and {"motion.safetensors", "motion_b.safetensors"} <= set(listed)
    assert len(listed["motion.safetensors"]["sha256"]) == 64 and listed["motion.safetensors"]["requests"] >= 1


def test_past_the_queue_is_503_naming_the_limit(server):
    # 2 replicas run one request each, 1 may wait (max_queued=1): of 6 at once some are refused
    results = []

    def one(i):
        results.append(_call(server, "/v1/generate", {"prompt": "a fox", "seed": 100 + i, "num_frames": 9, "steps": 4,
                                                      "size": "48x48"}))  # fmt: skip

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    codes = Counter(status for status, _, _ in results)
    assert codes[200] >= 2 and codes[503] >= 1 and set(codes) <= {200, 503}, codes
    refused = next(json.loads(body) for status, _, body in results if status == 503)
    assert "max_queued_requests=1" in refused["error"]
    assert next(h for s, h, _ in results if s == 503)["Retry-After"]


def _wait_for(server, job_id, limit_s=240):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status, _, body = _call(server, f"/v1/jobs/{job_id}")
        assert status == 200, body[:300]
        job = json.loads(body)
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {limit_s} s")


def test_async_jobs_complete_and_equal_the_synchronous_video(server, tmp_path):
    body = {**_BASE, "prompt": "a heron", "seed": 5, "lora": [{"model": "motion", "weight": 0.6}]}
    ids = []
    for seed in (5, 6):
        status, headers, reply = _call(server, "/v1/jobs", {**body, "seed": seed})
        assert status == 202, reply[:300]
        job = json.loads(reply)
        assert job["status"] in ("queued", "running") and headers["Location"] == job["url"] == f"/v1/jobs/{job['id']}"
        ids.append(job["id"])
    early, _, reply = _call(server, f"/v1/jobs/{ids[1]}/video")  # made at once, or not yet: never anything else
    assert early == 200 or (early == 409 and "not made yet" in json.loads(reply)["error"]), reply[:300]
    # a bad body is refused as /v1/generate refuses it, and never becomes a job
    status, _, reply = _call(server, "/v1/jobs", {"prompt": "x", "num_frames": -1})
    assert status == 400 and "num_frames" in json.loads(reply)["error"]
    status, _, reply = _call(server, "/v1/jobs")
    assert status == 200 and {j["id"] for j in json.loads(reply)["jobs"]} >= set(ids)

    frames = []
    for job_id, seed in zip(ids, (5, 6)):
        job = _wait_for(server, job_id)
        assert job["status"] == "done", job
        assert job["request"]["seed"] == seed and job["request"]["loras"][0]["weight"] == 0.6 and job["seconds"] >= 0
        status, headers, mp4 = _call(server, f"/v1/jobs/{job_id}/video")
        assert status == 200 and headers["Content-Type"] == "video/mp4" and headers["X-Vidlora-Lora-Set"]
        frames.append(decoded(mp4, tmp_path / f"job-{seed}.mp4"))
    status, _, mp4 = _generate(server, prompt="a heron", seed=5, lora=body["lora"])
    assert status == 200 and np.array_equal(decoded(mp4, tmp_path / "sync.mp4"), frames[0])
    assert not np.array_equal(frames[0], frames[1])  # the other seed is another video

    status, _, reply = _call(server, f"/v1/jobs/{ids[0]}", method="DELETE")
    assert status == 200 and json.loads(reply)["deleted"] is True
    assert _call(server, f"/v1/jobs/{ids[0]}")[0] == 404
    assert _call(server, f"/v1/jobs/{ids[0]}/video")[0] == 404
    assert _call(server, "/v1/jobs/nope/video")[0] == 404
    assert _call(server, f"/v1/jobs/{ids[1]}/other")[0] == 404
    assert _call(server, f"/v1/jobs/{ids[1]}/video", method="DELETE")[0] == 405
    assert _call(server, "/v1/jobs", {"prompt": "x"}, token=None)[0] == 401
