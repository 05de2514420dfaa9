"""Byte-level tokenizers for the tiny pipelines: 256 byte symbols after the model's special
tokens, no merges. Any text tokenizes (one token per UTF-8 byte) and nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CLIP_IMAGE_PATCHES",
    "CLIP_IMAGE_SIZE",
    "CLIP_TEXT_POSITIONS",
    "LLAMA_PAD_ID",
    "LLAMA_POSITIONS",
    "t5_tokenizer",
    "clip_tokenizer",
    "llama_tokenizer",
    "qwen_chat_tokenizer",
    "tiny_prompt_template",
    "hunyuan15_crop_start",
]

_T5_SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 = UMT5's pad / eos defaults
_LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>", "<|pad|>", "<unk>"]  # fmt: skip
_CLIP_SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<unk>"]
LLAMA_PAD_ID = _LLAMA_SPECIALS.index("<|pad|>")
# Hunyuan's Llama reads the ~600-byte system template + 256 prompt tokens: 2048 positions
# leave room for long prompts.
LLAMA_POSITIONS = 2048
CLIP_TEXT_POSITIONS = 77  # HunyuanVideoPipeline tokenizes CLIP prompts to 77
CLIP_IMAGE_SIZE = 32  # tiny CLIP vision tower: 32x32 input, 8x8 patches -> 16 + 1 tokens
CLIP_IMAGE_PATCHES = (CLIP_IMAGE_SIZE // 8) ** 2


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


def t5_tokenizer():
    """UMT5's role layout (pad 0, eos 1, unk 2), an EOS after every text (Wan)."""
    return _byte_tokenizer(_T5_SPECIALS, template="$A </s>", max_length=512,
                           pad_token="<pad>", eos_token="</s>", unk_token="<unk>")  # fmt: skip


def clip_tokenizer():
    """CLIP's start/end tokens around the text, 77 positions (Hunyuan's second encoder)."""
    return _byte_tokenizer(_CLIP_SPECIALS, template="<|startoftext|> $A <|endoftext|>",
                           max_length=CLIP_TEXT_POSITIONS, bos_token="<|startoftext|>",
                           eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<unk>")  # fmt: skip


def llama_tokenizer(extra_specials: list[str]):
    """Llama-3's special tokens (+ ``<image>`` for Llava), a BOS before every text (Hunyuan)."""
    return _byte_tokenizer(_LLAMA_SPECIALS + extra_specials, template="<|begin_of_text|> $A",
                           max_length=LLAMA_POSITIONS, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                           pad_token="<|pad|>", unk_token="<unk>")  # fmt: skip


_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
# Qwen2.5's chat layout, the part HunyuanVideo 1.5's pipeline uses (system + user + the
# assistant's opening); it formats prompts with apply_chat_template
_QWEN_CHAT = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
              "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # fmt: skip


def qwen_chat_tokenizer():
    """Qwen2.5's special tokens and chat template over UTF-8 bytes (HunyuanVideo 1.5's
    Qwen2.5-VL text encoder), in place of the real vocabulary."""
    tokenizer = _byte_tokenizer(_QWEN_SPECIALS, template="$A", max_length=LLAMA_POSITIONS, pad_token="<|endoftext|>",
                                eos_token="<|im_end|>", unk_token="<unk>")  # fmt: skip
    tokenizer.chat_template = _QWEN_CHAT
    return tokenizer


def hunyuan15_crop_start(pipe) -> int:
    """How many leading text-encoder outputs HunyuanVideo 1.5 should drop for ``pipe``'s
    tokenizer (its system prompt and the user turn's opening): the pipeline's own 108
    counts the real Qwen tokenizer's tokens."""
    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5 import format_text_input

    marker = "\x00"
    messages = format_text_input([marker], pipe.system_message)[0]
    text = pipe.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(pipe.tokenizer(text.split(marker, 1)[0])["input_ids"])


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
    elif kind == "framepack":
        from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_framepack import DEFAULT_PROMPT_TEMPLATE
    else:
        from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE
    template = DEFAULT_PROMPT_TEMPLATE["template"]
    prefix = template.split("{}", 1)[0]
    result: dict[str, Any] = {"template": template, "crop_start": len(tokenizer(prefix)["input_ids"])}
    if kind == "hunyuan-i2v":
        start = len(tokenizer(template.split("<image>", 1)[0])["input_ids"])
        result.update(image_emb_start=start, image_emb_end=start + CLIP_IMAGE_PATCHES,
                      image_emb_len=CLIP_IMAGE_PATCHES)  # fmt: skip
    return result
