"""What the CLI says while it works (issue 15, points 2-4 and 6): the adjustments it makes
are named, errors from inside a stage are one line (traceback behind --debug), limits
from the model's config are checked against what diffusers really takes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vidlora.app.cli import main
from vidlora.app.tiny import write_demo_assets
from vidlora.errors import VidloraError


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_demo_assets(tmp_path_factory.mktemp("assets"))


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("vidlora: error")]


def test_adjustments_are_named(tmp_path, assets, capsys):
    # an image of another aspect ratio, a schedule longer than the run, w8a8 and offload on a CPU
    Image.new("RGB", (100, 50), (200, 30, 30)).save(tmp_path / "wide.png")
    schedule = "1.0,0.9,0.8,0.7,0.6,0.5,0.4,0.3"
    rc = main(["i2v", "--model", "tiny", "--image", str(tmp_path / "wide.png"), "--prompt", "a ball, watercolor",
               "--lora", f"{assets['style']}:{schedule}", "--steps", "4", "--frames", "5", "--size", "32x32",
               "--fp8", "w8a8", "--offload", "model", "--quiet", "--out", str(tmp_path / "o.mp4")])
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert rc == 0, err
    assert "image 100x50 (aspect 2.00) differs from the video 32x32 (1.00): centre-cropped to 50x50" in err
    assert "cutting 50 px of width (25 left, 25 right)" in err
    # the values the warning names are those the runtime's schedule rule picks
    from vidlora.runtime.schedules import check_weight, weight_at

    spec = check_weight([float(v) for v in schedule.split(",")])
    used = ", ".join(f"{weight_at(spec, i, 4):g}" for i in range(4))
    assert f"a schedule of 8 strengths on 4 steps uses only 4 of them ({used}); give 4 values or pass --steps 8" in err
    assert "--fp8 w8a8 on the CPU" in err and "activations quantized per token" in err
    assert "--offload model on the CPU" in err and "ignored" in err


def test_fit_image_crops_the_centre():
    from vidlora.app.pipelines import fit_image

    img = Image.new("RGB", (100, 50), (255, 0, 0))
    img.paste((0, 0, 255), (25, 0, 75, 50))  # the middle 50 columns are blue
    cropped, note = fit_image(img, 64, 64)
    assert cropped.size == (50, 50) and np.array(cropped)[..., 2].min() == 255  # only the blue centre is left
    tall, note = fit_image(Image.new("RGB", (50, 100)), 64, 32)
    assert tall.size == (50, 25) and "cutting 75 px of height (37 top, 38 bottom)" in note
    same, note = fit_image(img, 128, 64)
    assert same is img and note is None


def test_an_error_inside_a_stage_is_one_line(tmp_path, capsys, monkeypatch):
    import vidlora.app.pipelines as pipelines

    def broken(*args, **kwargs):
        raise RuntimeError("shape '[1, 4, 1, -1]' is invalid for input of size 5\\n  deep inside diffusers")

    monkeypatch.setattr(pipelines, "generate", broken)
    argv = ["t2v", "--model", "tiny", "--prompt", "x", "--frames", "5", "--size", "32x32", "--quiet",
            "--out", str(tmp_path / "o.mp4")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = _error_lines(err)
    assert line.startswith("vidlora: error: while denoising: RuntimeError: shape '[1, 4, 1, -1]' is invalid")
    assert "--debug" in line and "VIDLORA_DEBUG=1" in line
    assert not (tmp_path / "o.mp4").exists()

    assert main(argv + ["--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "in broken" in err and len(_error_lines(err)) == 1
    monkeypatch.setenv("VIDLORA_DEBUG", "1")
    assert main(argv) == 1
    assert "Traceback" in capsys.readouterr().err


def test_rotary_limit_matches_what_diffusers_takes(tmp_path):
    """The rope_max_seq_len check refuses exactly the sizes diffusers' Wan cannot run."""
    from vidlora.app.pipelines import check_model_limits, generate, load_pipeline, model_info
    from vidlora.app.tiny import TINY_TRANSFORMER_CONFIGS, build_tiny_pipeline
    from vidlora.app.tiny.models import randomized

    from diffusers import WanTransformer3DModel

    pipe = build_tiny_pipeline("wan-t2v")
    pipe.transformer = randomized(WanTransformer3DModel, dict(TINY_TRANSFORMER_CONFIGS["wan-t2v"], rope_max_seq_len=4), 0)
    pipe.save_pretrained(tmp_path / "short-rope")
    info = model_info(tmp_path / "short-rope", "t2v")
    assert info.rope_max_seq_len == 4
    check_model_limits(info, 13, 64, 64)  # 4 x 4 x 4 positions: the largest grid it has
    for frames, width in ((17, 64), (13, 80)):
        with pytest.raises(VidloraError, match="rope_max_seq_len 4 per axis: at most 13 frames and 64x64 pixels"):
            check_model_limits(info, frames, width, 64)
    pipe, info = load_pipeline(tmp_path / "short-rope", "t2v")
    kwargs = dict(prompt="x", frames=13, width=64, height=64, steps=1, guidance=1.0, progress=False)
    assert generate(pipe, info, **kwargs).shape == (13, 64, 64, 3)
    with pytest.raises(RuntimeError):  # past the limit diffusers itself fails (what the check spares users)
        pipe(prompt="x", num_frames=13, width=80, height=64, num_inference_steps=1, output_type="np")


def test_flow_shift_must_be_positive_in_python_too():
    from vidlora.app.pipelines import model_info
    from vidlora.app.pipelines.checks import check_generation_args

    info = model_info("tiny", "t2v")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(VidloraError, match="flow shift must be a positive number.*ships with 3"):
            check_generation_args(info, "x", None, 5, 32, 32, 2, None, bad)


def test_a_reader_warning_names_the_lora_once(tmp_path, assets, capsys):
    # the style LoRA carries image cross-attention: on the T2V model those keys are
    # skipped and the reader warns that it looks made for I2V
    rc = main(["t2v", "--model", "tiny", "--prompt", "x, watercolor", "--lora", str(assets["style"]), "--frames", "5",
               "--size", "32x32", "--steps", "1", "--quiet", "--out", str(tmp_path / "o.mp4")])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 0, err
    assert "warning: style: the LoRA looks made for task i2v" in err
    assert "style: style:" not in err


@pytest.mark.parametrize("task,default,other", [
    ("t2v", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "I2V-14B"),
    ("i2v", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "T2V-1.3B"),
])
def test_help_names_each_commands_own_default_model(capsys, task, default, other):
    assert main([task, "--help"]) == 0
    text = "".join(capsys.readouterr().out.split())  # argparse wraps (and may hyphen-split) the id
    assert f"(default:{default})" in text and other not in text
