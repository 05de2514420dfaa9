"""LoRA folders: ``--lora NAME`` resolves an existing path first, then a LoRA-folder match,
then the Hub; a name that is both (a subfolder file and an owner/repo), or that several
files match, is an error listing the candidates. ``list_loras`` from headers only, with
the sha256 cache."""

from __future__ import annotations

import hashlib
import os

import pytest

from helpers.format_cases import tiny, wan_truth_spec
from helpers.writers import random_truth, write_lora
from vidlora.errors import SourceError, VidloraError
from vidlora.lora import lora_dirs, read_lora
from vidlora.lora.sources import resolve, resolve_source
from vidlora.lora.tools import list_loras


@pytest.fixture
def folders(tmp_path, monkeypatch):
    model = tiny("wan-t2v")
    a, b = tmp_path / "comfy" / "loras", tmp_path / "a1111" / "Lora"
    (a / "wan").mkdir(parents=True)
    b.mkdir(parents=True)
    truth = random_truth(model, seed=1, paths=wan_truth_spec(model, "W1")[0][:3], alpha=2.0)
    write_lora(a / "wan" / "motion.safetensors", truth, "W3", metadata={"modelspec.trigger_phrase": "zoom in"})
    write_lora(a / "Style.safetensors", truth, "W2")
    write_lora(b / "other.safetensors", truth, "W1")
    write_lora(b / "Style.safetensors", truth, "W4")
    monkeypatch.delenv(lora_dirs.LORA_DIRS_ENV, raising=False)
    lora_dirs.use_lora_dirs([])
    yield a, b
    lora_dirs.use_lora_dirs([])


def test_names_resolve_in_lora_folders(folders, monkeypatch, tmp_path):
    a, b = folders
    lora_dirs.use_lora_dirs([a])
    monkeypatch.setenv(lora_dirs.LORA_DIRS_ENV, str(b))
    assert lora_dirs.lora_dirs() == [a, b]
    assert resolve_source("motion").path == (a / "wan" / "motion.safetensors").resolve()
    assert resolve_source("other.safetensors").path == (b / "other.safetensors").resolve()
    assert read_lora("motion").trigger_words == ["zoom in"]
    # an existing path wins over a folder match of the same name
    monkeypatch.chdir(tmp_path)
    write_lora(tmp_path / "motion", random_truth(tiny("wan-t2v"), 2, ["blocks.0.attn1.to_q"]), "W1")
    assert resolve_source("motion").path == (tmp_path / "motion").resolve()


def test_ambiguous_names_list_the_candidates(folders, monkeypatch):
    a, b = folders
    lora_dirs.use_lora_dirs([a, b])
    with pytest.raises(SourceError, match=r"'Style' is ambiguous: .*comfy/loras/Style\.safetensors.*a1111/Lora/Style"):
        resolve_source("Style")
    calls = []
    monkeypatch.setattr(resolve, "resolve_hub", lambda ref, cache: calls.append(ref))
    with pytest.raises(SourceError, match=r"wan/motion.*ambiguous.*wan/motion\.safetensors; hf:wan/motion"):
        resolve_source("wan/motion")
    assert calls == []
    resolve_source("hf:wan/motion")  # hf: names the Hub alone
    resolve_source("owner/not-in-any-folder")  # no folder match: the Hub
    assert calls == ["wan/motion", "owner/not-in-any-folder"]
    with pytest.raises(SourceError, match="ambiguous"):  # the case-insensitive fallback sees both too
        resolve_source("style")


def test_lora_dir_must_exist(tmp_path):
    with pytest.raises(SourceError, match="is not a folder"):
        lora_dirs.use_lora_dirs([tmp_path / "nope"])
    lora_dirs.use_lora_dirs([])


def test_list_loras_from_headers_with_a_sha256_cache(folders, tmp_path):
    a, b = folders
    (a / "broken.safetensors").write_bytes(b"\x00" * 3)
    cache = tmp_path / "hashes.json"
    entries = {e.name: e for e in list_loras([a], cache=cache)}
    assert sorted(entries) == ["Style", "broken", "wan/motion"]
    motion = entries["wan/motion"]
    assert (motion.scheme, motion.kind, motion.family, motion.rank, motion.alpha) == (
        "W3", "LoRA", "Wan (width 24)", [4, 5, 6], 2.0)
    assert motion.trigger_words == ["zoom in"] and motion.sha256 is None and not motion.error
    assert "truncated" in entries["broken"].error
    full = read_lora(a / "wan" / "motion.safetensors")
    assert motion.rank == full.rank and motion.alpha == full.alpha
    hashed = {e.name: e for e in list_loras([a], hash=True, cache=cache)}
    path = a / "wan" / "motion.safetensors"
    assert hashed["wan/motion"].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert {e.name: e.sha256 for e in list_loras([a], cache=cache)} == {k: e.sha256 for k, e in hashed.items()}
    os.utime(path, ns=(1, 1))  # a changed mtime invalidates the cached digest
    assert {e.name: e.sha256 for e in list_loras([a], cache=cache)}["wan/motion"] is None
    with pytest.raises(VidloraError, match="no LoRA folder"):
        list_loras()
