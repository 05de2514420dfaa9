"""The tiny embedded pipelines, built in memory: real diffusers pipeline classes whose every
component (VAE, text encoders, byte tokenizers, CLIP image encoder) is a small model drawn
from a fixed seed. They check the plumbing, not the look: their videos are noise-like.
"""

from __future__ import annotations

import torch

from .byte_tokenizers import CLIP_IMAGE_PATCHES, LLAMA_PAD_ID, llama_tokenizer
from .components import clip_image_encoder, clip_image_processor, clip_vision_config, hunyuan_shared, llama_config, wan_components
from .configs import HUNYUAN_I2V_TRANSFORMER, TINY_PIPELINE_KINDS, TINY_SEEDS
from .models import randomized, seeded, tiny_transformer

__all__ = ["build_tiny_pipeline"]


def build_tiny_pipeline(kind: str):
    """A tiny diffusers pipeline of the given kind, in memory, fp32 (see TINY_PIPELINE_KINDS).

    wan-t2v: WanPipeline (Wan 2.1 T2V). wan-i2v: WanImageToVideoPipeline (Wan 2.1 I2V,
    with a CLIP vision encoder and image processor). wan2.2-t2v-a14b: WanPipeline with
    ``transformer`` (high noise) + ``transformer_2`` (low noise) and boundary_ratio 0.875,
    as Wan 2.2 A14B. hunyuan-t2v: HunyuanVideoPipeline (Llama + CLIP text encoders).
    hunyuan-i2v: HunyuanVideoImageToVideoPipeline (a Llava text+image encoder over a
    tiny CLIP vision tower, latent_concat transformer).

    The Hunyuan kinds need their own prompt template (``tiny_prompt_template``): the
    pipelines' defaults count tokens of the real Llama-3 tokenizer. The derived families'
    kinds are built in family_builders.py.
    """
    if kind not in TINY_PIPELINE_KINDS:
        raise ValueError(f"unknown tiny pipeline {kind!r}; expected one of {', '.join(TINY_PIPELINE_KINDS)}")
    from .family_builders import FAMILY_KINDS, build_family_pipeline

    if kind in FAMILY_KINDS:  # Wan VACE, SkyReels V2, Wan Animate, FramePack, HunyuanVideo 1.5
        return build_family_pipeline(kind)
    if kind == "hunyuan-t2v":
        return _build_hunyuan_t2v()
    if kind == "hunyuan-i2v":
        return _build_hunyuan_i2v()
    return _build_wan(kind)


def _build_wan(kind: str):
    from diffusers import WanImageToVideoPipeline, WanPipeline

    common = wan_components()
    if kind == "wan-t2v":
        return WanPipeline(transformer=tiny_transformer("wan-t2v", seed=TINY_SEEDS["transformer"]), **common)
    if kind == "wan2.2-t2v-a14b":
        # A14B: the high-noise expert runs t >= 0.875 * 1000, then the low-noise one.
        return WanPipeline(
            transformer=tiny_transformer("wan-t2v", seed=TINY_SEEDS["transformer"]),
            transformer_2=tiny_transformer("wan-t2v", seed=TINY_SEEDS["transformer_2"]),
            boundary_ratio=0.875, **common,
        )
    image_encoder, image_processor = clip_image_encoder()
    return WanImageToVideoPipeline(transformer=tiny_transformer("wan-i2v", seed=TINY_SEEDS["transformer"]),
                                   image_encoder=image_encoder, image_processor=image_processor, **common)  # fmt: skip


def _build_hunyuan_t2v():
    from diffusers import HunyuanVideoPipeline
    from transformers import LlamaModel

    tokenizer = llama_tokenizer([])
    with seeded("text_encoder"):
        text_encoder = LlamaModel(llama_config(len(tokenizer))).eval()
    transformer = tiny_transformer("hunyuan-t2v", seed=TINY_SEEDS["transformer"])
    return HunyuanVideoPipeline(transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer,
                                **hunyuan_shared())  # fmt: skip


def _build_hunyuan_i2v():
    from diffusers import HunyuanVideoImageToVideoPipeline, HunyuanVideoTransformer3DModel
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    tokenizer = llama_tokenizer(["<image>"])
    vision, image_processor = clip_vision_config(hidden_size=32), clip_image_processor()
    llava = LlavaConfig(
        vision_config=vision.to_dict(), text_config=llama_config(len(tokenizer)).to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=CLIP_IMAGE_PATCHES,
        pad_token_id=LLAMA_PAD_ID,
    )
    with seeded("text_encoder"):
        text_encoder = LlavaForConditionalGeneration(llava).eval()
    transformer = randomized(HunyuanVideoTransformer3DModel, HUNYUAN_I2V_TRANSFORMER, TINY_SEEDS["transformer"],
                             torch.float32)  # fmt: skip
    return HunyuanVideoImageToVideoPipeline(transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer,
                                            image_processor=image_processor, **hunyuan_shared())  # fmt: skip
