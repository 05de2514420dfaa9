"""write_mp4 / read_mp4_metadata: decoded back with imageio's ffmpeg reader."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from vidlora.errors import VidloraError
from vidlora.app.video import frames_to_uint8, read_mp4_metadata, sidecar_path, write_mp4


def _decode(path):
    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        meta = reader.get_meta_data()
        frames = np.stack([np.asarray(f) for f in reader])
    finally:
        reader.close()
    return frames, meta


def _ramp_video(frames=5, height=32, width=48):
    """Each frame a flat colour far from its neighbours, so a decoded frame can be
    matched to its source after lossy coding (levels 40 apart vs a few levels of error)."""
    video = np.zeros((frames, height, width, 3), np.uint8)
    for i in range(frames):
        video[i] = (20 + 40 * i, 200 - 30 * i, 60 + 25 * i)
    return video


def _assert_same_content(decoded, source, tol=4.0):
    assert decoded.shape == source.shape
    per_frame = np.abs(decoded.astype(np.float32) - source.astype(np.float32)).mean(axis=(1, 2, 3))
    assert (per_frame < tol).all(), f"mean abs error per frame {per_frame}"


def test_float_frames_roundtrip_with_metadata(tmp_path):
    source = _ramp_video(frames=5, height=32, width=48)
    out = tmp_path / "out.mp4"
    settings = {"model": "tiny", "prompt": "a cat says \"hi\"; a=b # é\nline 2", "seed": 7,
                "loras": [{"name": "motion", "weight": 0.8, "sha256": "ab" * 32}]}
    written = write_mp4(source.astype(np.float32) / 255.0, out, fps=16, metadata=settings)
    assert written == out and out.is_file()

    frames, meta = _decode(out)
    assert frames.shape == (5, 32, 48, 3)
    assert meta["fps"] == 16
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    _assert_same_content(frames, source)

    stored = read_mp4_metadata(out)
    for key, value in settings.items():
        assert stored[key] == value
    assert stored["video"] == {"frames": 5, "width": 48, "height": 32, "fps": 16}
    assert stored["vidlora_version"]
    assert json.loads(sidecar_path(out).read_text()) == stored
    assert sidecar_path(out).name == "out.mp4.json"


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda v: v, id="numpy-uint8-FHWC"),
        pytest.param(lambda v: v.astype(np.float64), id="numpy-float-0..255"),
        pytest.param(lambda v: [Image.fromarray(f) for f in v], id="pil-list"),
        pytest.param(lambda v: [[Image.fromarray(f) for f in v]], id="pil-batch-of-one"),
        pytest.param(lambda v: torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255, id="torch-FCHW"),
        pytest.param(lambda v: torch.from_numpy(v).permute(3, 0, 1, 2).float() / 255, id="torch-CFHW"),
        pytest.param(lambda v: torch.from_numpy(v).permute(0, 3, 1, 2)[None].to(torch.bfloat16) / 255,
                     id="torch-bf16-1FCHW"),
        pytest.param(lambda v: v[None].astype(np.float32) / 255, id="numpy-1FHWC"),
    ],
)
def test_accepts_what_pipelines_return(tmp_path, convert):
    source = _ramp_video(frames=4, height=16, width=24)
    out = write_mp4(convert(source), tmp_path / "v.mp4", fps=24)
    frames, meta = _decode(out)
    assert meta["fps"] == 24
    # bf16 keeps 8 significant bits: values up to 1 land within half a level of 255ths
    _assert_same_content(frames, source)


def test_grey_and_rgba_channels():
    grey = np.full((2, 8, 8, 1), 0.5, np.float32)
    assert frames_to_uint8(grey).shape == (2, 8, 8, 3)
    rgba = np.zeros((2, 8, 8, 4), np.uint8)
    rgba[..., 3] = 255
    assert frames_to_uint8(rgba).shape == (2, 8, 8, 3)
    assert frames_to_uint8(rgba)[..., :3].max() == 0


def test_odd_size_is_padded_not_rescaled(tmp_path):
    source = _ramp_video(frames=3, height=31, width=45)
    out = write_mp4(source, tmp_path / "odd.mp4")
    frames, _ = _decode(out)
    assert frames.shape == (3, 32, 46, 3)
    _assert_same_content(frames[:, :31, :45], source)
    assert read_mp4_metadata(out)["video"]["padded_from"] == [45, 31]


def test_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "v.mp4"
    write_mp4(_ramp_video(frames=2), out, metadata={"seed": 1})
    before = out.read_bytes()
    with pytest.raises(VidloraError, match="already exists.*overwrite"):
        write_mp4(_ramp_video(frames=3), out, metadata={"seed": 2})
    assert out.read_bytes() == before
    assert read_mp4_metadata(out)["seed"] == 1

    write_mp4(_ramp_video(frames=3), out, metadata={"seed": 2}, overwrite=True)
    frames, _ = _decode(out)
    assert len(frames) == 3
    assert read_mp4_metadata(out)["seed"] == 2
    assert json.loads(sidecar_path(out).read_text())["seed"] == 2


def test_missing_folder_and_wrong_suffix(tmp_path):
    with pytest.raises(VidloraError, match="folder .*does not exist"):
        write_mp4(_ramp_video(frames=2), tmp_path / "nope" / "v.mp4")
    with pytest.raises(VidloraError, match=r"must end in \.mp4"):
        write_mp4(_ramp_video(frames=2), tmp_path / "v.avi")


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    import vidlora.app.video as video_module

    write_mp4(_ramp_video(frames=2), tmp_path / "ok.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.mp4", "ok.mp4.json"]

    real_encode = video_module._encode

    def encode_then_die(video, target, *args):
        real_encode(video[:1], target, *args)  # a real, complete-looking temp file...
        raise VidloraError("simulated crash during encoding")  # ...then a failure

    monkeypatch.setattr(video_module, "_encode", encode_then_die)
    with pytest.raises(VidloraError, match="simulated crash"):
        write_mp4(_ramp_video(frames=2), tmp_path / "crash.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.mp4", "ok.mp4.json"]


@pytest.mark.parametrize(
    "frames, message",
    [
        (np.zeros((3, 3, 16, 16), np.float32), "could be laid out FCHW or CFHW"),
        (np.full((2, 8, 8, 3), -0.5, np.float32), r"0\.\.1.*-1\.\.1"),
        (np.full((2, 8, 8, 3), np.nan, np.float32), "NaN"),
        (np.full((2, 8, 8, 3), 300.0, np.float32), "0..1 or 0..255"),
        (np.zeros((2, 2, 8, 8, 3), np.uint8), "batch of 2"),
        ([], "empty"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], "one size"),
        (np.zeros((2, 8, 8, 5), np.uint8), "channel axis"),
        ("frames.png", "list of PIL images"),
    ],
)
def test_bad_frames_are_clear_errors(tmp_path, frames, message):
    with pytest.raises(VidloraError, match=message):
        write_mp4(frames, tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists()


def test_explicit_layout_resolves_ambiguity(tmp_path):
    source = _ramp_video(frames=3, height=16, width=16)
    fchw = torch.from_numpy(source).permute(0, 3, 1, 2).contiguous()  # [3, 3, 16, 16]
    out = write_mp4(fchw, tmp_path / "v.mp4", layout="FCHW")
    frames, _ = _decode(out)
    _assert_same_content(frames, source)


def test_read_metadata_of_foreign_video_is_empty(tmp_path):
    import imageio_ffmpeg

    out = tmp_path / "plain.mp4"
    writer = imageio_ffmpeg.write_frames(str(out), (16, 16), ffmpeg_log_level="error")
    writer.send(None)
    writer.send(np.zeros((16, 16, 3), np.uint8))
    writer.close()
    assert read_mp4_metadata(out) == {}
    with pytest.raises(VidloraError, match="no video"):
        read_mp4_metadata(tmp_path / "missing.mp4")


def test_output_files_get_the_usual_permissions(tmp_path):
    import os

    import numpy as np

    mask = os.umask(0o022)
    try:
        out = write_mp4(np.zeros((3, 16, 16, 3), dtype=np.uint8), tmp_path / "perm.mp4", fps=8)
    finally:
        os.umask(mask)
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    assert oct(sidecar_path(out).stat().st_mode & 0o777) == oct(0o644)
