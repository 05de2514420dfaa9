"""``extract_lora``: a LoRA from the difference of two checkpoints of one family.

    report = extract_lora("Wan2.1-T2V-14B-Diffusers", "distilled.safetensors", "distill_lora.safetensors", rank=32)

Streamed tensor by tensor (checkpoints.py): for each Linear, base and tuned weights are
read (fp32, fp8 dequantized), dW = tuned - base, and a randomized SVD (Halko et al.: a
Gaussian sketch of rank + 8 columns, two power iterations, an exact SVD of the small
projection) gives dW ~ U S V^T; the LoRA is B = U S^1/2, A = S^1/2 V^T with alpha = rank
(scale 1). Peak memory is one Linear's pair and its delta (Wan 14B FFN: 3 x 283 MB in
fp32), never a model. A fused original Linear (Hunyuan qkv / linear1 in a Tencent or
ComfyUI checkpoint) is extracted as the one Linear it is there (one A for its pieces).

Each module's error is measured on what is written (the factors as stored):
||dW - B A||_F / ||dW||_F, computed in row blocks. ``include_diff`` also stores the exact
differences of norms, biases, modulation tables and the patch embedding (diff / diff_b /
diff_m). The report keeps every unit's time, so the time for a larger pair (Wan 14B) is
projected from measured per-layer times (``ExtractReport.projected_seconds``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import torch

from vidlora.common.progress import progress_bar
from vidlora.errors import VidloraError
from vidlora.model import spec_for_arch

from ..lora_file import LoRAFile, LowRank
from .checkpoints import Checkpoint, open_checkpoints
from .convert import write_parts
from .output import check_destinations
from .targets import TARGETS

__all__ = ["extract_lora", "ExtractReport", "randomized_svd"]

_OVERSAMPLE = 8
_POWER_ITERS = 2
_ROW_BLOCK = 1024  # rows per block of the error computation (Wan 14B FFN: 1024 x 13824 fp32 = 57 MB)


def randomized_svd(a: torch.Tensor, rank: int, generator: torch.Generator | None = None):
    """(U [m, k], S [k], Vt [k, n]) with k = min(rank, m, n): a Gaussian sketch of
    rank + 8 columns, two power iterations (re-orthonormalized), SVD of Q^T a. Exact SVD
    when the sketch would cover the smaller side anyway."""
    m, n = a.shape
    k = min(rank, m, n)
    width = k + _OVERSAMPLE
    if width >= min(m, n):
        u, s, vt = torch.linalg.svd(a, full_matrices=False)
        return u[:, :k], s[:k], vt[:k]
    omega = torch.randn(n, width, generator=generator, dtype=torch.float32).to(device=a.device, dtype=a.dtype)
    q, _ = torch.linalg.qr(a @ omega)
    for _ in range(_POWER_ITERS):
        z, _ = torch.linalg.qr(a.T @ q)
        q, _ = torch.linalg.qr(a @ z)
    # the SVD of the wide [width, n] projection through its QR: LAPACK's SVD of a 16 x 4096
    # matrix takes 93 ms here, QR + the 16 x 16 SVD 2.7 ms
    qb, rb = torch.linalg.qr((q.T @ a).T)
    ur, s, vrt = torch.linalg.svd(rb.T)
    return (q @ ur[:, :k]), s[:k], (vrt[:k] @ qb.T)


@dataclass
class ExtractReport:
    """What extraction wrote, the relative error per module, the per-unit timings (stored
    elements, seconds) and the Linears that were identical (skipped)."""

    outputs: list[str]
    rank: int
    errors: dict[str, float] = field(default_factory=dict)
    timings: list[tuple[int, float]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    diffs: int = 0
    not_compared: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(t for _, t in self.timings)

    def seconds_per_element(self) -> float:
        """Measured seconds per stored weight over every factored Linear: reading both
        checkpoints, subtracting, the sketch and the error all scale with N x K."""
        elements = sum(e for e, _ in self.timings)
        return self.seconds / elements if elements else 0.0

    def projected_seconds(self, config: str | dict = "wan2.1-t2v-14b") -> float:
        """Projected extraction time for a pair of the model ``config`` (a real-config name or
        a transformer config): each of its Linears takes the mean measured time of the Linears of its size
        in this run when there were any (a real-shape block measures the 14B shapes
        themselves), else its size times the measured seconds per weight."""
        from vidlora.model import meta_transformer

        by_size: dict[int, list[float]] = {}
        for e, t in self.timings:
            by_size.setdefault(e, []).append(t)
        rate = self.seconds_per_element()
        total = 0.0
        for _, mod in meta_transformer(config).named_modules():
            if isinstance(mod, torch.nn.Linear):
                n = mod.in_features * mod.out_features
                total += sum(by_size[n]) / len(by_size[n]) if n in by_size else rate * n
        return total

    def __str__(self) -> str:
        mean = sum(self.errors.values()) / len(self.errors) if self.errors else 0.0
        worst = sorted(self.errors.items(), key=lambda kv: -kv[1])[:10]
        lines = [f"wrote {', '.join(self.outputs)}: {len(self.errors)} modules at rank {self.rank}, {self.diffs} "
                 f"full-tensor diffs, {len(self.unchanged)} identical Linears skipped, {self.seconds:.1f} s"]  # fmt: skip
        lines.append(f"  relative error per module: mean {mean:.3%}; worst:")
        lines += [f"    {name}: {err:.3%}" for name, err in worst]
        if self.not_compared:
            lines.append(f"  {len(self.not_compared)} tensors in one checkpoint only (not compared), e.g. "
                         f"{self.not_compared[0]}")  # fmt: skip
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _units(base: Checkpoint, tuned: Checkpoint) -> tuple[list[list[str]], list[str], list[str]]:
    """(Linear groups to factor, other parameters, keys only one side has). A group is the
    canonical Linears stored in one tuned tensor (the pieces of a fused original)."""
    common = [p for p in tuned.entries if p in base.entries]
    missing = sorted(set(tuned.entries) ^ set(base.entries))
    by_source: dict[tuple[str, str], list[str]] = {}
    others = []
    for p in common:
        e, b = tuned.entries[p], base.entries[p]
        if e.shape != b.shape:
            raise VidloraError(f"{p}: base {b.shape} vs tuned {e.shape}; the checkpoints are not one model family/size")
        if p.endswith(".weight") and len(e.shape) == 2:
            by_source.setdefault(e.source, []).append(p)
        else:
            others.append(p)
    return list(by_source.values()), others, missing


def _factor(dw: torch.Tensor, rank: int, dtype: torch.dtype, gen: torch.Generator):
    u, s, vt = randomized_svd(dw, rank, gen)
    root = s.sqrt()
    up = (u * root).to(dtype)
    down = (root[:, None] * vt).to(dtype)
    return down, up


def _error(dw: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> float:
    """||dW - B A|| / ||dW|| with the stored factors, in row blocks (no second full copy)."""
    down = down.float()
    err2, ref2 = 0.0, 0.0
    for i in range(0, dw.shape[0], _ROW_BLOCK):
        block = dw[i : i + _ROW_BLOCK]
        residual = torch.addmm(block, up[i : i + _ROW_BLOCK].float(), down, alpha=-1.0)  # one temporary block
        err2 += float(torch.linalg.norm(residual) ** 2)
        ref2 += float(torch.linalg.norm(block) ** 2)
    return math.sqrt(err2 / ref2) if ref2 > 0 else 0.0


def _extract_part(base: Checkpoint, tuned: Checkpoint, rank: int, include_diff: bool, dtype, device, report,
                  tag: str, progress: bool) -> LoRAFile:  # fmt: skip
    spec = spec_for_arch(tuned.arch)
    groups, others, missing = _units(base, tuned)
    report.not_compared += [tag + m for m in missing]
    gen = torch.Generator().manual_seed(0)
    modules: dict[str, LowRank] = {}
    deltas: dict[str, torch.Tensor] = {}
    width = 0
    with progress_bar(f"extract {os.path.basename(tuned.path)}{' ' + tag if tag else ''}", len(groups),
                      enabled=progress) as advance:  # fmt: skip
        for group in groups:
            start = time.perf_counter()
            pieces, same = [], True
            for p in group:
                raw_t, raw_b = tuned.stored(p), base.stored(p)
                # identical bytes (most Linears of a LoRA-style fine-tune): no conversion at all
                if tuned.same_storage(base, p) and torch.equal(raw_t, raw_b):
                    pieces.append(None)
                    continue
                same = False
                d = tuned.to_float(p, raw_t, device)
                del raw_t
                d.sub_(base.to_float(p, raw_b, device))  # in place: one fp32 copy of the Linear, not three
                del raw_b
                pieces.append(d)
            if not same:
                pieces = [d if d is not None else torch.zeros(tuned.entries[p].shape, device=device)
                          for d, p in zip(pieces, group)]  # fmt: skip
                dw = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
            del pieces
            if same or not bool(dw.any()):
                report.unchanged += [tag + p[: -len(".weight")] for p in group]
            else:
                down, up = _factor(dw, rank, dtype, gen)
                row = 0
                for p in group:
                    n = tuned.entries[p].shape[0]
                    name = p[: -len(".weight")]
                    piece_up = up[row : row + n].contiguous()
                    report.errors[tag + name] = _error(dw[row : row + n], piece_up, down)
                    modules[name] = LowRank(down=down, up=piece_up, alpha=float(down.shape[0]), scale=1.0)
                    side = spec.width_side(name)
                    if side is not None and not width:
                        width = tuned.entries[p].shape[1] if side[1] == "in" else n
                    row += n
            dw = None
            report.timings.append((sum(math.prod(tuned.entries[p].shape) for p in group), time.perf_counter() - start))
            advance()
    if include_diff:
        for p in others:
            d = tuned.load(p) - base.load(p)
            if bool(d.any()):
                deltas[p] = d.to(dtype)
                report.diffs += 1
    family = spec.family_for_width(width) if width else spec.name
    return LoRAFile(path=tuned.path, scheme=f"extracted ({tuned.naming} names)", arch=tuned.arch, family=family,
                    width=width, modules=modules, deltas=deltas, dtype=dtype)  # fmt: skip


def extract_lora(
    base: str | os.PathLike,
    tuned: str | os.PathLike,
    dst: str | os.PathLike,
    rank: int = 32,
    *,
    to: str = "comfyui",
    include_diff: bool = False,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    experts: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ExtractReport:
    """Extract a rank-``rank`` LoRA (alpha = rank) of ``tuned`` - ``base`` into ``dst``.

    base / tuned: a diffusers pipeline folder, a transformer folder or a single-file
        checkpoint (original or diffusers names; bf16/fp16/fp32/fp8, fp8-scaled), of one
        family and size. A Wan 2.2 A14B pipeline pair gives both experts.
    to: the naming written (default comfyui, as kijai's and LightX2V's extractions).
    include_diff: also store exact diff / diff_b / diff_m for norms, biases, modulation
        tables and the patch embedding.
    dtype: of the stored factors. device: where the SVDs run ("cuda" when there is one).
    experts: as in convert_lora. progress: show a progress bar.
    """
    dst = os.fspath(dst)
    if not isinstance(rank, int) or rank <= 0:
        raise VidloraError(f"rank must be a positive integer; got {rank!r}")
    if to not in TARGETS:
        raise VidloraError(f"unknown target naming {to!r}; expected one of {', '.join(TARGETS)}")
    check_destinations([dst], overwrite, [os.fspath(base), os.fspath(tuned)])
    bases, tuneds = open_checkpoints(base), open_checkpoints(tuned)
    if set(bases) != set(tuneds):
        raise VidloraError(f"{base} and {tuned} hold different experts ({sorted(map(str, bases))} vs "
                           f"{sorted(map(str, tuneds))})")  # fmt: skip
    report = ExtractReport(outputs=[], rank=rank)
    parts: dict[str | None, LoRAFile] = {}
    for expert in tuneds:
        b, t = bases[expert], tuneds[expert]
        if b.arch != t.arch:
            raise VidloraError(f"{b.path} is {b.arch}, {t.path} is {t.arch}: extract needs one family")
        tag = f"{expert}: " if expert else ""
        parts[expert] = _extract_part(b, t, rank, include_diff, dtype, device, report, tag, progress)
        b.close()
        t.close()
    if not any(p.modules or p.deltas for p in parts.values()):
        raise VidloraError(f"{tuned} and {base} are identical: nothing to extract")
    meta = {
        "vidlora.tool": "extract",
        "vidlora.extract_base": os.path.basename(os.path.normpath(os.fspath(base))),
        "vidlora.extract_tuned": os.path.basename(os.path.normpath(os.fspath(tuned))),
        "vidlora.rank": str(rank),
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(rank),
    }
    written, renders, _ = write_parts(parts, dst, to, meta, split=None if experts is None else experts == "split",
                                   drop_unsupported=False, overwrite=overwrite, dtype=dtype, inv=None)  # fmt: skip
    report.outputs = written
    report.notes = [n for r in renders for n in r.notes]
    return report
