"""The ingress's job store (vidlora/app/serve/jobs.py) with a model call we control: no
Ray here (test_serve.py runs jobs through a real server). Each case drives the asyncio
loop itself."""

from __future__ import annotations

import asyncio

import pytest

from vidlora.app.serve import jobs as jobs_mod
from vidlora.app.serve.jobs import JobStore
from vidlora.app.serve.request import RequestError


def _payload(seed):
    return {"set_id": "s", "image": b"png", "prompt": "a fox", "seed": seed,
            "loras": [{"source": "/l/motion.safetensors", "weight": 0.5, "sha256": "ab" * 32, "field": "lora[0]"}]}  # fmt: skip


class _Model:
    """Answers each call when the test releases it; can fail or be 'busy' (503) first."""

    def __init__(self, busy=0):
        self.calls, self.busy, self.gates = [], busy, {}

    async def __call__(self, payload, set_id):
        self.calls.append(payload["seed"])
        if self.busy:
            self.busy -= 1
            raise RequestError(503, "queue full")
        gate = self.gates.setdefault(payload["seed"], asyncio.Event())
        await gate.wait()
        if payload["seed"] < 0:
            raise RequestError(422, "lora[0].model: not a LoRA", "lora[0].model")
        return {"status": 200, "mp4": b"mp4-%d" % payload["seed"], "headers": {"X-Vidlora-Replica": "r1"}}


async def _until(cond, limit=5.0):
    for _ in range(int(limit / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_jobs_run_one_per_replica_and_finish_with_their_video():
    async def main():
        model = _Model()
        store = JobStore(model, max_jobs=8, concurrency=1)
        a, b = store.submit(_payload(1), "s"), store.submit(_payload(2), "s")
        await _until(lambda: a.status == "running")
        assert b.status == "queued" and model.calls == [1]  # one replica: one at a time
        assert "image" not in a.describe()["request"] and a.describe()["request"]["loras"][0]["weight"] == 0.5
        with pytest.raises(RequestError) as err:
            store.delete(a.id)
        assert err.value.status == 409 and "running" in err.value.message
        model.gates[1].set()
        await _until(lambda: a.status == "done" and b.status == "running")
        assert a.reply["mp4"] == b"mp4-1" and a.describe()["seconds"] >= 0
        model.gates[2].set()
        await _until(lambda: b.status == "done")
        assert [j["id"] for j in store.listing()] == [b.id, a.id]  # newest first
        store.delete(a.id)
        with pytest.raises(RequestError) as err:
            store.get(a.id)
        assert err.value.status == 404

    asyncio.run(main())


def test_a_failed_job_keeps_its_error_and_a_busy_queue_is_retried(monkeypatch):
    monkeypatch.setattr(jobs_mod, "RETRY_S", 0.2)  # long enough to see the job queued between tries

    async def main():
        model = _Model(busy=2)
        store = JobStore(model, max_jobs=8, concurrency=2)
        bad = store.submit(_payload(-1), "s")
        await _until(lambda: len(model.calls) == 1)
        assert bad.status == "queued"  # refused by a full queue: waiting again, not running
        await _until(lambda: len(model.calls) == 3)  # two 503s, then the real call
        assert bad.status == "running"
        model.gates[-1].set()
        await _until(lambda: bad.status == "failed")
        d = bad.describe()
        assert (d["http_status"], d["field"]) == (422, "lora[0].model") and "not a LoRA" in d["error"]

    asyncio.run(main())


def test_the_store_is_bounded_finished_jobs_make_room_and_queued_ones_cancel():
    async def main():
        model = _Model()
        store = JobStore(model, max_jobs=2, concurrency=1)
        a, b = store.submit(_payload(1), "s"), store.submit(_payload(2), "s")
        with pytest.raises(RequestError) as err:  # both queued or running: no room
            store.check_room()  # (what the ingress asks before reading a body)
        assert err.value.status == 503 and "--max-jobs 2" in err.value.message
        with pytest.raises(RequestError):
            store.submit(_payload(3), "s")
        await _until(lambda: a.status == "running")
        assert store.delete(b.id).status == "cancelled"  # queued: cancelled, never run
        model.gates[1].set()
        await _until(lambda: a.status == "done")
        c = store.submit(_payload(3), "s")
        d = store.submit(_payload(4), "s")  # the store is full: the finished one makes room
        assert {j["id"] for j in store.listing()} == {c.id, d.id}
        await _until(lambda: c.status == "running")
        assert 2 not in model.calls
        for seed in (3, 4):
            model.gates.setdefault(seed, asyncio.Event()).set()
        await _until(lambda: d.status == "done")

    asyncio.run(main())
