"""The components the tiny pipelines share (text encoders, VAEs, schedulers, image
encoders), each a small model drawn from its fixed seed (``seeded``)."""

from __future__ import annotations

from .byte_tokenizers import (
    CLIP_IMAGE_SIZE,
    CLIP_TEXT_POSITIONS,
    LLAMA_PAD_ID,
    LLAMA_POSITIONS,
    clip_tokenizer,
    t5_tokenizer,
)
from .configs import TINY_TRANSFORMER_CONFIGS
from .models import seeded

__all__ = ["wan_components", "clip_image_encoder", "clip_vision_config", "clip_image_processor", "hunyuan_shared",
           "llama_config"]  # fmt: skip


def wan_components() -> dict:
    """Wan 2.1's tokenizer, UMT5 text encoder, VAE and scheduler, tiny."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
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
    return dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler)


def clip_image_encoder():
    from transformers import CLIPVisionModel

    with seeded("image_encoder"):
        # hidden 32 = the I2V transformer's image_dim; Wan reads the penultimate layer.
        encoder = CLIPVisionModel(clip_vision_config(TINY_TRANSFORMER_CONFIGS["wan-i2v"]["image_dim"])).eval()
    return encoder, clip_image_processor()


def clip_vision_config(hidden_size: int):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=hidden_size, intermediate_size=64, projection_dim=32, num_hidden_layers=2,
                            num_attention_heads=2, image_size=CLIP_IMAGE_SIZE, patch_size=8)  # fmt: skip


def clip_image_processor():
    from transformers import CLIPImageProcessor

    # CLIP's own normalisation constants; 32 px instead of 224.
    return CLIPImageProcessor(
        size={"shortest_edge": CLIP_IMAGE_SIZE}, crop_size={"height": CLIP_IMAGE_SIZE, "width": CLIP_IMAGE_SIZE},
        do_center_crop=True, do_normalize=True, do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )


def hunyuan_shared():
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


def llama_config(vocab_size: int):
    from transformers import LlamaConfig

    # width 16 = the transformer's text_embed_dim; 3 layers because the pipelines read
    # hidden_states[-3] (they skip the last 2 layers).
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=TINY_TRANSFORMER_CONFIGS["hunyuan-t2v"]["text_embed_dim"],
        intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=LLAMA_POSITIONS, bos_token_id=0, eos_token_id=1, pad_token_id=LLAMA_PAD_ID,
    )


