"""Bad input: each a clean vidlora error naming the file; pickles never unpickled; a
fuzz over mutated headers and tensors never gets anything but vidlora's own errors."""

from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers.format_cases import tiny
from helpers.writers import random_truth, write_lora, write_raw
from vidlora.errors import LoRAFormatError, LoRAMismatchError, UnsafeFileError, VidloraError
from vidlora.model import inventory
from vidlora.lora import match_lora, read_lora


def _valid_file(tmp_path, name="ok.safetensors") -> str:
    model = tiny("wan-t2v")
    truth = random_truth(
        model, seed=0, paths=["blocks.0.attn1.to_q", "blocks.1.ffn.net.0.proj"],
        deltas=["blocks.0.norm2.weight", "blocks.0.scale_shift_table"], alpha=2.0,
    )
    return write_lora(tmp_path / name, truth, "W2", metadata={"modelspec.trigger_phrase": "ohwx"})


def _expect(path, error=LoRAFormatError, match=""):
    with pytest.raises(error, match=match) as err:
        read_lora(path)
    assert os.path.basename(str(path)) in str(err.value), "the message must name the file"
    return str(err.value)


# ------------------------------------------------------------------ one test per bad input
def test_truncated_data(tmp_path):
    path = _valid_file(tmp_path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) - 10])
    _expect(path, match="truncated file")


def test_truncated_header(tmp_path):
    path = _valid_file(tmp_path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:40])
    _expect(path, match="truncated file")


@pytest.mark.parametrize("n", [0, 5])
def test_truncated_length_prefix(tmp_path, n):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x10" * n)
    _expect(path, match="truncated file")


def test_header_over_bound(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 100_000_001) + b"{}" + b" " * 64)
    _expect(path, match="exceeds the 100000000-byte bound")


@pytest.mark.parametrize("content", [b"hello, this is a text file, not tensors at all" * 3, b"\x00" * 64])
def test_not_safetensors(tmp_path, content):
    path = tmp_path / "text.safetensors"
    path.write_bytes(content)
    _expect(path, match="not a safetensors file|truncated file")


def test_header_not_an_object(tmp_path):
    path = tmp_path / "list.safetensors"
    header = b"[1, 2, 3]"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    _expect(path, match="not a JSON object")


def test_offsets_do_not_tile(tmp_path):
    header = json.dumps({"a.lora_down.weight": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode()
    path = tmp_path / "gap.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 12)
    _expect(path, match="starts at byte 4, expected 0")


def test_directory(tmp_path):
    (tmp_path / "dir.safetensors").mkdir()
    _expect(tmp_path / "dir.safetensors", match="is a directory")


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.safetensors", match="no such file")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_inf(tmp_path, bad):
    down = torch.randn(2, 24)
    down[1, 3] = bad
    path = write_raw(tmp_path / "nan.safetensors", {
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight": down,
        "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(24, 2),
    })
    msg = _expect(path, match="contains NaN or Inf")
    assert "blocks.0.self_attn.q.lora_down.weight" in msg


def test_rank_mismatch(tmp_path):
    path = write_raw(tmp_path / "rank.safetensors", {
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(4, 24),
        "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(24, 3),
    })
    _expect(path, match="A/B rank mismatch .* rank 4, .* rank 3")


def test_alpha_wrong_shape(tmp_path):
    path = write_raw(tmp_path / "alpha.safetensors", {
        "lora_unet_blocks_0_self_attn_q.lora_down.weight": torch.randn(4, 24),
        "lora_unet_blocks_0_self_attn_q.lora_up.weight": torch.randn(24, 4),
        "lora_unet_blocks_0_self_attn_q.alpha": torch.ones(4),
    })
    _expect(path, match=r"alpha .* has shape \(4,\); expected a single number")


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool])
def test_integer_tensors(tmp_path, dtype):
    path = write_raw(tmp_path / "int.safetensors", {
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.ones(4, 24, dtype=dtype),
        "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(24, 4),
    })
    _expect(path, match="must be floating point")


