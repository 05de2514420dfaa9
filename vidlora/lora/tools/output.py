"""Writing tool outputs: atomically, never over an existing file unless asked, with the
metadata that says where the file came from.

A file is written to a temporary name in the destination folder, flushed to disk and
renamed over the final name in one step (``os.replace``), so a crash or a full disk never
leaves a half-written LoRA under the name a user (or ComfyUI) will load.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch

from vidlora._version import __version__
from vidlora.errors import VidloraError

from ..lora_file import LoRAFile

__all__ = ["check_destinations", "write_safetensors", "carried_metadata", "expert_path", "peft_metadata"]

# Metadata a tool regenerates instead of carrying: the PEFT config (alpha now lives in the
# keys or is rewritten), safetensors' format marker.
_REGENERATED = ("lora_adapter_metadata", "format")


def expert_path(dst: str, expert: str) -> str:
    """``out.safetensors`` -> ``out_high_noise.safetensors`` (ai-toolkit's split names, which
    vidlora, kijai's wrapper and users' file-name habits all read as the expert)."""
    stem, ext = os.path.splitext(dst)
    return f"{stem}_{expert}_noise{ext or '.safetensors'}"


def check_destinations(paths: list[str], overwrite: bool, sources: list[str] = ()) -> None:
    """Refuse, before any work, outputs that exist (without ``overwrite``), that are a
    folder, that are an input, or whose folder is missing."""
    src = {os.path.realpath(s) for s in sources if s and os.path.exists(s)}
    for path in paths:
        if not path.endswith(".safetensors"):
            raise VidloraError(f"output {path!r} must end in .safetensors")
        if os.path.isdir(path):
            raise VidloraError(f"output {path} is a folder; give a .safetensors file name")
        if os.path.realpath(path) in src:
            raise VidloraError(f"output {path} is also an input; write to another file")
        if os.path.exists(path) and not overwrite:
            raise VidloraError(f"output {path} exists; pass overwrite=True (--overwrite) to replace it")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise VidloraError(f"output folder {folder} does not exist")


def _unshared(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, cast to ``dtype`` when given, none sharing memory (safetensors
    refuses shared storage: a fused LoRA's A copied to three diffusers pieces)."""
    out, seen = {}, set()
    for key, t in tensors.items():
        t = t.detach()
        if dtype is not None and t.is_floating_point() and t.ndim > 0:
            t = t.to(dtype)
        t = t.to("cpu").contiguous()
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else None
        if ptr is not None and ptr in seen or t.numel() and t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()
        if ptr is not None:
            seen.add(ptr)
        out[key] = t
    return out


def write_safetensors(
    path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str], dtype: torch.dtype | None = None
) -> None:
    """Write atomically: a temporary file beside ``path``, fsync, rename."""
    from safetensors.torch import save_file

    if not tensors:
        raise VidloraError(f"nothing to write to {path}: no LoRA entries are left")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".vidlora-", suffix=".safetensors.part", dir=folder)
    os.close(fd)
    try:
        save_file(_unshared(tensors, dtype), tmp, metadata={k: str(v) for k, v in metadata.items()})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def carried_metadata(lora: LoRAFile, tool: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The source's metadata (trigger words, base model, training facts), minus what the
    writer regenerates, plus where the file came from: the source's name, scheme and
    sha256, the tool and vidlora's version. Trigger words a source listed outside the
    file's metadata (Civitai) go to ``modelspec.trigger_phrase`` when the file has none."""
    meta = {k: v for k, v in lora.metadata.items() if k not in _REGENERATED}
    if lora.trigger_words and not meta.get("modelspec.trigger_phrase"):
        meta["modelspec.trigger_phrase"] = ", ".join(lora.trigger_words)
    meta.update({
        "vidlora.tool": f"{tool} (vidlora {__version__})",
        "vidlora.source_name": os.path.basename(lora.path),
        "vidlora.source_scheme": lora.scheme,
    })  # fmt: skip
    if lora.sha256:
        meta["vidlora.source_sha256"] = lora.sha256
    meta.update(extra or {})
    return meta


def peft_metadata(config: dict, prefix: str = "transformer") -> str:
    """``lora_adapter_metadata`` as diffusers' ``save_lora_weights`` writes it: the LoraConfig
    with every key prefixed by the component name (no prefix: a plain PEFT config)."""
    return json.dumps({f"{prefix}.{k}" if prefix else k: v for k, v in config.items()}, indent=2, sort_keys=True)
