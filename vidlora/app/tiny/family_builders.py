"""The tiny pipelines of the Wan / HunyuanVideo derived families, built in memory as
diffusers' own pipeline tests build theirs (every component from a config, nothing
downloaded): Wan VACE (one transformer, and the two experts of Wan2.2-VACE-Fun-A14B),
SkyReels V2 (T2V and Diffusion Forcing), Wan 2.2 Animate, FramePack and HunyuanVideo 1.5
(T2V / I2V, with a Qwen2.5-VL text model, a ByT5 encoder and a byte-level chat tokenizer
written here in place of the Qwen tokenizer diffusers' test downloads).
"""

from __future__ import annotations

from .byte_tokenizers import llama_tokenizer, qwen_chat_tokenizer
from .components import clip_image_encoder, hunyuan_shared, llama_config, wan_components
from .configs import TINY_SEEDS
from .models import seeded, tiny_transformer

__all__ = ["FAMILY_KINDS", "build_family_pipeline"]

FAMILY_KINDS = ("wan-vace", "wan-vace-a14b", "skyreels-v2-t2v", "skyreels-v2-df", "wan-animate", "framepack",
                "hunyuan1.5-t2v", "hunyuan1.5-i2v")  # fmt: skip


def build_family_pipeline(kind: str):
    """A tiny pipeline of one of FAMILY_KINDS, fp32, in memory."""
    if kind.startswith(("wan-", "skyreels")):
        return _wan_family(kind)
    if kind == "framepack":
        return _framepack()
    return _hunyuan15(kind)


def _wan_family(kind: str):
    import diffusers

    common = wan_components()  # Wan's UMT5, VAE and UniPC scheduler, from the same seeds
    first, second = TINY_SEEDS["transformer"], TINY_SEEDS["transformer_2"]
    if kind == "wan-vace":
        return diffusers.WanVACEPipeline(transformer=tiny_transformer("wan-vace", seed=first), **common)
    if kind == "wan-vace-a14b":  # Wan2.2-VACE-Fun-A14B: high-noise transformer, then the low-noise one
        return diffusers.WanVACEPipeline(transformer=tiny_transformer("wan-vace", seed=first),
                                         transformer_2=tiny_transformer("wan-vace", seed=second),
                                         boundary_ratio=0.875, **common)  # fmt: skip
    if kind == "skyreels-v2-t2v":
        return diffusers.SkyReelsV2Pipeline(transformer=tiny_transformer("skyreels-v2", seed=first), **common)
    if kind == "skyreels-v2-df":
        return diffusers.SkyReelsV2DiffusionForcingPipeline(transformer=tiny_transformer("skyreels-v2-df", seed=first),
                                                            **common)  # fmt: skip
    encoder, processor = clip_image_encoder()
    return diffusers.WanAnimatePipeline(transformer=tiny_transformer("wan-animate", seed=first), image_encoder=encoder,
                                        image_processor=processor, **common)  # fmt: skip


def _siglip(hidden: int):
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    with seeded("image_encoder"):
        encoder = SiglipVisionModel(SiglipVisionConfig(hidden_size=hidden, intermediate_size=32, num_hidden_layers=2,
                                                       num_attention_heads=2, image_size=32, patch_size=8)).eval()  # fmt: skip
    return encoder, SiglipImageProcessor(size={"height": 32, "width": 32})


def _framepack():
    import diffusers
    from transformers import LlamaModel

    tokenizer = llama_tokenizer([])
    with seeded("text_encoder"):
        text_encoder = LlamaModel(llama_config(len(tokenizer))).eval()
    encoder, processor = _siglip(16)  # hidden 16 = the transformer's image_proj_dim
    return diffusers.HunyuanVideoFramepackPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=tiny_transformer("framepack", seed=TINY_SEEDS["transformer"]),
        image_encoder=encoder, feature_extractor=processor, **hunyuan_shared(),
    )  # fmt: skip


def _hunyuan15(kind: str):
    import diffusers
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel, T5Config, T5EncoderModel

    tokenizer = qwen_chat_tokenizer()
    with seeded("text_encoder"):
        # width 16 = text_embed_dim; Qwen2.5-VL's multimodal rotary sections over 8 head dims
        text_encoder = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
            vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, rope_theta=1e6, bos_token_id=None, eos_token_id=None,
            rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        )).eval()  # fmt: skip
    tokenizer_2 = ByT5Tokenizer()  # byte-level by design: nothing to download
    with seeded("text_encoder_2"):
        text_encoder_2 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=32, num_layers=1,
                                                 num_heads=2)).eval()  # fmt: skip
    with seeded("vae"):
        # HunyuanVideo 1.5's VAE layout, x4 spatial and x2 temporal at this size
        vae = diffusers.AutoencoderKLHunyuanVideo15(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16), layers_per_block=1,
            spatial_compression_ratio=4, temporal_compression_ratio=2, downsample_match_channel=False,
            upsample_match_channel=False,
        ).eval()  # fmt: skip
    common = dict(
        transformer=tiny_transformer(kind, seed=TINY_SEEDS["transformer"]), vae=vae,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, guider=ClassifierFreeGuidance(guidance_scale=6.0),
    )  # fmt: skip
    if kind == "hunyuan1.5-t2v":
        return diffusers.HunyuanVideo15Pipeline(**common)
    encoder, processor = _siglip(12)  # hidden 12 = the transformer's image_embed_dim
    return diffusers.HunyuanVideo15ImageToVideoPipeline(image_encoder=encoder, feature_extractor=processor, **common)
