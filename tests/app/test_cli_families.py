"""The command line on the derived families' embedded tiny pipelines: SkyReels V2 (T2V and
Diffusion Forcing), HunyuanVideo 1.5 (T2V, I2V), FramePack (I2V, with an end frame), Wan
VACE (t2v with references, i2v, v2v with a mask; the two experts of Wan2.2-VACE-Fun-A14B),
Wan V2V and Wan FLF2V (``--last-image``); each run writes a valid MP4 with its settings
embedded. ``--model`` detection from model_index.json; Wan Animate from Python."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

import vidlora
from vidlora.app.cli import main
from vidlora.app.pipelines import model_info
from vidlora.app.tiny import tiny_pipeline_dir, tiny_transformer
from vidlora.app.video import read_mp4_metadata, write_mp4

from helpers.writers import random_truth, write_lora


def _image(path, seed=0, size=48):
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(path)
    return str(path)


def _lora(tmp_path, kind: str, scheme: str, name: str) -> str:
    model = tiny_transformer(kind)
    prefixes = ("blocks.", "transformer_blocks.", "vace_blocks.", "single_transformer_blocks.")
    paths = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n.startswith(prefixes)]
    truth = random_truth(model, seed=hash(name) % 1000, paths=paths, rank=2, alpha=2.0)
    return write_lora(tmp_path / f"{name}.safetensors", truth, scheme)


def _run(tmp_path, capsys, argv, frames=5, size=(32, 32)):
    out = tmp_path / "out.mp4"
    rc = main([*argv, "--frames", str(frames), "--steps", "2", "--size", f"{size[0]}x{size[1]}", "--out", str(out),
               "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    video = iio.imread(out)
    return video, read_mp4_metadata(out), err


# (command, tiny kind, LoRA transformer kind + scheme, extra arguments, expected family words)
CASES = [
    ("t2v", "skyreels-v2-t2v", ("skyreels-v2", "W3"), [], "SkyReels V2"),
    ("t2v", "skyreels-v2-df", ("skyreels-v2-df", "W2"), [], "SkyReels V2 DF"),
    ("t2v", "hunyuan1.5-t2v", ("hunyuan1.5-t2v", "HV15-musubi"), [], "HunyuanVideo 1.5"),
    ("i2v", "hunyuan1.5-i2v", ("hunyuan1.5-i2v", "HV15-tencent"), ["--image", "IMG"], "HunyuanVideo 1.5"),
    ("i2v", "framepack", ("framepack", "FP-musubi"), ["--image", "IMG", "--last-image", "IMG2"], "FramePack"),
    ("t2v", "wan-vace", ("wan-vace", "W4"), ["--reference-image", "IMG"], "Wan VACE"),
    ("i2v", "wan-vace", ("wan-vace", "W1"), ["--image", "IMG"], "Wan VACE"),
]


@pytest.mark.parametrize("command,kind,lora,extra,family", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_each_family_writes_an_mp4_with_its_settings(tmp_path, capsys, command, kind, lora, extra, family):
    images = {"IMG": _image(tmp_path / "a.png"), "IMG2": _image(tmp_path / "b.png", seed=1)}
    path = _lora(tmp_path, *lora, name=f"{kind}-lora")
    argv = [command, "--model", f"tiny:{kind}", "--prompt", "a fox running", "--lora", f"{path}:0.7",
            *[images.get(a, a) for a in extra]]  # fmt: skip
    video, meta, err = _run(tmp_path, capsys, argv)
    assert video.shape[0] == 5 and video.shape[3] == 3 and video.std() > 1
    assert meta["task"] == command and meta["model"] == f"tiny:{kind}" and meta["prompt"].startswith("a fox")
    assert [(l["name"], l["weight"]) for l in meta["loras"]] == [(f"{kind}-lora", 0.7)]
    for flag, key in (("--last-image", "last_image"), ("--reference-image", "reference_images"), ("--image", "image")):
        if flag in extra:
            assert key in meta
    assert family in err  # "loading <family> ..."


def test_flf2v_last_image(tmp_path, capsys):
    """Wan 2.1 FLF2V: an I2V pipeline whose image embedder has positions for two frames'
    CLIP tokens (pos_embed_seq_len); the I2V models refuse --last-image by name."""
    from diffusers import WanImageToVideoPipeline

    from vidlora.app.tiny import build_tiny_pipeline
    from vidlora.app.tiny.models import randomized
    from vidlora.app.tiny.configs import TINY_TRANSFORMER_CONFIGS

    i2v = build_tiny_pipeline("wan-i2v")
    tokens = 2 * 17  # the tiny CLIP tower: 4 x 4 patches + the class token, per frame
    flf = randomized(type(i2v.transformer), dict(TINY_TRANSFORMER_CONFIGS["wan-i2v"], pos_embed_seq_len=tokens), 0)
    folder = tmp_path / "flf2v"
    WanImageToVideoPipeline(**{**i2v.components, "transformer": flf}).save_pretrained(folder)
    first, last = _image(tmp_path / "a.png"), _image(tmp_path / "b.png", seed=1)
    lora = _lora(tmp_path, "wan-i2v", "W2", "flf-lora")
    video, meta, err = _run(tmp_path, capsys, ["i2v", "--model", str(folder), "--image", first, "--last-image", last,
                                               "--prompt", "a fox", "--lora", lora])  # fmt: skip
    assert video.shape[0] == 5 and meta["last_image"] == last
    rc = main(["i2v", "--model", "tiny", "--image", first, "--last-image", last, "--prompt", "x",
               "--out", str(tmp_path / "no.mp4")])  # fmt: skip
    assert rc == 2 and "--last-image needs a first-last-frame model" in capsys.readouterr().err


def _write_video(path, frames=9, size=32):
    rng = np.random.default_rng(3)
    return str(write_mp4((rng.random((frames, size, size, 3))).astype(np.float32), path, fps=8))


def test_v2v_on_wan_and_vace_with_a_mask(tmp_path, capsys):
    clip = _write_video(tmp_path / "in.mp4")
    lora = _lora(tmp_path, "wan-t2v", "W3", "wan-lora")
    video, meta, err = _run(tmp_path, capsys, ["v2v", "--model", "tiny", "--video", clip, "--strength", "0.6",
                                               "--prompt", "a fox", "--lora", lora], frames=9)  # fmt: skip
    assert video.shape[:2] == (9, 32) and meta["task"] == "v2v" and meta["strength"] == 0.6 and meta["input_video"] == clip
    (tmp_path / "out.mp4").unlink()
    mask = _image(tmp_path / "mask.png")
    video, meta, err = _run(tmp_path, capsys, ["v2v", "--model", "tiny:wan-vace", "--video", clip, "--mask", mask,
                                               "--prompt", "a fox"], frames=9)  # fmt: skip
    assert video.shape[0] == 9 and meta["mask"] == mask and "Wan VACE" in err


def test_vace_fun_a14b_expert_loras(tmp_path, capsys):
    high, low = _lora(tmp_path, "wan-vace", "W4", "hi"), _lora(tmp_path, "wan-vace", "W2", "lo")
    video, meta, err = _run(tmp_path, capsys, ["t2v", "--model", "tiny:wan-vace-a14b", "--prompt", "a fox",
                                               "--lora-high", high, "--lora-low", f"{low}:0.5", "--guidance-2", "3"])
    assert [(l["name"], l["expert"]) for l in meta["loras"]] == [("hi", "high"), ("lo", "low")]
    assert "two experts" in err


@pytest.mark.parametrize("argv,words", [
    (["v2v", "--model", "tiny:skyreels-v2-t2v", "--video", "CLIP", "--prompt", "x"], "SkyReels V2 .*t2v|text-to-video"),
    (["t2v", "--model", "tiny:skyreels-v2-t2v", "--reference-image", "IMG", "--prompt", "x"], "--reference-image"),
    (["v2v", "--model", "tiny", "--video", "CLIP", "--mask", "IMG", "--prompt", "x"], "--mask"),
    (["t2v", "--model", "tiny:wan-animate", "--prompt", "x"], "Wan 2.2 Animate .*Python"),
    (["t2v", "--model", "tiny:framepack", "--prompt", "x"], "FramePack I2V .*needs a text-to-video model"),
])  # fmt: skip
def test_inputs_a_pipeline_does_not_take_are_one_line(tmp_path, capsys, argv, words):
    subs = {"IMG": _image(tmp_path / "a.png"), "CLIP": _write_video(tmp_path / "c.mp4")}
    rc = main([*[subs.get(a, a) for a in argv], "--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    errors = [line for line in err.strip().splitlines() if line.startswith("vidlora: error")]
    assert rc == 2 and len(errors) == 1 and err.strip().endswith(errors[0]), err  # one line, no traceback
    import re

    assert re.search(words, errors[0]), err


@pytest.mark.parametrize("kind,task,cls,label", [
    ("wan-vace", "v2v", "WanVACEPipeline", "Wan VACE"),
    ("wan-vace-a14b", "t2v", "WanVACEPipeline", "Wan VACE A14B (two experts)"),
    ("skyreels-v2-t2v", "t2v", "SkyReelsV2Pipeline", "SkyReels V2"),
    ("skyreels-v2-df", "t2v", "SkyReelsV2DiffusionForcingPipeline", "SkyReels V2 DF"),
    ("framepack", "i2v", "HunyuanVideoFramepackPipeline", "FramePack"),
    ("hunyuan1.5-t2v", "t2v", "HunyuanVideo15Pipeline", "HunyuanVideo 1.5"),
    ("hunyuan1.5-i2v", "i2v", "HunyuanVideo15ImageToVideoPipeline", "HunyuanVideo 1.5"),
    ("wan-t2v", "v2v", "WanVideoToVideoPipeline", "Wan 2.1"),
    ("wan-animate", "animate", "WanAnimatePipeline", "Wan 2.2 Animate"),
])  # fmt: skip
def test_model_detection_from_model_index(kind, task, cls, label):
    """A saved folder given as a path, its model_index.json naming the pipeline class."""
    import shutil, tempfile  # noqa: E401

    folder = tiny_pipeline_dir(kind)
    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copytree(folder, f"{tmp}/model", ignore=shutil.ignore_patterns("vidlora_tiny.json"))
        info = model_info(copy, task)
    assert info.pipeline_class == cls and info.family.startswith(label) and not info.is_tiny
    assert task in info.tasks


def test_wan_animate_from_python(tmp_path):
    """The README example of Wan 2.2 Animate, on the tiny pipeline: attach, a Wan 2.1 I2V-style
    LoRA (bare PEFT names, as the relighting LoRA), one generation from pose and face videos."""
    pipe = vidlora.tiny_pipeline("wan-animate")
    h = vidlora.attach(pipe)
    folder = tmp_path / "relight"
    folder.mkdir()
    model = tiny_transformer("wan-animate")
    paths = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n.startswith("blocks.")]
    truth = random_truth(model, seed=5, paths=paths, rank=2, alpha=2.0)
    h.add(write_lora(folder / "adapter_model.safetensors", truth, "W-peft"), name="relight", weight=0.8)
    frames = 5
    image = Image.new("RGB", (32, 32), (90, 120, 150))
    out = pipe(image=image, pose_video=[Image.new("RGB", (32, 32))] * frames, face_video=[image] * frames,
               prompt="a person dancing", height=32, width=32, segment_frame_length=frames, num_inference_steps=2,
               generator=torch.Generator().manual_seed(0), output_type="np").frames[0]  # fmt: skip
    assert out.shape == (frames, 32, 32, 3)
    h.detach()


@pytest.mark.parametrize("kind,lora", [("framepack", ("framepack", "FP-musubi")), ("hunyuan1.5-i2v", ("hunyuan1.5-i2v", "HV15-musubi")),
                                       ("wan-animate", ("wan-animate", "W-peft-meta")), ("wan-vace", ("wan-vace", "W3"))])
def test_inspect_against_each_tiny_family(tmp_path, capsys, kind, lora):
    import json

    path = _lora(tmp_path, *lora, name="x")
    assert main(["inspect", path, "--model", f"tiny:{kind}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compatibility"]["ok"] and report["compatibility"]["skipped"] == []


def test_framepack_schedule_restarts_per_section_on_the_pipeline():
    """The real (tiny) FramePack pipeline, 3 sections of 2 steps: the strength in force at
    each transformer call follows the step index within its section."""
    pipe = vidlora.tiny_pipeline("framepack")
    h = vidlora.attach(pipe)
    model = tiny_transformer("framepack")
    paths = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n.startswith("transformer_blocks.")]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = write_lora(f"{tmp}/fp.safetensors", random_truth(model, seed=6, paths=paths), "H5")
        h.add(path, name="fp", weight=[0.25, 1.0])
    seen = []
    pipe.transformer.register_forward_pre_hook(lambda *a: seen.append(h.current_weight("fp")))
    info = model_info("tiny:framepack", "i2v")
    pipe(image=Image.new("RGB", (32, 32), (50, 90, 130)), prompt="a fox", height=32, width=32, num_frames=13,
         latent_window_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np",
         prompt_template=info.prompt_template)  # fmt: skip
    sections = len(seen) // 2
    assert sections >= 2 and seen == [0.25, 1.0] * sections
