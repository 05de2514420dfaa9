"""Sweep plans, job names and the dispatcher, without Ray or torch: grids expand as the
README says, strengths multiply, bad plans are one line naming the setting, job names
follow the settings and the LoRA files' contents, and the dispatcher keeps swaps rare."""

from __future__ import annotations

import json

import pytest

from vidlora.app.sweep import Dispatcher, load_plan, parse_plan
from vidlora.app.sweep.jobs import job_file_name
from vidlora.errors import VidloraError


def test_a_grid_expands_set_strength_prompt_seed(tmp_path):
    (tmp_path / "motion.safetensors").write_bytes(b"x")
    plan = parse_plan({
        "model": "tiny", "prompts": ["a", "b"], "seeds": [1, 2, 3], "strengths": [0.5, 2.0], "steps": 4,
        "loras": [[], [{"model": "motion.safetensors", "weight": 0.8}, "style.safetensors:1.0,0.5"]],
    }, tmp_path / "plan.yaml")  # fmt: skip
    # no LoRA x strengths is one row, not two identical ones
    assert len(plan.jobs) == 6 + 2 * 6
    assert [(j.prompt, j.seed) for j in plan.jobs[:6]] == [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3)]
    first = plan.jobs[6].loras
    assert first[0].source == str((tmp_path / "motion.safetensors").resolve())  # beside the plan
    assert first[1].source == "style.safetensors"  # not there: kept as written (cwd, or the Hub)
    assert (first[0].weight, first[1].weight) == (0.4, (0.5, 0.25))
    assert plan.jobs[-1].loras[0].weight == 1.6 and all(j.steps == 4 for j in plan.jobs)
    assert plan.jobs[6].lora_set == plan.jobs[-1].lora_set  # strengths never change the set


def test_jobs_lists_take_the_top_level_as_defaults(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"model": "tiny", "steps": 3, "num_frames": 9, "size": "64x32", "jobs": [
        {"prompt": "x", "seed": 4, "loras": [{"model": "a.safetensors", "weight": [1, 0.5]}]},
        {"prompt": "y", "steps": 5, "frames": 5},
        {"prompt": "x", "seed": 4, "loras": [{"model": "a.safetensors", "weight": [1, 0.5]}]},  # a duplicate
    ]}))  # fmt: skip
    plan = load_plan(path)
    assert len(plan.jobs) == 2 and plan.duplicates == 1
    assert (plan.jobs[0].steps, plan.jobs[0].frames, plan.jobs[0].size) == (3, 9, (64, 32))
    assert (plan.jobs[1].steps, plan.jobs[1].frames) == (5, 5)
    assert plan.jobs[0].loras[0].weight_value == [1.0, 0.5]


@pytest.mark.parametrize("data, words", [
    ({"prompts": ["a"], "sedes": [1]}, ["unknown setting 'sedes'", "did you mean seeds"]),
    ({"prompts": ["a"], "jobs": [{"prompt": "b"}]}, ["either a grid", "or a jobs list"]),
    ({"jobs": [{"prompt": "b", "model": "tiny"}]}, ["jobs[0].model", "once per sweep"]),
    ({"prompts": []}, ["prompts must be a non-empty list"]),
    ({"prompts": ["a"], "seeds": ["x"]}, ["seed", "whole number"]),
    ({"prompts": ["a"], "size": "32"}, ["size", "WIDTHxHEIGHT"]),
    ({"prompts": ["a"], "loras": [{"model": "x"}]}, ["loras[0] must be a list"]),
    ({"prompts": ["a"], "loras": [[{"model": "x", "weight": "hi"}]]}, ["loras[0][0].weight", "finite number"]),
    ({"prompts": ["a"], "loras": [[{"weight": 1}]]}, ["loras[0][0].model"]),
    ({"prompts": ["a"], "strengths": ["x"]}, ["strengths[0]"]),
    ({"prompts": ["a"], "task": "v2v"}, ["task must be one of t2v, i2v"]),
    ({"jobs": [{"prompt": "a", "frames": 5, "num_frames": 9}]}, ["frames and num_frames differ"]),
    ([1, 2], ["mapping of settings"]),
])  # fmt: skip
def test_bad_plans_are_one_line_naming_the_setting(data, words):
    with pytest.raises(VidloraError) as info:
        parse_plan(data, "plan.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("plan.yaml")
    for w in words:
        assert w in message, (w, message)


def test_plan_files_are_read_by_suffix(tmp_path):
    (tmp_path / "p.yml").write_text("prompts: [a]\nseeds: [0, 1]\n")
    assert len(load_plan(tmp_path / "p.yml").jobs) == 2
    (tmp_path / "p.yaml").write_text("prompts: [a\n")
    with pytest.raises(VidloraError, match="not valid YAML"):
        load_plan(tmp_path / "p.yaml")
    (tmp_path / "p.txt").write_text("{}")
    with pytest.raises(VidloraError, match="must end in .json, .yaml or .yml"):
        load_plan(tmp_path / "p.txt")
    with pytest.raises(VidloraError, match="does not exist"):
        load_plan(tmp_path / "nope.json")


def test_job_names_follow_settings_and_lora_contents():
    plan = parse_plan({"prompts": ["A Paper Boat, in the rain!"], "seeds": [3], "loras": [[{"model": "m.safetensors"}]]})
    job = plan.jobs[0]
    name = job_file_name(plan, job, ("aa" * 32,), "tiny")
    assert name.startswith("a-paper-boat-in-the-s3-") and name.endswith(".mp4")
    assert name == job_file_name(plan, job, ("aa" * 32,), "tiny")
    assert name != job_file_name(plan, job, ("bb" * 32,), "tiny")  # the file changed: a new job
    other = parse_plan({"prompts": ["A Paper Boat, in the rain!"], "seeds": [3], "steps": 9,
                        "loras": [[{"model": "m.safetensors"}]]})  # fmt: skip
    assert name != job_file_name(other, other.jobs[0], ("aa" * 32,), "tiny")


def _swaps(jobs, workers):
    """Hand jobs out to free workers in turn; count how often a worker changes set."""
    d = Dispatcher(jobs)
    sets = dict(jobs)
    held, swaps, order = {}, 0, []
    busy = list(range(workers))
    while True:
        progressed = False
        for w in busy:
            job = d.next_for(w)
            if job is None:
                continue
            progressed = True
            if held.get(w) != sets[job]:
                swaps += 1
                held[w] = sets[job]
            order.append((w, job))
        if not progressed:
            return swaps, order


def test_the_dispatcher_keeps_swaps_rare():
    jobs = [(f"{s}{i}", s) for i in range(4) for s in "abc"]  # interleaved in plan order
    swaps, order = _swaps(jobs, workers=2)
    assert len(order) == 12 and len({j for _, j in order}) == 12
    assert swaps <= 4  # 3 sets on 2 workers: max(3, 2) plus one shared set, never one per job
    one_set = [(f"a{i}", "a") for i in range(10)]
    swaps, order = _swaps(one_set, workers=3)
    assert swaps == 3 and {w for w, _ in order} == {0, 1, 2}  # a big set is shared: nobody idles
