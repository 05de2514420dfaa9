"""``vidlora serve``'s request checks and source rules, without Ray or torch: each bad field
is a 4xx naming it, inputs are bounded, and off loopback local files come only from the
--lora-dir roots and URLs only from the Hub, Civitai and named hosts."""

from __future__ import annotations

import base64
import os

import pytest

from vidlora.app.serve.config import ServeConfig, ServeLimits, is_loopback
from vidlora.app.serve.ingress import lora_set_id
from vidlora.app.serve.policy import check_image_url, check_token, locate_source
from vidlora.app.serve.request import RequestError, parse_body

_LIMITS = ServeLimits(max_frames=33, max_steps=10, max_side=256, max_pixels=256 * 128, max_loras=2, max_schedule=4)


def test_a_good_body():
    body = parse_body({"prompt": "a fox", "lora": [{"model": "civitai:1@2", "weight": [1, 0.5]}, {"model": "m.safetensors"}],
                       "seed": 3, "frames": 9, "size": "128x64", "steps": 4, "guidance": 5, "fps": 12}, _LIMITS, "t2v")  # fmt: skip
    assert (body.prompt, body.seed, body.frames, body.size, body.steps, body.guidance) == ("a fox", 3, 9, (128, 64), 4, 5.0)
    assert [(e.source, e.weight) for e in body.loras] == [("civitai:1@2", (1.0, 0.5)), ("m.safetensors", 1.0)]


@pytest.mark.parametrize("data, field, words", [
    ({"prompt": "x", "num_frames": 34}, "num_frames", ["between 1 and 33"]),
    ({"prompt": "x", "num_frames": True}, "num_frames", ["whole number"]),
    ({"prompt": "x", "steps": 11}, "steps", ["between 1 and 10"]),
    ({"prompt": "x", "size": "512x64"}, "size", ["limit", "256 px"]),
    ({"prompt": "x", "size": "256x256"}, "size", ["32768 pixels"]),
    ({"prompt": "x", "size": [32, 32]}, "size", ["WIDTHxHEIGHT"]),
    ({"prompt": "x", "seed": -1}, "seed", ["between 0 and"]),
    ({"prompt": "x", "guidance": float("nan")}, "guidance", ["finite"]),
    ({"prompt": "x", "flow_shift": 0}, "flow_shift", ["> 0"]),
    ({"prompt": "x", "fps": 1000}, "fps", ["<= 120"]),
    ({"prompt": "x", "negative_prompt": ["a"]}, "negative_prompt", ["string"]),
    ({"prompt": "x" * 4001}, "prompt", ["at most 4000"]),
    ({"prompt": "   "}, "prompt", ["empty"]),
    ({"prompt": "x", "lora": [{}, {}, {}]}, "lora", ["at most 2"]),
    ({"prompt": "x", "lora": ["m.safetensors"]}, "lora[0]", ["object"]),
    ({"prompt": "x", "lora": [{"model": ""}]}, "lora[0].model", ["must name a LoRA"]),
    ({"prompt": "x", "lora": [{"model": "m", "strength": 1}]}, "lora[0].strength", ["unknown field 'strength'"]),
    ({"prompt": "x", "lora": [{"model": "m", "weight": 9}]}, "lora[0].weight", ["outside [-8, 8]"]),
    ({"prompt": "x", "lora": [{"model": "m", "weight": [1, 1, 1, 1, 1]}]}, "lora[0].weight", ["1 to 4 values"]),
    ({"prompt": "x", "lora": [{"model": "m", "weight": [1, None]}]}, "lora[0].weight", ["finite number"]),
    ({"prompt": "x", "num_frames": 5, "frames": 9}, "num_frames", ["differ"]),
])  # fmt: skip
def test_each_bad_field_is_named(data, field, words):
    with pytest.raises(RequestError) as info:
        parse_body(data, _LIMITS, "t2v")
    assert info.value.status == 400 and info.value.field == field, info.value.body()
    for w in words:
        assert w in info.value.message, (w, info.value.message)


def test_images_follow_the_task():
    png = base64.b64encode(b"\x89PNG....").decode()
    assert parse_body({"prompt": "x", "image": png}, _LIMITS, "i2v").image == b"\x89PNG...."
    assert parse_body({"prompt": "x", "image": f"data:image/png;base64,{png}"}, _LIMITS, "i2v").image == b"\x89PNG...."
    assert parse_body({"prompt": "x", "image": "https://example.com/a.png"}, _LIMITS, "i2v").image_url
    for data, task, words in [({"prompt": "x"}, "i2v", "image is required"), ({"prompt": "x", "image": png}, "t2v", "text-to-video"),
                              ({"prompt": "x", "image": "not base64!"}, "i2v", "neither valid base64")]:  # fmt: skip
        with pytest.raises(RequestError, match=words):
            parse_body(data, _LIMITS, task)


