"""The demo's inputs: an example image and two LoRA files for the tiny Wan I2V model, in two
of the on-disk schemes users download most: a "motion" LoRA as musubi-tuner writes it (kohya
``lora_unet_`` keys with an alpha per module: W3) on self-attention and the FFN, and a
"style" LoRA as kijai's extractions are written (original Wan names, ``lora_down``/
``lora_up``, plus ``diff`` / ``diff_b`` / ``diff_m`` full-tensor patches: W2) on
cross-attention, a norm, biases and a modulation table. ``vidlora demo`` stacks both, the
style one on a strength schedule (``STYLE_SCHEDULE``); the tests read them as fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .configs import TINY_TRANSFORMER_CONFIGS

if TYPE_CHECKING:  # torch is imported when the files are written, not with the constants
    import torch

__all__ = ["write_demo_assets", "STYLE_SCHEDULE", "MOTION_STRENGTH"]

_MOTION_RANK, _MOTION_ALPHA = 8, 4.0
_STYLE_RANK = 4
MOTION_STRENGTH = 0.8
STYLE_SCHEDULE = (1.0, 0.6, 0.3, 0.0)  # strong early (layout), fading out over the tiny model's 4 steps


def _original(inner: str) -> str:
    """diffusers name inside a Wan block -> the original Wan name (for the files)."""
    from vidlora.model.wan import BLOCK_INNER

    reverse = {v: k for k, v in BLOCK_INNER.items()}
    return reverse[inner]


def _image(path: Path) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (64, 64))
    px = img.load()
    for y in range(64):
        for x in range(64):
            px[x, y] = (4 * x, 4 * y, 255 - 2 * (x + y))
    ImageDraw.Draw(img).ellipse((18, 18, 46, 46), fill=(250, 220, 40))
    img.save(path)


def _save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """A safetensors file with a byte-for-byte reproducible header (keys and metadata
    sorted), so the demo LoRAs have the same sha256 on every run and machine."""
    import struct

    import torch

    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        data = t.view(torch.uint8).numpy().tobytes() if t.dim() else t.reshape(1).view(torch.uint8).numpy().tobytes()
        header[key] = {"dtype": {torch.bfloat16: "BF16", torch.float32: "F32"}[t.dtype], "shape": list(t.shape),
                       "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def write_demo_assets(folder: Path) -> dict[str, Path]:
    """The example image and the two LoRA files; returns their paths ("image", "motion",
    "style"). Byte-identical on every run and machine (fixed seeds, sorted headers)."""
    import torch

    cfg = TINY_TRANSFORMER_CONFIGS["wan-i2v"]
    width = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    ffn, blocks = cfg["ffn_dim"], cfg["num_layers"]
    gen = torch.Generator().manual_seed(1234)

    def rnd(*shape, scale=1.0):
        return (torch.randn(shape, generator=gen) * scale).to(torch.bfloat16)

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"image": folder / "demo_input.png", "motion": folder / "motion.safetensors", "style": folder / "style.safetensors"}
    _image(paths["image"])

    motion = {}
    for b in range(blocks):
        for inner, (n_in, n_out) in {
            "attn1.to_q": (width, width), "attn1.to_k": (width, width), "attn1.to_v": (width, width),
            "attn1.to_out.0": (width, width), "ffn.net.0.proj": (width, ffn), "ffn.net.2": (ffn, width),
        }.items():
            key = f"lora_unet_blocks_{b}_{_original(inner).replace('.', '_')}"
            motion[f"{key}.lora_down.weight"] = rnd(_MOTION_RANK, n_in, scale=n_in**-0.5)
            motion[f"{key}.lora_up.weight"] = rnd(n_out, _MOTION_RANK, scale=2.0)
            motion[f"{key}.alpha"] = torch.tensor(_MOTION_ALPHA, dtype=torch.bfloat16)
    _save(motion, paths["motion"], metadata={
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": "wan2.1/lora",
        "modelspec.title": "vidlora demo motion",
        "modelspec.trigger_phrase": "bouncing",
        "ss_network_module": "networks.lora_wan",
        "ss_network_dim": str(_MOTION_RANK),
        "ss_network_alpha": str(_MOTION_ALPHA),
        "ss_base_model_version": "wan",
    })

    style = {}
    for b in range(blocks):
        for inner in ("attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "attn2.add_k_proj", "attn2.add_v_proj"):
            key = f"diffusion_model.blocks.{b}.{_original(inner)}"
            style[f"{key}.lora_down.weight"] = rnd(_STYLE_RANK, width, scale=width**-0.5)
            style[f"{key}.lora_up.weight"] = rnd(width, _STYLE_RANK)
        style[f"diffusion_model.blocks.{b}.cross_attn.o.diff_b"] = rnd(width, scale=0.1)
    style["diffusion_model.blocks.0.norm3.diff"] = rnd(width, scale=0.1)  # diffusers norm2
    style["diffusion_model.blocks.0.norm3.diff_b"] = rnd(width, scale=0.1)
    style["diffusion_model.blocks.1.diff_m"] = rnd(1, 6, width, scale=0.05)  # scale_shift_table
    _save(style, paths["style"], metadata={
        "ss_tag_frequency": json.dumps({"1_watercolor": {"watercolor": 12}}),
        "ss_output_name": "vidlora demo style",
    })
    return paths
