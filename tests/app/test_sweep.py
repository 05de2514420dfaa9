"""``vidlora sweep`` on a real local Ray cluster (started once for this module) over the
embedded tiny Wan T2V model: 12 jobs on 2 workers, a job decoded back equal to the same
``vidlora t2v`` run, a re-run that does nothing, and failing jobs recorded while the
others finish."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from helpers.scale import decoded, local_ray, ray_or_skip, scale_loras

ray_or_skip()

from vidlora.app.cli import main  # noqa: E402
from vidlora.app.sweep import CONTACT_SHEET, INDEX, MANIFEST, MANIFEST_KEYS, run_sweep  # noqa: E402
from vidlora.app.video import read_mp4_metadata  # noqa: E402

_SETTINGS = {"model": "tiny", "steps": 2, "frames": 5, "size": "32x32"}
_PROMPTS = ["a fox", "a paper boat"]
_SEEDS = [0, 1]
_STRENGTHS = [0.5, 1.0]


@pytest.fixture(scope="module")
def cluster():
    ray = local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    return scale_loras(tmp_path_factory.mktemp("loras"))


@pytest.fixture(scope="module")
def sweep12(cluster, loras, tmp_path_factory):
    """3 LoRA settings (none; motion at 0.8 x 0.5 and x 1.0) x 2 prompts x 2 seeds, the LoRA
    named relative to the plan's folder."""
    folder = loras["motion"].parent
    plan = folder / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        **_SETTINGS, "prompts": _PROMPTS, "seeds": _SEEDS, "strengths": _STRENGTHS,
        "loras": [[], [{"model": "motion.safetensors", "weight": 0.8}]],
    }))  # fmt: skip
    out = tmp_path_factory.mktemp("sweep") / "out"
    result = run_sweep(plan, out, workers=2, progress=False)
    return plan, out, result


def _lines(out):
    return [json.loads(ln) for ln in (out / MANIFEST).read_text().splitlines()]


def test_twelve_jobs_on_two_workers(sweep12, loras):
    _, out, result = sweep12
    assert (result.total, result.ran, result.failed, result.workers) == (12, 12, 0, 2), result
    # jobs go to workers by LoRA set: each worker loads the motion set at most once, and
    # the strength change between its jobs (0.4 -> 0.8) never swaps
    assert 1 <= result.swaps <= 2, result
    assert len(list(out.glob("*.mp4"))) == 12
    lines = _lines(out)
    assert len(lines) == 12 and all(tuple(ln) == MANIFEST_KEYS for ln in lines)
    assert all(ln["error"] is None and (out / ln["file"]).is_file() for ln in lines)
    assert {(ln["frames"], ln["size"], ln["steps"]) for ln in lines} == {(5, "32x32", 2)}
    sha = __import__("hashlib").sha256(loras["motion"].read_bytes()).hexdigest()
    weights = sorted(ln["loras"][0]["weight"] for ln in lines if ln["loras"])
    assert weights == [0.4] * 4 + [0.8] * 4
    assert all(ln["loras"][0]["sha256"] == sha for ln in lines if ln["loras"])
    assert len({ln["file"] for ln in lines}) == 12

    from PIL import Image

    sheet = Image.open(out / CONTACT_SHEET)
    from vidlora.app.sweep.report import HEADER_H, LABEL_W, THUMB_H

    assert sheet.height >= HEADER_H + 3 * THUMB_H and sheet.width >= LABEL_W + 4 * 3 * THUMB_H
    cell = np.asarray(sheet)[HEADER_H: HEADER_H + THUMB_H, LABEL_W: LABEL_W + THUMB_H]
    assert cell.std() > 1  # frames, not an empty grey cell
    page = (out / INDEX).read_text()
    assert page.count("<video ") == 12 and all(f'src="{ln["file"]}"' in page for ln in lines)