def test_the_set_id_ignores_order_and_weights():
    assert lora_set_id(["b", "a"]) == lora_set_id(["a", "b"]) != lora_set_id(["a", "c"])
    assert lora_set_id([]) == ""


@pytest.fixture
def roots(tmp_path):
    root = tmp_path / "loras"
    (root / "styles").mkdir(parents=True)
    (root / "motion.safetensors").write_bytes(b"x")
    (root / "styles" / "ink.safetensors").write_bytes(b"x")
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "link.safetensors")
    return root, outside


def test_off_loopback_sources_are_limited(roots):
    root, outside = roots
    cfg = ServeConfig(host="0.0.0.0", token="t", lora_dirs=(str(root),))
    assert not cfg.loopback
    assert locate_source("motion.safetensors", cfg, "lora[0]") == str((root / "motion.safetensors").resolve())
    assert locate_source("styles/ink.safetensors", cfg, "lora[0]") == str((root / "styles/ink.safetensors").resolve())
    assert locate_source(str(root / "motion.safetensors"), cfg, "lora[0]") == str((root / "motion.safetensors").resolve())
    for source, words in [(str(outside), "outside the --lora-dir"), ("link.safetensors", "outside the --lora-dir"),
                          ("../secret.safetensors", "outside the --lora-dir"),
                          ("https://example.com/x.safetensors", "--allow-url-host example.com")]:  # fmt: skip
        with pytest.raises(RequestError) as info:
            locate_source(source, cfg, "lora[0]")
        assert info.value.status == 403 and words in info.value.message and info.value.field == "lora[0].model"
    for allowed in ("civitai:120096@135931", "https://huggingface.co/o/r/resolve/main/x.safetensors",
                    "https://civitai.com/models/1", "owner/repo/x.safetensors"):  # fmt: skip
        assert locate_source(allowed, cfg, "lora[0]") == allowed
    more = ServeConfig(host="0.0.0.0", token="t", allow_url_hosts=("example.com",))
    assert locate_source("https://cdn.example.com/x.safetensors", more, "lora[0]")
    with pytest.raises(RequestError, match="has none"):
        locate_source(str(outside), more, "lora[0]")
    with pytest.raises(RequestError, match="send the image"):
        check_image_url("https://elsewhere.org/a.png", cfg)
    check_image_url("https://example.com/a.png", more)


def test_on_loopback_anything_the_cli_takes(roots):
    root, outside = roots
    cfg = ServeConfig(lora_dirs=(str(root),))
    assert cfg.loopback and is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert locate_source(str(outside), cfg, "lora[0]") == str(outside)
    assert locate_source("https://example.com/x.safetensors", cfg, "lora[0]")
    assert locate_source("motion.safetensors", cfg, "lora[0]") == str((root / "motion.safetensors").resolve())


def test_the_bearer_token():
    check_token(ServeConfig(), None)  # no token set: open
    cfg = ServeConfig(token="s3cret")
    check_token(cfg, "Bearer s3cret")
    for header in (None, "", "Bearer wrong", "Basic s3cret", "s3cret"):
        with pytest.raises(RequestError) as info:
            check_token(cfg, header)
        assert info.value.status == 401


def test_config_checks():
    with pytest.raises(Exception, match="--lru"):
        ServeConfig(lru=0)
    with pytest.raises(Exception, match="--lora-dir"):
        ServeConfig(lora_dirs=("/no/such/folder",))
    with pytest.raises(Exception, match="max_frames"):
        ServeLimits(max_frames=0)


def test_a_name_found_in_a_lora_folder_must_lie_in_the_roots(roots):
    from vidlora.app.serve.policy import check_resolved
    from vidlora.lora.sources import ResolvedSource

    root, outside = roots
    cfg = ServeConfig(host="0.0.0.0", token="t", lora_dirs=(str(root),))
    check_resolved(ResolvedSource(path=root / "motion.safetensors", sha256="", origin=str(root / "motion.safetensors")),
                   cfg, "lora[0]")  # fmt: skip
    check_resolved(ResolvedSource(path=outside, sha256="", origin="hf:owner/repo/x.safetensors"), cfg, "lora[0]")
    with pytest.raises(RequestError) as info:  # e.g. found through VIDLORA_LORA_DIRS, outside --lora-dir
        check_resolved(ResolvedSource(path=outside, sha256="", origin=str(outside)), cfg, "lora[0]")
    assert info.value.status == 403 and "outside the --lora-dir" in info.value.message
    check_resolved(ResolvedSource(path=outside, sha256="", origin=str(outside)), ServeConfig(), "lora[0]")  # loopback