def test_lone_half_of_a_lora(tmp_path):
    path = write_raw(tmp_path / "half.safetensors", {"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(4, 24)})
    _expect(path, match="has no matching up tensor")


def test_unknown_keys_listed_with_count(tmp_path):
    tensors = {f"model.layers.{i}.mlp.weight": torch.randn(2) for i in range(7)}
    msg = _expect(write_raw(tmp_path / "llm.safetensors", tensors), match="7 keys, none of them in a known")
    assert "and 2 more" in msg


def test_only_text_encoder_keys(tmp_path):
    path = write_raw(tmp_path / "te.safetensors", {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.randn(2, 8)})
    _expect(path, match="only text-encoder keys")


def test_mixed_naming(tmp_path):
    path = write_raw(tmp_path / "mixed.safetensors", {
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(2, 24),
        "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(24, 2),
        "diffusion_model.blocks.0.attn1.to_k.lora_down.weight": torch.randn(2, 24),
        "diffusion_model.blocks.0.attn1.to_k.lora_up.weight": torch.randn(24, 2),
    })
    _expect(path, match="mixes (diffusers|original Wan) names with (original Wan|diffusers) names")


def test_inconsistent_widths(tmp_path):
    path = write_raw(tmp_path / "widths.safetensors", {
        "diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(2, 24),
        "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(24, 2),
        "diffusion_model.blocks.1.self_attn.q.lora_down.weight": torch.randn(2, 32),
        "diffusion_model.blocks.1.self_attn.q.lora_up.weight": torch.randn(32, 2),
    })
    _expect(path, match="inconsistent hidden sizes")


# ------------------------------------------------------------------ pickles
class _Plant:
    """Unpickling this creates the marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin", ".pth"])
def test_pickle_suffixes_refused_unread(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(pickle.dumps({"w": _Plant(str(marker))}))
    # the payload works: loading it the unsafe way would create the marker
    msg = _expect(path, UnsafeFileError, match="unpickling runs arbitrary code")
    assert suffix in msg
    assert not marker.exists()


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickle_renamed_safetensors_refused(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    if how == "pickle":
        path.write_bytes(pickle.dumps(_Plant(str(marker)), protocol=2))
    else:
        torch.save({"w": _Plant(str(marker))}, path)
    _expect(path, UnsafeFileError, match="pickle")
    assert not marker.exists()


def test_planted_pickle_really_fires(tmp_path):
    """Guard for the tests above: the planted payload does create the file when unpickled."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Plant(str(marker))))
    assert marker.exists()


# ------------------------------------------------------------------ fuzz
@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory):
    return open(_valid_file(tmp_path_factory.mktemp("fuzz")), "rb").read()


def _read_and_match(path):
    """Only vidlora errors may escape reading and then matching against a model."""
    try:
        lora = read_lora(path)
    except VidloraError as exc:
        event(f"read refused: {type(exc).__name__}")
        return
    try:
        match_lora(lora, inventory(tiny("wan-t2v")), strict=False)
        event("read and matched")
    except VidloraError as exc:
        event(f"read, match refused: {type(exc).__name__}")


_FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(data=st.data())
def test_fuzz_header_bytes(tmp_path, valid_bytes, data):
    buf = bytearray(valid_bytes)
    (hlen,) = struct.unpack("<Q", buf[:8])
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, 8 + hlen - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(buf))))
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(buf if cut is None else buf[:cut]))
    _read_and_match(path)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@_FUZZ
@given(data=st.data())
def test_fuzz_header_structure(tmp_path, valid_bytes, data):
    (hlen,) = struct.unpack("<Q", valid_bytes[:8])
    header = json.loads(valid_bytes[8 : 8 + hlen])
    body = valid_bytes[8 + hlen :]
    keys = sorted(header)
    key = data.draw(st.sampled_from(keys))
    field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "whole", "rename", "metadata"]))
    if field == "whole":
        header[key] = data.draw(_JSON)
    elif field == "rename":
        header[data.draw(st.text(max_size=60))] = header.pop(key)
    elif field == "metadata":
        header["__metadata__"] = data.draw(_JSON)
    elif key != "__metadata__":
        header[key][field] = data.draw(
            _JSON | st.sampled_from(["F16", "BF16", "I64", "BOOL", "F8_E4M3", "U8"])
            | st.lists(st.integers(-3, 10**6), max_size=4)
        )
    raw = json.dumps(header).encode()
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    _read_and_match(path)


