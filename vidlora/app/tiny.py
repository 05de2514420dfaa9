"""Tiny diffusers transformers built from configs with fixed seeds.

They are real ``WanTransformer3DModel`` / ``HunyuanVideoTransformer3DModel`` instances
with every module kind of the full models (self/cross attention, Wan I2V image
cross-attention, FFN, modulation tables, Hunyuan double and single blocks), only narrow:
widths no real model has (Wan 24, Hunyuan 20), so LoRA files for them are told apart from
real ones, and sizes that are not multiples of 16 so kernels meet ragged shapes.

The embedded tiny *pipelines* (``--model tiny``) are built from these same configs: real
diffusers pipeline classes whose every component (VAE, text encoders, tokenizers built
without downloading anything, CLIP image encoder) is a small model drawn from a fixed
seed, saved once with ``save_pretrained`` into the vidlora cache and loaded back through
``from_pretrained`` like any real model (``tiny_pipeline_dir``). They check the plumbing,
not the look: their videos are noise-like.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "TINY_TRANSFORMER_CONFIGS",
    "tiny_transformer",
    "tiny_transformer_inputs",
    "TINY_PIPELINE_KINDS",
    "TINY_MARKER_FILE",
    "build_tiny_pipeline",
    "tiny_pipeline_dir",
    "tiny_prompt_template",
]

# Wan: 2 heads x 12 = width 24, FFN 40. text_dim 32 matches the tiny UMT5 (d_model 32);
# image_dim 32 the tiny CLIP vision tower; added_kv_proj_dim is the width, as in
# Wan 2.1 I2V 14B (5120 -> 5120).
_WAN_BASE: dict[str, Any] = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=256,
    ffn_dim=40,
    num_layers=3,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    # as the real models: rotary tables for 1024 positions per axis, so any frame count or
    # size the CLI accepts (832x480 -> 52 latent columns) runs on the tiny model too
    rope_max_seq_len=1024,
)

TINY_TRANSFORMER_CONFIGS: dict[str, dict[str, Any]] = {
    "wan-t2v": dict(_WAN_BASE),
    # Wan 2.1 I2V: image cross-attention needs both image_dim and added_kv_proj_dim;
    # latent input = 16 noise + 16 image-latent + 4 mask channels = 36 (as the real model).
    "wan-i2v": dict(_WAN_BASE, in_channels=36, image_dim=32, added_kv_proj_dim=24),
    # HunyuanVideo: 2 heads x 10 = width 20, 2 double + 2 single blocks.
    "hunyuan-t2v": dict(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=2,
        num_single_layers=2,
        num_refiner_layers=1,
        mlp_ratio=4.0,
        patch_size=1,
        patch_size_t=1,
        qk_norm="rms_norm",
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_theta=256.0,
        rope_axes_dim=(2, 4, 4),
    ),
}


def tiny_transformer(kind: str = "wan-t2v", seed: int = 0, dtype: torch.dtype = torch.float32):
    """A tiny transformer of the given kind with weights drawn from ``seed``.

    Every parameter (including biases, norms and modulation tables, which diffusers
    initialises to constants) is redrawn, so no LoRA or delta can pass a test by hitting
    a zero or a one.
    """
    if kind not in TINY_TRANSFORMER_CONFIGS:
        raise ValueError(f"unknown tiny transformer {kind!r}; expected one of {sorted(TINY_TRANSFORMER_CONFIGS)}")
    if kind.startswith("wan"):
        from diffusers import WanTransformer3DModel as cls
    else:
        from diffusers import HunyuanVideoTransformer3DModel as cls
    return _randomized(cls, TINY_TRANSFORMER_CONFIGS[kind], seed, dtype)


def _randomized(cls, config: dict[str, Any], seed: int, dtype: torch.dtype):
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(**config)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p.shape[-1] if p.ndim >= 2 else 16
            p.copy_(torch.randn(p.shape, generator=gen) * fan_in**-0.5)
    if dtype != torch.float32:
        # Keep diffusers' fp32 modules (norms, modulation tables, rope) in fp32, as
        # from_pretrained(torch_dtype=...) does; a plain .to(dtype) would not.
        keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
        for name, p in model.named_parameters():
            if not keep.intersection(name.split(".")):
                p.data = p.data.to(dtype)
    return model.eval()


def tiny_transformer_inputs(
    kind: str = "wan-t2v", seed: int = 1, batch: int = 1, frames: int = 2, size: int = 8,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Forward kwargs for ``tiny_transformer(kind)``: latents, a timestep, text (and image)
    embeddings, drawn from ``seed``."""
    config = TINY_TRANSFORMER_CONFIGS[kind]
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(shape, generator=gen).to(dtype)

    latents = rnd(batch, config["in_channels"], frames, size, size)
    if kind.startswith("wan"):
        out = dict(
            hidden_states=latents,
            timestep=torch.tensor([500] * batch),
            encoder_hidden_states=rnd(batch, 7, config["text_dim"]),
        )
        if "image_dim" in config:
            out["encoder_hidden_states_image"] = rnd(batch, 5, config["image_dim"])
        return out
    return dict(
        hidden_states=latents,
        timestep=torch.tensor([500] * batch),
        encoder_hidden_states=rnd(batch, 6, config["text_embed_dim"]),
        encoder_attention_mask=torch.ones(batch, 6, dtype=torch.bool),
        pooled_projections=rnd(batch, config["pooled_projection_dim"]),
        guidance=torch.tensor([3500.0] * batch).to(dtype),
    )


