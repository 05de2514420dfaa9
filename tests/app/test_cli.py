"""The command line on the embedded tiny models: generations decoded back from the MP4,
the demo, inspect, and one clear line + non-zero exit for every bad input."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from vidlora.app.cli import main
from vidlora.app.tiny import write_demo_assets
from vidlora.app.video import read_mp4_metadata


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_demo_assets(tmp_path_factory.mktemp("assets"))



def test_i2v_tiny_with_two_stacked_loras(tmp_path, assets, capsys):
    out = tmp_path / "clip.mp4"
    rc = main([
        "i2v", "--model", "tiny", "--image", str(assets["image"]), "--prompt", "a ball, bouncing",
        "--lora", f"{assets['motion']}:0.8", "--lora", f"{assets['style']}:1.0,0.5",
        "--frames", "5", "--steps", "2", "--size", "32x32", "--fps", "12", "--out", str(out),
    ])
    err = capsys.readouterr().err
    assert rc == 0, err
    frames = iio.imread(out)
    assert frames.shape == (5, 32, 32, 3)
    assert iio.immeta(out)["fps"] == pytest.approx(12)
    meta = read_mp4_metadata(out)
    assert meta["prompt"].startswith("a ball, bouncing")
    assert [(l["name"], l["weight"]) for l in meta["loras"]] == [("motion", 0.8), ("style", [1.0, 0.5])]
    assert all(len(l["sha256"]) == 64 for l in meta["loras"])
    assert json.loads(out.with_name(out.name + ".json").read_text())["seed"] == 0
    assert "watercolor" in err  # the style LoRA's trigger word is named (missing from the prompt)
    assert "wrote" in err


def test_t2v_on_a_folder_saved_by_diffusers(tmp_path, capsys):
    from vidlora.app.tiny import build_tiny_pipeline

    folder = tmp_path / "my-wan"
    build_tiny_pipeline("wan-t2v").save_pretrained(folder)
    out = tmp_path / "t2v.mp4"
    rc = main(["t2v", "--model", str(folder), "--prompt", "a fox", "--frames", "6", "--steps", "2",
               "--size", "40x30", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "frames 6 -> 5" in err and "40x30 -> 32x32" in err  # rounded, and said so
    assert iio.imread(out).shape == (5, 32, 32, 3)
    assert iio.immeta(out)["fps"] == pytest.approx(16)  # Wan's default


def test_hunyuan_t2v_tiny(tmp_path, capsys):
    out = tmp_path / "hy.mp4"
    rc = main(["t2v", "--model", "tiny:hunyuan-t2v", "--prompt", "a cat", "--frames", "5", "--steps", "2",
               "--size", "32x32", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert iio.imread(out).shape[0] == 5
    assert iio.immeta(out)["fps"] == pytest.approx(24)  # HunyuanVideo's default


def test_demo(tmp_path, capsys):
    from vidlora.app.cli.demo import COLUMNS, COMPARE_GAP

    out = tmp_path / "demo.mp4"
    assert main(["demo", "--out", str(out)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    meta = read_mp4_metadata(out)
    assert [l["name"] for l in meta["loras"]] == ["motion", "style"]
    assert meta["fp8"]
    video = iio.imread(out).astype(np.float32)
    assert video.ndim == 4

    # demo-compare.mp4: no LoRA | motion | motion + style; the differences the demo measured
    # on the frames (metadata, printed) hold in the decoded video, and demo.mp4 (encoded
    # apart, at another quality) is recognisably its last column
    compare = iio.imread(tmp_path / "demo-compare.mp4").astype(np.float32)
    f, h, w, _ = video.shape
    assert compare.shape == (f, 2 * h + COMPARE_GAP, 3 * w + 2 * COMPARE_GAP, 3)
    cols = [compare[:, :h, i * (w + COMPARE_GAP): i * (w + COMPARE_GAP) + w] for i in range(3)]
    recorded = read_mp4_metadata(tmp_path / "demo-compare.mp4")
    assert recorded["columns"] == list(COLUMNS)
    for i in range(3):
        for j in range(i):
            key = f"{COLUMNS[i]} vs {COLUMNS[j]}"
            measured, decoded = recorded["mean_abs_difference_0_255"][key], np.abs(cols[i] - cols[j]).mean()
            assert measured > 1.0 and 0.5 * measured < decoded < 1.5 * measured, (key, measured, decoded)
            assert key in err  # printed for the user
    to_demo = [np.abs(c - video).mean() for c in cols]
    assert to_demo[2] < min(to_demo[:2]), to_demo
    # the difference row: black under the no-LoRA column, not under the others
    below = [compare[:, h + COMPARE_GAP:, i * (w + COMPARE_GAP): i * (w + COMPARE_GAP) + w].mean() for i in range(3)]
    assert below[0] < 4 and below[1] > 10 and below[2] > 10, below
    assert main(["demo", "--out", str(out)]) == 2  # both files exist: refused without --overwrite
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,words",
    [
        (["i2v", "--model", "tiny", "--image", "{missing}", "--prompt", "x"], ["image", "does not exist"]),
        (["i2v", "--model", "tiny", "--image", "{notimage}", "--prompt", "x"], ["cannot be read"]),
        (["t2v", "--model", "tiny", "--prompt", "x", "--lora", "motion.safetensors:abc,1"], ["strength"]),
        (["t2v", "--model", "tiny", "--prompt", "x", "--lora", "/nope/x.safetensors"], ["/nope/x.safetensors"]),
        (["t2v", "--model", "./no-such-model-dir", "--prompt", "x"], ["no-such-model-dir", "--model tiny"]),
        (["t2v", "--model", "tiny", "--prompt", "x", "--out", "{exists}"], ["exists", "--overwrite"]),
        (["t2v", "--model", "tiny", "--prompt", "x", "--out", "{nofolder}"], ["does not exist"]),
        (["t2v", "--model", "tiny", "--prompt", "x", "--size", "12"], ["--size", "WIDTHxHEIGHT"]),
        (["t2v", "--model", "tiny", "--prompt", "x", "--frames", "-3"], ["positive integer"]),
        (["t2v", "--model", "tiny", "--prompt", "x", "--lora-low", "{motion}"], ["Wan 2.2 A14B"]),
        (["t2v", "--model", "tiny", "--prompt", "x", "--lora", "{hunyuan_lora}"], ["Wan", "HunyuanVideo"]),
        (["i2v", "--model", "tiny", "--image", "{image}", "--prompt", "x", "--lora", "{pickle}"], ["pickle"]),
    ],
)
def test_bad_inputs_are_one_line_and_exit_2(tmp_path, assets, capsys, argv, words):
    (tmp_path / "exists.mp4").write_bytes(b"x")
    (tmp_path / "notimage.png").write_text("not a png")
    (tmp_path / "weights.ckpt").write_bytes(b"\x80\x04K\x01.")
    hy = tmp_path / "hy.safetensors"
    from safetensors.torch import save_file

    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.randn(2, 3072),
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.randn(3072, 2)}, hy)
    subs = {
        "{missing}": str(tmp_path / "missing.png"), "{notimage}": str(tmp_path / "notimage.png"),
        "{exists}": str(tmp_path / "exists.mp4"), "{nofolder}": str(tmp_path / "no" / "dir" / "x.mp4"),
        "{motion}": str(assets["motion"]), "{hunyuan_lora}": str(hy), "{image}": str(assets["image"]),
        "{pickle}": str(tmp_path / "weights.ckpt"),
    }
    argv = [subs.get(a, a) for a in argv]
    rc = main(argv + (["--out", str(tmp_path / "o.mp4")] if "--out" not in argv else []))
    err = capsys.readouterr().err
    assert rc == 2
    lines = [l for l in err.splitlines() if l.startswith("vidlora: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])


def test_no_gpu_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    rc = main(["t2v", "--model", "tiny", "--prompt", "x", "--device", "cuda", "--out", str(tmp_path / "o.mp4")])
    assert rc == 2 and "no CUDA GPU" in capsys.readouterr().err


def test_inspect_json_and_model_check(tmp_path, assets, capsys):
    from vidlora.app.tiny import tiny_pipeline_dir

    assert main(["inspect", str(assets["motion"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scheme"].startswith("W3") and report["rank"] == 8 and report["alpha"] == 4.0
    assert report["trigger_words"] == ["bouncing"]
    folder = tiny_pipeline_dir("wan-t2v")
    assert main(["inspect", str(assets["motion"]), "--model", str(folder)]) == 0
    assert "fits" in capsys.readouterr().out
    hy = tmp_path / "hy.safetensors"
    from safetensors.torch import save_file

    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.randn(2, 20),
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.randn(20, 2)}, hy)
    assert main(["inspect", str(hy), "--model", str(folder), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["compatibility"]["ok"] is False


def test_cuda_out_of_memory_is_one_line_with_advice(tmp_path, capsys, monkeypatch):
    import vidlora.app.pipelines as pipelines

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(pipelines, "generate", oom)
    rc = main(["t2v", "--model", "tiny", "--prompt", "x", "--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    line = [l for l in err.splitlines() if l.startswith("vidlora: error")][0]
    assert "out of memory" in line and "--fp8" in line and "--offload" in line and "--frames" in line
    assert not (tmp_path / "o.mp4").exists()


def test_wan22_expert_loras_from_the_command_line(tmp_path, assets, capsys):
    out = tmp_path / "a14b.mp4"
    rc = main(["t2v", "--model", "tiny:wan2.2-t2v-a14b", "--prompt", "a ball, bouncing", "--frames", "5",
               "--steps", "2", "--size", "32x32", "--guidance-2", "3.0",
               "--lora-high", f"{assets['motion']}:0.7", "--lora-low", str(assets["motion"]), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    meta = read_mp4_metadata(out)
    assert [(l["name"], l["expert"], l["weight"]) for l in meta["loras"]] == [("motion", "high", 0.7), ("motion_2", "low", 1.0)]
    assert meta["guidance_2"] == 3.0
    assert "expert=high" in err and "expert=low" in err


def test_inspect_against_the_tiny_model_and_strength_typos(tmp_path, assets, capsys):
    assert main(["inspect", str(assets["style"]), "--model", "tiny", "--json"]) == 0  # i2v LoRA -> tiny I2V
    assert json.loads(capsys.readouterr().out)["compatibility"]["ok"] is True
    assert main(["inspect", str(assets["motion"]), "--model", "tiny:hunyuan-t2v", "--json"]) == 1
    capsys.readouterr()
    rc = main(["t2v", "--model", "tiny", "--prompt", "x", "--lora", f"{assets['motion']}:abc",
               "--out", str(tmp_path / "o.mp4")])
    assert rc == 2 and "'abc' is not a strength" in capsys.readouterr().err


def test_demo_assets_are_reproducible(tmp_path):
    import hashlib

    a, b = write_demo_assets(tmp_path / "a"), write_demo_assets(tmp_path / "b")
    for key in ("motion", "style"):
        assert hashlib.sha256(a[key].read_bytes()).digest() == hashlib.sha256(b[key].read_bytes()).digest()
