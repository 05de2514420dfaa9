"""Peak memory of one FP8 transformer forward with two LoRAs: computed, and measured on a GPU.

    vidlora bench --only memory [--quick]

Issue 5's goal: peak memory of a Wan 2.1 T2V 14B forward at 832x480 x 81 frames with two
LoRAs <= 17 GB (I2V 14B <= 19 GB), "measured on a GPU or computed from the meta-device
parameter inventory plus activations and stated as computed". GB here is 10^9 bytes
(the stricter reading; GiB are given too).

**Computed** (any machine, rows say ``method: computed``): the transformer is built on the
meta device with its released config and the dtypes ``from_pretrained(torch_dtype=bf16)``
gives (diffusers' fp32 modules stay fp32), then ``vidlora.attach(fp8=True)`` quantizes it
and two rank-32 LoRAs over every block Linear are added, all on the meta device, so the
library itself lays out every byte (FP8 weights + per-channel scales, stacked adapters
padded to 16 ranks, block-diagonal B of the fused q/k/v). Weights = every parameter and
buffer of the patched model. Activations = the peak of live tensor storage during a real
forward of that model on meta tensors at the scenario's size, tracked op by op (a
TorchDispatchMode that adds each new storage's bytes and subtracts them when it dies), with
two CUDA behaviours modelled because the meta device would decompose them:

* attention as flash/cuDNN SDPA: output and logsumexp only, no S x S matrix (on meta,
  SDPA would fall back to the math path: 43 GB of scores at 32,760 tokens);
* RMSNorm as one fused kernel (torch >= 2.9 has a CUDA kernel for ``rms_norm``); the
  decomposed form (x.float(), pow, mean, rsqrt, mul: fp32 temporaries on the q/k norms,
  +0.34 GB on Wan 14B) is a second row without --quick, ``computed, rms_norm decomposed``.

The vidlora op's own temporary, the shrink output T [tokens, R] of the widest unit, is
added (the op is opaque to the tracker). Not counted: the CUDA context (~0.5 GB, outside
``max_memory_allocated``), allocator fragmentation (``max_memory_reserved`` - allocated),
cuBLAS workspaces (tens of MB).

**Measured** (CUDA, not --quick): the same model with random bf16 weights built on the GPU,
``attach(fp8=True)``, two random rank-32 LoRAs, then ``torch.cuda.max_memory_allocated``
over one forward (peak stats reset after attach) and ``max_memory_reserved``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .models import SCENARIOS, Scenario, block_linears, scenario_inputs
from .rows import RunContext, goal_row

__all__ = ["BENCHMARK", "GOALS_BYTES", "LiveBytes", "cuda_like_kernels", "computed_memory", "measured_memory", "run"]

BENCHMARK = "memory"
RANK = 32
N_LORAS = 2
GOALS_BYTES = {"wan2.1-14b-480p-81f": 17e9, "wan2.1-i2v-14b-480p-81f": 19e9}
_QUICK = ("wan2.1-14b-480p-81f", "wan2.1-i2v-14b-480p-81f")
_FULL = _QUICK + ("wan2.1-1.3b-480p-81f", "wan2.2-5b-704p-121f", "hunyuan-544p-33f")


class LiveBytes(TorchDispatchMode):
    """Peak bytes of tensor storage created while active and still alive.

    Each op's outputs are looked up by storage (views share their base's storage, so a
    view or an in-place result adds nothing); a storage leaves the count when its last reference dies (weak
    references, swept after every op). Tensors that existed before (weights, inputs) are
    not counted. Works on any device, meta included.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[int, StorageWeakRef]] = {}
        self.now = 0
        self.peak = 0
        self.peak_op: str | None = None
        self.peak_where: str | None = None
        self.peak_largest: list[int] = []
        self._tracker = None

    def __enter__(self):
        from torch.utils.module_tracker import ModuleTracker

        self._tracker = ModuleTracker()
        self._tracker.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        out = super().__exit__(*exc)
        self._tracker.__exit__(*exc)
        return out

    def _sweep(self) -> None:
        dead = [key for key, (_, ref) in self._live.items() if ref.expired()]
        for key in dead:
            self.now -= self._live.pop(key)[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._sweep()
        # an output sharing an input's storage is a view or an in-place result: no new
        # memory (and counting a view of a weight, e.g. the W^T of F.linear, would keep
        # the weight's whole size "alive" for the rest of the forward)
        inputs = {StorageWeakRef(t.untyped_storage()).cdata for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}  # fmt: skip
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                ref = StorageWeakRef(storage)
                if ref.cdata not in self._live and ref.cdata not in inputs:
                    self._live[ref.cdata] = (storage.nbytes(), ref)
                    self.now += storage.nbytes()
        if self.now > self.peak:
            self.peak = self.now
            self.peak_op = str(func)
            parents = sorted(p for p in self._tracker.parents if p != "Global")
            self.peak_where = max(parents, key=len) if parents else "Global"
            self.peak_largest = sorted((n for n, _ in self._live.values()), reverse=True)[:6]
        return out


def _flash_like_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """Memory of flash/cuDNN attention: the output and a per-row logsumexp, no scores."""
    lse = torch.empty(query.shape[:-1], dtype=torch.float32, device=query.device)
    out = torch.empty(*query.shape[:-1], value.shape[-1], dtype=query.dtype, device=query.device)
    del lse  # alive until the output exists, as in the kernel
    return out


def _fused_rms_norm(input, normalized_shape, weight=None, eps=None):
    """Memory of a fused RMSNorm kernel: output plus fp32 rstd per row."""
    rstd = torch.empty(input.shape[:-1], dtype=torch.float32, device=input.device)
    out = torch.empty_like(input)
    del rstd
    return out


@contextlib.contextmanager
def cuda_like_kernels(fused_rms_norm: bool = True):
    """Swap in flash-style SDPA (and a fused RMSNorm) for a meta-device forward."""
    saved = F.scaled_dot_product_attention, F.rms_norm
    F.scaled_dot_product_attention = _flash_like_sdpa
    if fused_rms_norm:
        F.rms_norm = _fused_rms_norm
    try:
        yield
    finally:
        F.scaled_dot_product_attention, F.rms_norm = saved


def _cast_like_pretrained(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    for name, p in model.named_parameters():
        if not keep.intersection(name.split(".")):
            p.data = p.data.to(dtype)
    return model


def _lora_file(model: torch.nn.Module, name: str, device: str | torch.device, random: bool):
    """A rank-32 LoRAFile over every block Linear (uninitialised on meta, random on a GPU)."""
    from vidlora.model import inventory
    from vidlora.lora.lora_file import LoRAFile, LowRank

    inv = inventory(model)
    make = torch.randn if random else torch.empty
    modules = {
        path: LowRank(
            down=make(RANK, k, device=device, dtype=torch.bfloat16) * (k**-0.5 if random else 1),
            up=make(n, RANK, device=device, dtype=torch.bfloat16) * (0.01 if random else 1),
            alpha=None, scale=1.0,
        )  # fmt: skip
        for path, (k, n) in block_linears(model).items()
    }
    return LoRAFile(path=f"/virtual/{name}.safetensors", scheme="benchmark", arch=inv.arch, family=inv.family,
                    width=inv.width, modules=modules)  # fmt: skip


def _attach_two_loras(model: torch.nn.Module, device, random: bool):
    import vidlora

    loras = [_lora_file(model, f"lora{i}", device, random) for i in range(N_LORAS)]  # from the unpatched model
    h = vidlora.attach(model, fp8=True)
    for lora in loras:
        h.add(lora, name=lora.name)
    return h


def _tensor_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def _input_bytes(inputs: dict[str, Any]) -> int:
    return sum(v.numel() * v.element_size() for v in inputs.values() if isinstance(v, torch.Tensor))


def computed_memory(scenario: Scenario, fused_rms_norm: bool = True) -> dict[str, Any]:
    """Bytes of weights, adapters, inputs and the activation peak of one meta forward."""
    from vidlora.model import meta_transformer
    from vidlora.runtime.unit import LoRALinear

    model = _cast_like_pretrained(meta_transformer(scenario.config), torch.bfloat16)
    h = _attach_two_loras(model, "meta", random=False)
    report = h.report()["models"]["transformer"]
    units = [m for m in model.modules() if isinstance(m, LoRALinear)]
    # the op's one temporary: T = x A^T for the widest stack, at the video token count
    t_bytes = max(u.lora_a.shape[0] for u in units) * scenario.tokens * 2
    inputs = scenario_inputs(scenario, device="meta")
    tracker = LiveBytes()
    with torch.no_grad(), cuda_like_kernels(fused_rms_norm), tracker:
        model(**inputs)
    weights = _tensor_bytes(model)
    total = weights + _input_bytes(inputs) + tracker.peak + t_bytes
    return {
        "total_bytes": total, "weights_bytes": weights, "base_fp8_bytes": report["base_bytes"],
        "adapter_bytes": report["adapter_bytes"], "other_weights_bytes": weights - report["base_bytes"] - report["adapter_bytes"],
        "input_bytes": _input_bytes(inputs), "activation_peak_bytes": tracker.peak, "lora_temp_bytes": t_bytes,
        "peak_op": tracker.peak_op, "peak_where": tracker.peak_where,
        "peak_largest_mb": [round(n / 1e6, 1) for n in tracker.peak_largest],
        "rms_norm": "fused (CUDA kernel)" if fused_rms_norm else "decomposed",
    }  # fmt: skip


def measured_memory(scenario: Scenario) -> dict[str, Any]:
    """torch.cuda.max_memory_allocated over one forward of the FP8 model with two LoRAs."""
    from .models import random_transformer

    model = random_transformer(scenario.config, device="cuda")
    _attach_two_loras(model, "cuda", random=True)
    inputs = scenario_inputs(scenario, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with torch.no_grad():
        model(**inputs)
    torch.cuda.synchronize()
    out = {
        "total_bytes": torch.cuda.max_memory_allocated(), "weights_bytes": _tensor_bytes(model),
        "allocated_before_bytes": before, "reserved_peak_bytes": torch.cuda.max_memory_reserved(),
    }  # fmt: skip
    del model, inputs
    torch.cuda.empty_cache()
    return out


def _row(ctx: RunContext, scenario: Scenario, method: str, numbers: dict[str, Any]) -> dict[str, Any]:
    return ctx.row(
        BENCHMARK, scenario.name, method, "peak_bytes", numbers["total_bytes"], "bytes",
        scenario=scenario.label, tokens=scenario.tokens, fp8="w8a16 (attach(fp8=True))",
        loras=f"{N_LORAS} x rank {RANK} on all block Linears", total_gb=numbers["total_bytes"] / 1e9,
        total_gib=numbers["total_bytes"] / 2**30, **numbers,
    )  # fmt: skip


def run(ctx: RunContext) -> Iterator[dict[str, Any]]:
    """Computed rows for the goal scenarios (all five without --quick), measured on CUDA."""
    for name in _QUICK if ctx.quick else _FULL:
        scenario = SCENARIOS[name]
        main = _row(ctx, scenario, "computed", computed_memory(scenario))
        yield main
        if not ctx.quick:
            yield _row(ctx, scenario, "computed, rms_norm decomposed", computed_memory(scenario, fused_rms_norm=False))
        goal = GOALS_BYTES.get(name)
        if goal is not None:
            yield goal_row(main, f"{scenario.label}, FP8 + 2 LoRAs: peak <= {goal / 1e9:g} GB (issue 5), computed",
                           goal, key="value")  # fmt: skip
        if ctx.device == "cuda" and not ctx.quick and ctx.time_left() < 60:
            yield ctx.skipped(BENCHMARK, name, f"measured: time budget, {ctx.time_left():.0f} s left")
        elif ctx.device == "cuda" and not ctx.quick:
            measured = _row(ctx, scenario, "measured", measured_memory(scenario))
            yield measured
            if goal is not None:
                yield goal_row(measured, f"{scenario.label}, FP8 + 2 LoRAs: peak <= {goal / 1e9:g} GB (issue 5), "
                               "measured", goal, key="value")  # fmt: skip