def test_a_job_has_the_frames_of_the_same_cli_run(sweep12, loras, tmp_path, capsys):
    _, out, _ = sweep12
    line = next(ln for ln in _lines(out) if ln["prompt"] == "a paper boat" and ln["seed"] == 1
                and ln["loras"] and ln["loras"][0]["weight"] == 0.4)  # fmt: skip
    cli = tmp_path / "cli.mp4"
    rc = main(["t2v", "--model", "tiny", "--prompt", "a paper boat", "--seed", "1", "--lora", f"{loras['motion']}:{0.8 * 0.5!r}",
               "--frames", "5", "--steps", "2", "--size", "32x32", "--out", str(cli), "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    ours, theirs = decoded(out / line["file"]), decoded(cli)
    assert ours.shape == (5, 32, 32, 3)
    assert np.array_equal(ours, theirs)
    # the comparison can fail: the same prompt and seed at strength 0.8 is another video
    other = next(ln for ln in _lines(out) if ln["prompt"] == "a paper boat" and ln["seed"] == 1
                 and ln["loras"] and ln["loras"][0]["weight"] == 0.8)  # fmt: skip
    assert not np.array_equal(decoded(out / other["file"]), theirs)
    # the settings are embedded as the CLI writes them
    meta, cli_meta = read_mp4_metadata(out / line["file"]), read_mp4_metadata(cli)
    for key in ("prompt", "seed", "steps", "frames", "size", "guidance", "model"):
        assert meta[key] == cli_meta[key], key
    assert [(l["weight"], l["sha256"]) for l in meta["loras"]] == [(l["weight"], l["sha256"]) for l in cli_meta["loras"]]


def test_a_rerun_does_nothing(sweep12):
    plan, out, _ = sweep12
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    manifest = (out / MANIFEST).read_text()
    result = run_sweep(plan, out, workers=2, progress=False)
    assert (result.ran, result.skipped, result.failed, result.workers) == (0, 12, 0, 0), result
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == before
    assert (out / MANIFEST).read_text() == manifest


def test_failing_jobs_are_recorded_and_the_others_finish(cluster, loras, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({**_SETTINGS, "jobs": [
        {"prompt": "a fox", "seed": 7, "loras": [{"model": str(loras["motion"]), "weight": 0.6}]},
        {"prompt": "a fox", "seed": 7, "loras": [{"model": str(loras["truncated"])}]},  # refused on the driver
        {"prompt": "a fox", "seed": 7, "loras": [str(loras["hunyuan"])]},  # another model: fails on the worker
        {"prompt": "a fox", "seed": 8},  # after the failure, on the same worker
    ]}))  # fmt: skip
    out = tmp_path / "out"
    rc = main(["sweep", str(plan), "--out", str(out), "--workers", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "2 of 4 jobs failed" in err
    lines = {ln["file"]: ln for ln in _lines(out)}
    assert len(lines) == 4
    failed = [ln for ln in lines.values() if ln["error"]]
    assert len(failed) == 2
    by_lora = {ln["loras"][0]["model"] if ln["loras"] else None: ln for ln in lines.values()}
    assert "truncated" in by_lora[str(loras["truncated"])]["error"]
    hunyuan = by_lora[str(loras["hunyuan"])]["error"]
    assert "HunyuanVideo" in hunyuan and "Wan" in hunyuan, hunyuan  # both sides named
    made = [ln for ln in lines.values() if ln["error"] is None]
    assert len(made) == 2 and all((out / ln["file"]).is_file() and ln["seconds"] > 0 for ln in made)
    assert len(list(out.glob("*.mp4"))) == 2
    assert (out / CONTACT_SHEET).is_file()
    page = (out / INDEX).read_text()
    assert page.count("<video ") == 2 and "HunyuanVideo" in page  # the failures are shown with their errors


def test_address_joins_a_running_cluster(sweep12, cluster, loras, tmp_path):
    """``--address`` from another process: the sweep joins this module's cluster as a
    second driver (its workers run there), and leaves the cluster running."""
    import subprocess
    import sys

    _, out12, _ = sweep12
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({**_SETTINGS, "jobs": [
        {"prompt": "a fox", "seed": 0, "loras": [{"model": str(loras["motion"]), "weight": 0.4}]}]}))  # fmt: skip
    out = tmp_path / "out"
    address = cluster.get_runtime_context().gcs_address
    proc = subprocess.run([sys.executable, "-m", "vidlora", "sweep", str(plan), "--out", str(out), "--address", address,
                           "--workers", "1", "--quiet"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = _lines(out)
    twin = next(ln for ln in _lines(out12) if ln["prompt"] == "a fox" and ln["seed"] == 0
                and ln["loras"] and ln["loras"][0]["weight"] == 0.4)  # fmt: skip
    assert np.array_equal(decoded(out / line["file"]), decoded(out12 / twin["file"]))
    assert cluster.is_initialized() and cluster.cluster_resources().get("CPU") == 2  # still up, for the others
