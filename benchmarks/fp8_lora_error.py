"""How much of a LoRA survives an FP8 base: vidlora (unmerged) vs merge-then-requantize.

    python -m benchmarks.fp8_lora_error [--out DIR] [--strengths 0.25 0.5 1.0]

On a tiny Wan (fp32, CPU) with a LoRA whose delta is ~2% of each weight (the size of a
typical style/motion LoRA), for each strength s it measures the *LoRA effect*, i.e. the
model output with the LoRA minus the output without it, and its relative error against
the fp32 reference's effect (the exact model W + s*dW):

* ``vidlora``: attach(fp8=True): W stays FP8 (per-channel e4m3), the LoRA runs unmerged in
  the compute dtype; effect = fp8 model with LoRA - the same fp8 model without it.
* ``merge_rtn``: W + s*dW merged in high precision, then re-quantized to e4m3 with
  round-to-nearest (what a merge into an FP8 checkpoint does); effect against the
  requantized base.
* ``merge_sr``: the same with stochastic rounding (ComfyUI's softening of the problem).

e4m3 keeps 3 mantissa bits: a weight's rounding step is 6-12% of its magnitude, so a 2%
delta falls inside one step for most weights and round-to-nearest drops it; stochastic
rounding keeps it only on average, adding noise of the size of the step.

Rows go to benchmarks/results/fp8_lora_error-cpu-<UTC>.jsonl (every row carries the
environment); a markdown table is printed.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

from vidlora.kernels.fp8_format import E4M3_MAX as _E4M3_MAX, FP8_DTYPE, MIN_SCALE

from .harness import environment, result_row, results_path, write_rows

__all__ = ["quantize_rtn", "quantize_stochastic", "lora_effect_errors", "main"]

KIND = "wan-t2v"


def _per_channel_scale(w: torch.Tensor) -> torch.Tensor:
    return (w.abs().amax(dim=1).float() / _E4M3_MAX).clamp_min(MIN_SCALE)


def quantize_rtn(w: torch.Tensor) -> torch.Tensor:
    """W -> dequantized per-channel e4m3 with round-to-nearest (fp32 result)."""
    s = _per_channel_scale(w)
    return (w.float() / s[:, None]).clamp(-_E4M3_MAX, _E4M3_MAX).to(FP8_DTYPE).float() * s[:, None]


def quantize_stochastic(w: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """W -> dequantized per-channel e4m3 with stochastic rounding: each value rounds to
    one of its two e4m3 neighbours with probability proportional to its distance from
    the other, so the expected value is exact."""
    s = _per_channel_scale(w)
    v = (w.float() / s[:, None]).clamp(-_E4M3_MAX, _E4M3_MAX)
    q = v.to(FP8_DTYPE)
    qf = q.float()
    # e4m3fn bit patterns order magnitudes monotonically (0x00..0x7E; 0x7F is NaN), so the
    # other neighbour is one magnitude step toward zero when RTN rounded away from it,
    # else one step away from zero (capped at 448)
    mag = (q.view(torch.uint8) & 0x7F).to(torch.int16)
    other_mag = torch.where(qf.abs() > v.abs(), mag - 1, (mag + 1).clamp(max=0x7E))
    sign = (v < 0).to(torch.int16) * 0x80
    other = (sign | other_mag).to(torch.uint8).view(FP8_DTYPE).float()
    gap = (other - qf).abs()
    p = torch.where(gap > 0, (v - qf).abs() / gap.clamp_min(1e-30), torch.zeros_like(v))
    take_other = torch.rand(v.shape, generator=generator) < p
    return torch.where(take_other, other, qf) * s[:, None]


def _run(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0].double()


def _small_lora(model, seed: int, frac: float):
    """A rank-16 LoRA on every block Linear with ||s=1 delta|| = frac * ||W|| per layer."""
    from vidlora.model import block_linear_paths, inventory
    from vidlora.lora.lora_file import LoRAFile, LowRank

    inv = inventory(model)
    gen = torch.Generator().manual_seed(seed)
    modules = {}
    for path in block_linear_paths(inv):
        w = model.get_submodule(path).weight.detach().float()
        down = torch.randn(16, w.shape[1], generator=gen)
        up = torch.randn(w.shape[0], 16, generator=gen)
        scale = frac * w.norm() / (up @ down).norm()
        modules[path] = LowRank(down=down, up=up, alpha=None, scale=float(scale))
    return LoRAFile(path="/virtual/small.safetensors", scheme="benchmark", arch=inv.arch, family=inv.family,
                    width=inv.width, modules=modules)


def _merged(model, lora, strength: float, quant=None):
    m = copy.deepcopy(model)
    with torch.no_grad():
        for path, lr in lora.modules.items():
            lin = m.get_submodule(path)
            w = lin.weight.float() + strength * lr.delta_weight()
            lin.weight.copy_(quant(w) if quant is not None else w)
    return m


def _requantized_base(model, quant):
    from vidlora.model import block_linear_paths, inventory

    m = copy.deepcopy(model)
    with torch.no_grad():
        for path in block_linear_paths(inventory(model)):
            lin = m.get_submodule(path)
            lin.weight.copy_(quant(lin.weight.float()))
    return m


def lora_effect_errors(strengths=(0.25, 0.5, 1.0), seed: int = 0, frac: float = 0.02, mode: str = "w8a16") -> list[dict]:
    """[{strength, method, rel_error, effect_norm}] for vidlora, merge_rtn and merge_sr."""
    import vidlora
    from vidlora.app.tiny import tiny_transformer, tiny_transformer_inputs

    base_model = tiny_transformer(KIND, seed=seed)
    inputs = tiny_transformer_inputs(KIND, seed=seed + 1)
    lora = _small_lora(base_model, seed + 2, frac)
    y_base = _run(base_model, inputs)

    fp8_model = copy.deepcopy(base_model)
    h = vidlora.attach(fp8_model, fp8=mode)
    y_fp8 = _run(fp8_model, inputs)
    h.add(lora, name="small", weight=0.0)

    rtn_base = _run(_requantized_base(base_model, quantize_rtn), inputs)
    out = []
    for s in strengths:
        ref_effect = _run(_merged(base_model, lora, s), inputs) - y_base
        h.set_weight("small", s)
        effects = {"vidlora": _run(fp8_model, inputs) - y_fp8}
        effects["merge_rtn"] = _run(_merged(base_model, lora, s, quantize_rtn), inputs) - rtn_base
        gen = torch.Generator().manual_seed(seed + 3)
        sr = lambda w: quantize_stochastic(w, gen)  # noqa: E731
        sr_base = _run(_requantized_base(base_model, sr), inputs)
        effects["merge_sr"] = _run(_merged(base_model, lora, s, sr), inputs) - sr_base
        for method, eff in effects.items():
            err = float((eff - ref_effect).norm() / ref_effect.norm())
            out.append({"strength": s, "method": method, "rel_error": err, "effect_norm": float(ref_effect.norm())})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fp8_lora_error", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--strengths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--mode", choices=["w8a16", "w8a8"], default="w8a16")
    args = p.parse_args(argv)
    env = environment("cpu")
    rows = [
        result_row("fp8_lora_error", env, model=f"tiny {KIND} fp32", delta_frac=0.02, fp8_mode=args.mode, **r)
        for r in lora_effect_errors(tuple(args.strengths), mode=args.mode)
    ]
    path = write_rows(rows, results_path("fp8_lora_error", "cpu", args.out))
    print("| strength | vidlora unmerged | merge + requant (RTN) | merge + requant (stochastic) |")
    print("|---|---|---|---|")
    for s in args.strengths:
        cell = {r["method"]: r["rel_error"] for r in rows if r["strength"] == s}
        print(f"| {s:g} | {cell['vidlora']:.1%} | {cell['merge_rtn']:.1%} | {cell['merge_sr']:.1%} |")
    print(f"LoRA-effect error vs the fp32 reference (tiny {KIND}, LoRA delta 2% of W); rows: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