# ------------------------------------------------------------------------ tiny pipelines

TINY_PIPELINE_KINDS = ("wan-t2v", "wan-i2v", "wan2.2-t2v-a14b", "hunyuan-t2v", "hunyuan-i2v")
# Written into every tiny pipeline folder: pipelines.model_info reads it, so a tiny folder
# given as a path behaves exactly like --model tiny.
TINY_MARKER_FILE = "vidlora_tiny.json"
# Bump when any component below changes: folders of older builds are then rebuilt.
_TINY_BUILD = 2  # bump whenever a tiny config changes: cached folders are rebuilt

# Seeds per component, fixed so that every machine builds byte-identical weights.
_SEEDS = {"transformer": 0, "transformer_2": 1, "vae": 2, "text_encoder": 3, "text_encoder_2": 4, "image_encoder": 5}

# Byte-level tokenizers: 256 byte symbols + the model's special tokens, no merges. Any
# text tokenizes (one token per UTF-8 byte) and nothing is downloaded.
_T5_SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 = UMT5's pad / eos defaults
_LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>", "<|pad|>", "<unk>"]
_CLIP_SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<unk>"]
_BYTE_SYMBOLS = 256
# Hunyuan's Llama reads the ~600-byte system template + 256 prompt tokens: 2048 positions
# leave room for long prompts.
_LLAMA_POSITIONS = 2048
_CLIP_TEXT_POSITIONS = 77  # HunyuanVideoPipeline tokenizes CLIP prompts to 77
_CLIP_IMAGE_SIZE = 32  # tiny CLIP vision tower: 32x32 input, 8x8 patches -> 16 + 1 tokens
_CLIP_IMAGE_PATCHES = (_CLIP_IMAGE_SIZE // 8) ** 2
# HunyuanVideo I2V ("latent_concat", as the released I2V model): the transformer reads
# noise latents + image latents + 1 mask channel = 2 * 4 + 1.
_HUNYUAN_I2V_TRANSFORMER = dict(TINY_TRANSFORMER_CONFIGS["hunyuan-t2v"], in_channels=9, image_condition_type="latent_concat")


def build_tiny_pipeline(kind: str):
    """A tiny diffusers pipeline of the given kind, in memory, fp32 (see TINY_PIPELINE_KINDS).

    wan-t2v: WanPipeline (Wan 2.1 T2V). wan-i2v: WanImageToVideoPipeline (Wan 2.1 I2V,
    with a CLIP vision encoder and image processor). wan2.2-t2v-a14b: WanPipeline with
    ``transformer`` (high noise) + ``transformer_2`` (low noise) and boundary_ratio 0.875,
    as Wan 2.2 A14B. hunyuan-t2v: HunyuanVideoPipeline (Llama + CLIP text encoders).
    hunyuan-i2v: HunyuanVideoImageToVideoPipeline (a Llava text+image encoder over a
    tiny CLIP vision tower, latent_concat transformer).

    The Hunyuan kinds need their own prompt template (``tiny_prompt_template``): the
    pipelines' defaults count tokens of the real Llama-3 tokenizer.
    """
    if kind not in TINY_PIPELINE_KINDS:
        raise ValueError(f"unknown tiny pipeline {kind!r}; expected one of {', '.join(TINY_PIPELINE_KINDS)}")
    if kind == "hunyuan-t2v":
        return _build_hunyuan_t2v()
    if kind == "hunyuan-i2v":
        return _build_hunyuan_i2v()
    return _build_wan(kind)


def tiny_pipeline_dir(kind: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the saved tiny pipeline ``kind``, built on first use.

    Lives under ``cache_dir`` (default: the vidlora cache, ``$VIDLORA_CACHE``) in a
    folder named after the build number and the diffusers/transformers versions (their
    save formats differ). Written to a temporary folder and renamed, so a crash or two
    processes building at once never leave a half folder.
    """
    if kind not in TINY_PIPELINE_KINDS:
        raise ValueError(f"unknown tiny pipeline {kind!r}; expected one of {', '.join(TINY_PIPELINE_KINDS)}")
    import diffusers
    import transformers

    if cache_dir is None:
        from vidlora.common.cache_dir import vidlora_cache_dir

        cache_dir = vidlora_cache_dir()
    version = f"build{_TINY_BUILD}-diffusers{diffusers.__version__}-transformers{transformers.__version__}"
    root = Path(cache_dir).expanduser() / "tiny-pipelines" / version
    final = root / kind
    if (final / TINY_MARKER_FILE).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}.", dir=root))
    try:
        pipe = build_tiny_pipeline(kind)
        pipe.save_pretrained(tmp)
        marker = {"kind": kind, "build": _TINY_BUILD, "seeds": _SEEDS, **_tiny_extras(kind, pipe)}
        # the marker goes last: a folder without it is never taken for a finished build
        (tmp / TINY_MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / TINY_MARKER_FILE).is_file():  # not another process's finished build
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _tiny_extras(kind: str, pipe) -> dict[str, Any]:
    if kind.startswith("hunyuan"):
        return {"prompt_template": tiny_prompt_template(kind, pipe.tokenizer)}
    return {}


def tiny_prompt_template(kind: str, tokenizer) -> dict[str, Any]:
    """The Hunyuan prompt template with positions counted for ``tokenizer``.

    HunyuanVideo pipelines drop the first ``crop_start`` Llama outputs (the system
    prompt before the user's text); diffusers' 95 (T2V) / 103 (I2V) count tokens of the
    real Llava-Llama-3 tokenizer, and the byte tokenizer needs its own counts (BOS +
    one token per byte). I2V also needs where the image features sit: the ``<image>``
    token expands to one position per CLIP patch.
    """
    if kind == "hunyuan-t2v":
        from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    else:
        from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE
    template = DEFAULT_PROMPT_TEMPLATE["template"]
    prefix = template.split("{}", 1)[0]
    result: dict[str, Any] = {"template": template, "crop_start": len(tokenizer(prefix)["input_ids"])}
    if kind == "hunyuan-i2v":
        start = len(tokenizer(template.split("<image>", 1)[0])["input_ids"])
        result.update(image_emb_start=start, image_emb_end=start + _CLIP_IMAGE_PATCHES,
                      image_emb_len=_CLIP_IMAGE_PATCHES)
    return result


def _seeded(name: str):
    seed = _SEEDS[name]

    class _Ctx:
        def __enter__(self):
            self._fork = torch.random.fork_rng(devices=[])
            self._fork.__enter__()
            torch.manual_seed(seed)

        def __exit__(self, *exc):
            return self._fork.__exit__(*exc)

    return _Ctx()


def _byte_tokenizer(specials: list[str], *, template: str, max_length: int, **roles: str):
    """A fast tokenizer over UTF-8 bytes with ``specials`` first in the vocabulary.

    template: the post-processor's single-sequence form, e.g. "$A </s>".
    roles: pad_token / eos_token / bos_token / unk_token -> one of ``specials``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(specials)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=roles.get("unk_token")))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials)
    used = [(t, vocab[t]) for t in specials if t in template.split()]
    backend.post_processor = processors.TemplateProcessing(single=template, special_tokens=used)
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=max_length, **roles)


