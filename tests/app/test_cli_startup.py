"""Every bad input that needs no model weights is refused before torch is imported.

One subprocess installs a meta-path blocker that makes torch, diffusers and transformers
unimportable, then runs ``vidlora.app.cli.main`` on each bad command line: each must print
exactly one ``vidlora: error`` line naming the problem and return 2. Cases that need the
model's configs use a folder holding only the JSON files of a release (no weights), so
they too stay torch-free. The last case runs ``python -m vidlora`` itself the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from helpers.paths import REPO_ROOT

_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "diffusers", "transformers", "triton"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, _Block())
    """
)

_RUNNER = _BLOCKER + textwrap.dedent(
    """
    import contextlib, io, json
    from vidlora.app.cli import main

    results = []
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(argv)
        results.append({"argv": argv, "rc": rc, "err": err.getvalue()})
    assert not any(m in sys.modules for m in ("torch", "diffusers", "transformers")), "a blocked module was imported"
    print(json.dumps(results))
    """
)

# A Wan 2.1 T2V config-only folder whose rotary table covers 16 positions per axis
# (832 px wide needs 832 / 8 / 2 = 52): the limit is named, not hit inside diffusers.
_INDEX = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"],
          "vae": ["diffusers", "AutoencoderKLWan"], "scheduler": ["diffusers", "UniPCMultistepScheduler"]}
_CONFIGS = {
    "transformer/config.json": {"_class_name": "WanTransformer3DModel", "num_attention_heads": 12, "attention_head_dim": 128,
                                "patch_size": [1, 2, 2], "rope_max_seq_len": 16, "in_channels": 16, "num_layers": 30},
    "vae/config.json": {"_class_name": "AutoencoderKLWan", "z_dim": 16},
    "scheduler/scheduler_config.json": {"_class_name": "UniPCMultistepScheduler", "flow_shift": 3.0, "use_flow_sigmas": True},
}

CASES = [  # (argv after the command, words the error line must hold)
    (["t2v", "--prompt", "x", "--lora", "{tmp}/nope.safetensors"], ["nope.safetensors", "not an existing file"]),
    (["t2v", "--prompt", "x", "--out", "{tmp}/exists.mp4"], ["exists", "--overwrite"]),
    (["t2v", "--prompt", "x", "--lora", "{tmp}/motion.safetensors:abc"], ["'abc' is not a strength"]),
    (["t2v", "--prompt", "x", "--lora", "{tmp}/motion.safetensors:1,nan"], ["not a finite number"]),
    (["t2v", "--prompt", "x", "--out", "{tmp}/o.gif"], ["must end in .mp4"]),
    (["t2v", "--prompt", "x", "--fps", "-3"], ["--fps", "> 0"]),
    (["t2v", "--prompt", "x", "--flow-shift", "0"], ["flow shift must be > 0"]),
    (["t2v", "--prompt", "x", "--flow-shift", "-2"], ["flow shift must be > 0"]),
    (["t2v", "--prompt", "x", "--guidance", "inf"], ["finite"]),
    (["t2v", "--prompt", "x", "--size", "832x"], ["--size", "WIDTHxHEIGHT"]),
    (["t2v", "--prompt", "x", "--size", "0x480"], ["--size"]),
    (["t2v", "--prompt", "x", "--frames", "0"], ["positive integer"]),
    (["t2v", "--prompt", "x", "--steps", "-1"], ["positive integer"]),
    (["t2v", "--prompt", "   "], ["--prompt is empty"]),
    (["t2v", "--prompt", "x", "--lora", "{tmp}/weights.ckpt"], ["pickle"]),
    (["t2v", "--prompt", "x", "--lora", "{tmp}/notsafe.safetensors"], ["not a safetensors file: it is an HTML page"]),
    (["i2v", "--prompt", "x", "--image", "{tmp}/missing.png"], ["image", "does not exist"]),
    (["i2v", "--prompt", "x", "--image", "{tmp}/notimage.png"], ["cannot be read"]),
    (["t2v", "--prompt", "x", "--model", "{tmp}/no-such-dir"], ["no-such-dir", "--model tiny"]),
    # needs the configs only: read from JSON, still no torch
    (["t2v", "--prompt", "x", "--model", "{tmp}/wan-config", "--frames", "5", "--size", "832x480"], ["height 480 and width 832", "rope_max_seq_len 16", "256x256 pixels"]),
    (["t2v", "--prompt", "x", "--model", "{tmp}/wan-config", "--frames", "81", "--size", "256x256"], ["frames 81:", "rope_max_seq_len 16", "at most 61 frames"]),
    (["t2v", "--prompt", "x", "--model", "{tmp}/wan-config", "--lora-low", "{tmp}/motion.safetensors"], ["Wan 2.2 A14B"]),
    (["t2v", "--prompt", "x", "--model", "{tmp}/wan-config", "--guidance-2", "3"], ["--guidance-2"]),
    (["i2v", "--prompt", "x", "--image", "{tmp}/in.png", "--model", "{tmp}/wan-config"], ["i2v", "image-to-video"]),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("startup")
    (tmp / "exists.mp4").write_bytes(b"x")
    (tmp / "weights.ckpt").write_bytes(b"\x80\x04K\x01.")
    (tmp / "notsafe.safetensors").write_text("<html>login</html>")
    (tmp / "notimage.png").write_text("not a png")
    # a valid, empty safetensors file: the spec parser sees an existing file before ':abc'
    (tmp / "motion.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp / "in.png")
    folder = tmp / "wan-config"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps(_INDEX))
    for rel, cfg in _CONFIGS.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(json.dumps(cfg))
    return tmp


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("VIDLORA_DEBUG", "TRITON_INTERPRET")}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_model_free_bad_inputs_fail_fast_without_torch(scratch):
    argvs = []
    for argv, _ in CASES:
        argv = [a.replace("{tmp}", str(scratch)) for a in argv]
        argvs.append(argv + ([] if "--out" in argv else ["--out", str(scratch / "o.mp4")]))
    proc = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(argvs)], capture_output=True, text=True,
                          env=_env(), timeout=120, cwd=scratch)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for (argv, words), r in zip(CASES, results):
        lines = [line for line in r["err"].splitlines() if line.startswith("vidlora: error")]
        assert r["rc"] == 2, (argv, r["err"])
        assert len(lines) == 1 and "Traceback" not in r["err"], (argv, r["err"])
        for w in words:
            assert w.lower() in lines[0].lower(), (argv, w, lines[0])


def test_python_m_vidlora_without_torch(scratch):
    script = _BLOCKER + "import runpy; runpy.run_module('vidlora', run_name='__main__')"
    argv = ["t2v", "--prompt", "x", "--out", str(scratch / "o.gif")]
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, env=_env(),
                          timeout=120, cwd=scratch)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"vidlora: error: --out {scratch / 'o.gif'} must end in .mp4"]


def test_the_blocker_blocks():
    # the two tests above would pass trivially if the blocker let torch through
    proc = subprocess.run([sys.executable, "-c", _BLOCKER + "import torch"], capture_output=True, text=True,
                          env=_env(), timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "torch is blocked" in proc.stderr
