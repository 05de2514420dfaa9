"""The ``step`` phase of the first GPU run: the headline, one Wan 14B transformer step.

Wan 2.1 T2V 14B's transformer config (diffusers ``WanTransformer3DModel``; the same numbers
as vidlora's built-in config, restated here because a benchmark may use only vidlora's
top-level names), random bf16 weights built on the GPU, one denoising step at 480 x 832 x
81 frames (latent 1 x 16 x 21 x 60 x 104 = 32,760 tokens, 512 text tokens). Configurations,
each timed (median of 3 after one warm-up, CUDA events) with the previous one undone:
stock diffusers; ``vidlora.attach`` with no adapter; one rank-32 LoRA; three stacked
(random files over every block Linear in the diffusers/PEFT key scheme, non-zero B).
Dry run: a 2-block, 2-head Wan of width 24 on the CPU, 2 x 8 x 8 latent.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from .first_run_record import Recorder

__all__ = ["WAN14B", "phase_step"]

WAN14B = dict(patch_size=[1, 2, 2], attention_head_dim=128, in_channels=16, out_channels=16, text_dim=4096,
              freq_dim=256, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None,
              added_kv_proj_dim=None, rope_max_seq_len=1024, num_attention_heads=40, num_layers=40, ffn_dim=13824)  # fmt: skip
_TINY = dict(WAN14B, attention_head_dim=12, num_attention_heads=2, num_layers=2, ffn_dim=32, text_dim=16, freq_dim=16)
_BLOCK_LINEARS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                  "attn2.to_v", "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2")  # fmt: skip


def _lora_file(path: Path, model: torch.nn.Module, rank: int, seed: int) -> str:
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.startswith("blocks.") and name.split(".", 2)[2] in _BLOCK_LINEARS:
            k, n = mod.in_features, mod.out_features
            tensors[f"transformer.{name}.lora_A.weight"] = (torch.randn(rank, k, generator=gen) * k**-0.5).bfloat16()
            tensors[f"transformer.{name}.lora_B.weight"] = (torch.randn(n, rank, generator=gen) * 0.1 * rank**-0.5).bfloat16()
    save_file(tensors, str(path))
    return str(path)


def _time(fn, device: torch.device, reps: int = 3) -> float:
    fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def phase_step(rec: Recorder, dry_run: bool, quick: bool) -> None:
    import diffusers

    import vidlora

    device = torch.device("cpu" if dry_run else "cuda")
    cfg = _TINY if dry_run else WAN14B
    latent = (1, 16, 2, 8, 8) if dry_run else (1, 16, 21, 60, 104)
    text = 8 if dry_run else 512
    rec.running("step.build")
    with torch.device(device):
        torch.manual_seed(0)
        model = diffusers.WanTransformer3DModel(**cfg).to(torch.bfloat16).eval().requires_grad_(False)
    g = torch.Generator(device=device).manual_seed(1)
    inputs = dict(hidden_states=torch.randn(latent, generator=g, device=device).bfloat16(),
                  timestep=torch.tensor([500], device=device),
                  encoder_hidden_states=torch.randn(1, text, cfg["text_dim"], generator=g, device=device).bfloat16(),
                  return_dict=False)  # fmt: skip
    tokens = latent[2] * (latent[3] // 2) * (latent[4] // 2)
    base = {"model": "wan2.1-t2v-14b" if not dry_run else "tiny wan", "tokens": tokens, "diffusers": diffusers.__version__}

    def run():
        with torch.inference_mode():
            return model(**inputs)[0]

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = [_lora_file(Path(tmp) / f"lora{i}.safetensors", model, 32, i) for i in range(3)]
        for case, setup in (("stock", None), ("vidlora.none", 0), ("vidlora.1lora", 1), ("vidlora.3lora", 3)):
            cid = f"step.{case}"
            if rec.skip(cid):
                continue
            rec.running(cid)
            h = None
            try:
                if setup is not None:
                    h = vidlora.attach(model)
                    for i in range(setup):
                        h.add(files[i], name=f"lora{i}", weight=1.0)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                ms = _time(run, device, 1 if quick else 3)
                peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
                results[case] = ms
                extra = {"ratio_vs_stock": ms / results["stock"]} if "stock" in results and case != "stock" else {}
                rec.emit(cid, True, ms=ms, peak_gb=peak, loras=setup or 0, **extra, **base)
            except Exception as e:  # noqa: BLE001 - recorded; the next configuration runs
                rec.emit(cid, False, error=f"{type(e).__name__}: {e}"[:400], **base)
            finally:
                if h is not None:
                    h.detach()