def _build_wan(kind: str):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = _byte_tokenizer(_T5_SPECIALS, template="$A </s>", max_length=512,
                                pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    with _seeded("text_encoder"):
        # d_model = the transformers' text_dim (32)
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=len(tokenizer), d_model=TINY_TRANSFORMER_CONFIGS["wan-t2v"]["text_dim"], d_kv=16, d_ff=64,
            num_layers=2, num_heads=2, relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
        )).eval()
    with _seeded("vae"):
        # Wan 2.1's VAE layout (3 spatial downsamples = x8, 2 temporal = x4), 4 channels wide.
        vae = AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True]).eval()
    # Wan 2.1's scheduler: UniPC on flow sigmas, shift 3.0 (the 480p setting).
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=3.0)
    common = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler)
    if kind == "wan-t2v":
        return WanPipeline(transformer=tiny_transformer("wan-t2v", seed=_SEEDS["transformer"]), **common)
    if kind == "wan2.2-t2v-a14b":
        # A14B: the high-noise expert runs t >= 0.875 * 1000, then the low-noise one.
        return WanPipeline(
            transformer=tiny_transformer("wan-t2v", seed=_SEEDS["transformer"]),
            transformer_2=tiny_transformer("wan-t2v", seed=_SEEDS["transformer_2"]),
            boundary_ratio=0.875, **common,
        )
    image_encoder, image_processor = _clip_image_encoder()
    return WanImageToVideoPipeline(transformer=tiny_transformer("wan-i2v", seed=_SEEDS["transformer"]),
                                   image_encoder=image_encoder, image_processor=image_processor, **common)