_SUFFIXES = [".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight", ".alpha", ".diff",
             ".diff_b", ".diff_m", ".hada_w1_a", ".lokr_w1", ".lokr_w2_b", ".lora_B.bias", ".weight"]
_MODULES = ["diffusion_model.blocks.0.self_attn.q", "lora_unet_blocks_1_ffn_0", "transformer.blocks.0.attn1.to_k",
            "diffusion_model.blocks.0", "lora_unet_double_blocks_0_img_attn_qkv", "diffusion_model.single_blocks.0.linear1",
            "diffusion_model.head", "transformer.transformer_blocks.0.attn.to_q", "lycoris_blocks_0_ffn_net_2"]


@_FUZZ
@given(
    entries=st.lists(
        st.tuples(
            st.sampled_from(_MODULES), st.sampled_from(_SUFFIXES),
            st.lists(st.sampled_from([0, 1, 2, 3, 4, 6, 20, 24, 40, 60]), min_size=0, max_size=4),
            st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.int32]),
            st.sampled_from([0.0, 1.0, float("nan"), float("inf"), -2.5]),
        ),
        min_size=1, max_size=6,
    )
)
def test_fuzz_tensors(tmp_path, entries):
    tensors = {}
    for module, suffix, shape, dtype, fill in entries:
        t = torch.randn(shape) if fill == 1.0 else torch.full(shape, fill)
        tensors[module + suffix] = t.to(dtype) if dtype.is_floating_point else t.nan_to_num().to(dtype)
    path = write_raw(tmp_path / "fuzz.safetensors", tensors)
    _read_and_match(path)


def test_wrong_family_named_both_sides(tmp_path):
    """A tiny-width file on a real 14B model: both sides named."""
    from vidlora.model import meta_transformer

    lora = read_lora(_valid_file(tmp_path))
    with pytest.raises(LoRAMismatchError, match=r"LoRA targets Wan \(in_features 24\); the model is Wan 14B \(5120\)"):
        match_lora(lora, inventory(meta_transformer("wan2.1-t2v-14b")))


@_FUZZ
@given(data=st.data())
def test_fuzz_one_tensor_changed(tmp_path, valid_bytes, data):
    """A valid file with one tensor replaced by one of another shape, dtype or content."""
    from safetensors.torch import load

    tensors = load(valid_bytes)
    key = data.draw(st.sampled_from(sorted(tensors)))
    old = tensors[key]
    shape = data.draw(st.one_of(
        st.just(list(old.shape)),
        st.lists(st.sampled_from([0, 1, 2, 4, 5, 6, 24, 40, 48]), max_size=4),
        st.just(list(old.shape)[::-1]),
    ))
    dtype = data.draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int16]))
    fill = data.draw(st.sampled_from(["randn", "zeros", "huge", "nan"]))
    t = {"randn": torch.randn, "zeros": torch.zeros}.get(fill, torch.ones)(shape)
    if fill == "huge":
        t = t * 1e30
    elif fill == "nan" and t.numel():
        t.view(-1)[0] = float("nan")
    tensors[key] = t.to(dtype) if dtype.is_floating_point else t.nan_to_num().clamp(-100, 100).to(dtype)
    _read_and_match(write_raw(tmp_path / "fuzz.safetensors", tensors))


def test_factors_multiplying_out_to_a_huge_delta(tmp_path):
    """LoKr factors whose Kronecker product would need 2**30 elements are refused before
    anything is allocated."""
    path = write_raw(tmp_path / "lokr.safetensors", {
        "lora_unet_blocks_0_self_attn_q.lokr_w1": torch.randn(32768, 1),
        "lora_unet_blocks_0_self_attn_q.lokr_w2": torch.randn(32768, 1),
    })
    _expect(path, match="multiplies out to shape")


def test_integer_alpha_is_a_number(tmp_path):
    path = write_raw(tmp_path / "intalpha.safetensors", {
        "lora_unet_blocks_0_self_attn_q.lora_down.weight": torch.randn(4, 24),
        "lora_unet_blocks_0_self_attn_q.lora_up.weight": torch.randn(24, 4),
        "lora_unet_blocks_0_self_attn_q.alpha": torch.tensor(2),
    })
    assert read_lora(path).modules["blocks.0.attn1.to_q"].scale == 0.5
