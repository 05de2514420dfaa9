"""The tiny embedded pipelines, built in memory: real diffusers pipeline classes whose every
component (VAE, text encoders, byte tokenizers, CLIP image encoder) is a small model drawn
from a fixed seed. They check the plumbing, not the look: their videos are noise-like.
"""

from __future__ import annotations

import torch

from .byte_tokenizers import (
    CLIP_IMAGE_PATCHES,
    CLIP_IMAGE_SIZE,
    CLIP_TEXT_POSITIONS,
    LLAMA_PAD_ID,
    LLAMA_POSITIONS,
    clip_tokenizer,
    llama_tokenizer,
    t5_tokenizer,
)
from .configs import HUNYUAN_I2V_TRANSFORMER, TINY_PIPELINE_KINDS, TINY_SEEDS, TINY_TRANSFORMER_CONFIGS
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
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = t5_tokenizer()
    with seeded("text_encoder"):
        # d_model = the transformers' text_dim (32)
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=len(tokenizer), d_model=TINY_TRANSFORMER_CONFIGS["wan-t2v"]["text_dim"], d_kv=16, d_ff=64,
            num_layers=2, num_heads=2, relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
        )).eval()
    with seeded("vae"):
        # Wan 2.1's VAE layout (3 spatial downsamples = x8, 2 temporal = x4), 4 channels wide.
        vae = AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True]).eval()  # fmt: skip
    # Wan 2.1's scheduler: UniPC on flow sigmas, shift 3.0 (the 480p setting).
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=3.0)  # fmt: skip
    common = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler)
    if kind == "wan-t2v":
        return WanPipeline(transformer=tiny_transformer("wan-t2v", seed=TINY_SEEDS["transformer"]), **common)
    if kind == "wan2.2-t2v-a14b":
        # A14B: the high-noise expert runs t >= 0.875 * 1000, then the low-noise one.
        return WanPipeline(
            transformer=tiny_transformer("wan-t2v", seed=TINY_SEEDS["transformer"]),
            transformer_2=tiny_transformer("wan-t2v", seed=TINY_SEEDS["transformer_2"]),
            boundary_ratio=0.875, **common,
        )
    image_encoder, image_processor = _clip_image_encoder()
    return WanImageToVideoPipeline(transformer=tiny_transformer("wan-i2v", seed=TINY_SEEDS["transformer"]),
                                   image_encoder=image_encoder, image_processor=image_processor, **common)  # fmt: skip


def _clip_image_encoder():
    from transformers import CLIPVisionModel

    with seeded("image_encoder"):
        # hidden 32 = the I2V transformer's image_dim; Wan reads the penultimate layer.
        encoder = CLIPVisionModel(_clip_vision_config(TINY_TRANSFORMER_CONFIGS["wan-i2v"]["image_dim"])).eval()
    return encoder, _clip_image_processor()


def _clip_vision_config(hidden_size: int):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=hidden_size, intermediate_size=64, projection_dim=32, num_hidden_layers=2,
                            num_attention_heads=2, image_size=CLIP_IMAGE_SIZE, patch_size=8)  # fmt: skip


def _clip_image_processor():
    from transformers import CLIPImageProcessor

    # CLIP's own normalisation constants; 32 px instead of 224.
    return CLIPImageProcessor(
        size={"shortest_edge": CLIP_IMAGE_SIZE}, crop_size={"height": CLIP_IMAGE_SIZE, "width": CLIP_IMAGE_SIZE},
        do_center_crop=True, do_normalize=True, do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )


def _hunyuan_shared():
    """The parts both HunyuanVideo pipelines share: VAE, scheduler, CLIP text encoder."""
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    config = TINY_TRANSFORMER_CONFIGS["hunyuan-t2v"]
    tokenizer_2 = clip_tokenizer()
    with seeded("text_encoder_2"):
        # CLIP's pooled output (hidden 8) is the transformer's pooled_projection_dim.
        text_encoder_2 = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer_2), hidden_size=config["pooled_projection_dim"], intermediate_size=16,
            projection_dim=8, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=CLIP_TEXT_POSITIONS, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        )).eval()
    with seeded("vae"):
        # HunyuanVideo's VAE layout (x8 spatial, x4 temporal), 8 channels wide.
        blocks = 4
        vae = AutoencoderKLHunyuanVideo(
            latent_channels=config["in_channels"], block_out_channels=(8,) * blocks, layers_per_block=1,
            norm_num_groups=4, down_block_types=("HunyuanVideoDownBlock3D",) * blocks,
            up_block_types=("HunyuanVideoUpBlock3D",) * blocks,
        ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)  # HunyuanVideo's release setting
    return dict(vae=vae, scheduler=scheduler, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)


def _llama_config(vocab_size: int):
    from transformers import LlamaConfig

    # width 16 = the transformer's text_embed_dim; 3 layers because the pipelines read
    # hidden_states[-3] (they skip the last 2 layers).
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=TINY_TRANSFORMER_CONFIGS["hunyuan-t2v"]["text_embed_dim"],
        intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=LLAMA_POSITIONS, bos_token_id=0, eos_token_id=1, pad_token_id=LLAMA_PAD_ID,
    )


def _build_hunyuan_t2v():
    from diffusers import HunyuanVideoPipeline
    from transformers import LlamaModel

    tokenizer = llama_tokenizer([])
    with seeded("text_encoder"):
        text_encoder = LlamaModel(_llama_config(len(tokenizer))).eval()
    transformer = tiny_transformer("hunyuan-t2v", seed=TINY_SEEDS["transformer"])
    return HunyuanVideoPipeline(transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer,
                                **_hunyuan_shared())  # fmt: skip


def _build_hunyuan_i2v():
    from diffusers import HunyuanVideoImageToVideoPipeline, HunyuanVideoTransformer3DModel
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    tokenizer = llama_tokenizer(["<image>"])
    vision, image_processor = _clip_vision_config(hidden_size=32), _clip_image_processor()
    llava = LlavaConfig(
        vision_config=vision.to_dict(), text_config=_llama_config(len(tokenizer)).to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=CLIP_IMAGE_PATCHES,
        pad_token_id=LLAMA_PAD_ID,
    )
    with seeded("text_encoder"):
        text_encoder = LlavaForConditionalGeneration(llava).eval()
    transformer = randomized(HunyuanVideoTransformer3DModel, HUNYUAN_I2V_TRANSFORMER, TINY_SEEDS["transformer"],
                             torch.float32)  # fmt: skip
    return HunyuanVideoImageToVideoPipeline(transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer,
                                            image_processor=image_processor, **_hunyuan_shared())  # fmt: skip