def _clip_image_encoder():
    from transformers import CLIPVisionModel

    with _seeded("image_encoder"):
        # hidden 32 = the I2V transformer's image_dim; Wan reads the penultimate layer.
        encoder = CLIPVisionModel(_clip_vision_config(TINY_TRANSFORMER_CONFIGS["wan-i2v"]["image_dim"])).eval()
    return encoder, _clip_image_processor()


def _clip_vision_config(hidden_size: int):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=hidden_size, intermediate_size=64, projection_dim=32, num_hidden_layers=2,
                            num_attention_heads=2, image_size=_CLIP_IMAGE_SIZE, patch_size=8)


def _clip_image_processor():
    from transformers import CLIPImageProcessor

    # CLIP's own normalisation constants; 32 px instead of 224.
    return CLIPImageProcessor(
        size={"shortest_edge": _CLIP_IMAGE_SIZE}, crop_size={"height": _CLIP_IMAGE_SIZE, "width": _CLIP_IMAGE_SIZE},
        do_center_crop=True, do_normalize=True, do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )


def _hunyuan_shared():
    """The parts both HunyuanVideo pipelines share: VAE, scheduler, CLIP text encoder."""
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    config = TINY_TRANSFORMER_CONFIGS["hunyuan-t2v"]
    tokenizer_2 = _byte_tokenizer(_CLIP_SPECIALS, template="<|startoftext|> $A <|endoftext|>",
                                  max_length=_CLIP_TEXT_POSITIONS, bos_token="<|startoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<unk>")
    with _seeded("text_encoder_2"):
        # CLIP's pooled output (hidden 8) is the transformer's pooled_projection_dim.
        text_encoder_2 = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer_2), hidden_size=config["pooled_projection_dim"], intermediate_size=16,
            projection_dim=8, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=_CLIP_TEXT_POSITIONS, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        )).eval()
    with _seeded("vae"):
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
        max_position_embeddings=_LLAMA_POSITIONS, bos_token_id=0, eos_token_id=1,
        pad_token_id=_LLAMA_SPECIALS.index("<|pad|>"),
    )


def _llama_tokenizer(extra_specials: list[str]):
    return _byte_tokenizer(_LLAMA_SPECIALS + extra_specials, template="<|begin_of_text|> $A",
                           max_length=_LLAMA_POSITIONS, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                           pad_token="<|pad|>", unk_token="<unk>")


def _build_hunyuan_t2v():
    from diffusers import HunyuanVideoPipeline
    from transformers import LlamaModel

    tokenizer = _llama_tokenizer([])
    with _seeded("text_encoder"):
        text_encoder = LlamaModel(_llama_config(len(tokenizer))).eval()
    transformer = tiny_transformer("hunyuan-t2v", seed=_SEEDS["transformer"])
    return HunyuanVideoPipeline(transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer,
                                **_hunyuan_shared())


def _build_hunyuan_i2v():
    from diffusers import HunyuanVideoImageToVideoPipeline, HunyuanVideoTransformer3DModel
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    tokenizer = _llama_tokenizer(["<image>"])
    vision, image_processor = _clip_vision_config(hidden_size=32), _clip_image_processor()
    llava = LlavaConfig(
        vision_config=vision.to_dict(), text_config=_llama_config(len(tokenizer)).to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=_CLIP_IMAGE_PATCHES,
        pad_token_id=_LLAMA_SPECIALS.index("<|pad|>"),
    )
    with _seeded("text_encoder"):
        text_encoder = LlavaForConditionalGeneration(llava).eval()
    transformer = _randomized(HunyuanVideoTransformer3DModel, _HUNYUAN_I2V_TRANSFORMER, _SEEDS["transformer"],
                              torch.float32)
    return HunyuanVideoImageToVideoPipeline(transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer,
                                            image_processor=image_processor, **_hunyuan_shared())
