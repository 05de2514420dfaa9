"""A canonical LoRA (diffusers paths) -> the tensors of one target naming, exactly.

Rules (notes/lora-formats.md §1.1, §3.3):

* the scale is kept: a module's ``.alpha`` is written as the file had it when alpha / r
  is its scale, else as scale * r (rsLoRA files); "bake" namings multiply the scale into
  B, "metadata" namings put alpha into the PEFT config (lora_alpha / alpha_pattern);
* a diffusers piece of a fused original (Hunyuan ``img_attn_qkv`` = to_q / to_k / to_v;
  ``linear1`` = to_q / to_k / to_v / proj_mlp) is fused back. When every piece is present
  with the same A and scale (a file that was fused to begin with), the fused LoRA is
  that A with the B pieces stacked by rows: exact, no growth. Otherwise it is exact only as
  A = [A_1; ...; A_n] and a block-diagonal B with each piece's scale baked in (alpha =
  the total rank, scale 1): the module's rank is the sum of the pieces' ranks, and a
  note says so. It is never SVD'd back to the original rank;
* the final layer's "swap" rule trades the two row halves of B (and of its deltas) back;
* full-tensor deltas become ``diff`` / ``diff_b`` (fused pieces concatenated by rows,
  missing pieces zero), parameter tables ``diff_m`` or ``<param>.diff``; the diffusers
  naming only has ``lora_B.bias`` (a bias delta on a module with a LoRA). Whatever has no
  name in the target is listed: an error, or dropped and reported with ``drop_unsupported``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

import torch

from vidlora.errors import VidloraError
from vidlora.model import FamilySpec, spec_for_arch

from ..alpha_rules import scale_for
from ..lora_file import LoRAFile, LowRank
from ..factored import FactoredDelta
from .lycoris_out import join_pieces, lycoris_tensors
from .naming import Place, module_place, param_place
from .targets import Naming

__all__ = ["Rendered", "render", "UnsupportedError"]


class UnsupportedError(VidloraError):
    """Entries of a LoRA that the target naming has no name for."""


@dataclass
class Rendered:
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    peft: dict | None = None  # the PEFT LoraConfig of a "metadata" / "peft" naming
    peft_prefix: str = "transformer"  # diffusers prefixes its config keys with the component
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (canonical name, why)
    notes: list[str] = field(default_factory=list)


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _alpha_out(low: LowRank) -> float | None:
    """The alpha that keeps the module's scale: the file's own when alpha / r is the scale,
    None for scale 1 without one, else scale * r (rsLoRA: alpha / sqrt(r) in the source)."""
    if low.alpha not in (None, 0.0) and math.isclose(scale_for(low.alpha, low.rank), low.scale, rel_tol=1e-12):
        return float(low.alpha)
    if low.scale == 1.0:
        return None
    return low.scale * low.rank


def _nice(x: float) -> float:
    return float(f"{x:.12g}")  # alpha = scale x rank without the last-ulp noise


def _swap(t: torch.Tensor) -> torch.Tensor:
    half = t.shape[0] // 2
    return torch.cat([t[half:], t[:half]])


class _Renderer:
    def __init__(self, part: LoRAFile, naming: Naming, prefix: str, shapes: dict[str, tuple[int, ...]] | None):
        self.part, self.naming, self.prefix = part, naming, prefix
        self.spec: FamilySpec = spec_for_arch(part.arch)
        self.shapes = shapes or {}  # model parameter path -> shape, when a model was given
        self.out = Rendered()
        self.unsupported: list[tuple[str, str]] = []
        self._alphas: dict[str, float] = {}
        self._ranks: dict[str, int] = {}
        self._pending: list[tuple[str, torch.Tensor, torch.Tensor, float | None, float]] = []

    # ------------------------------------------------------------------ keys
    def _name(self, original: str) -> str:
        return original.replace(".", "_") if self.naming.names == "underscored" else original

    def _put(self, key: str, t: torch.Tensor) -> None:
        key = self.prefix + key
        if key in self.out.tensors:
            raise VidloraError(f"two entries would be written as {key!r}")
        self.out.tensors[key] = t

    def _lora(self, name: str, down: torch.Tensor, up: torch.Tensor, alpha: float | None, scale: float) -> None:
        """One LoRA module in an original naming (alpha: the value to write, scale: its effect);
        written by :meth:`flush`, once a "peft" naming knows its one lora_alpha."""
        self._pending.append((name, down, up, alpha, scale))

    def flush(self) -> None:
        mode = self.naming.alpha
        common = None
        if mode == "peft" and self._pending:
            # one lora_alpha for the file: the most common alpha (scale x rank); the modules
            # with another scale get the ratio multiplied into B
            common = Counter(_nice(scale * down.shape[0]) for _, down, _, _, scale in self._pending).most_common(1)[0][0]
            ranks = Counter(int(down.shape[0]) for _, down, _, _, _ in self._pending)
            self.out.peft, self.out.peft_prefix = {"r": ranks.most_common(1)[0][0], "lora_alpha": common,
                                                   "use_rslora": False, "use_dora": False, "lora_dropout": 0.0,
                                                   "bias": "none"}, ""  # fmt: skip
        for name, down, up, alpha, scale in self._pending:
            if mode == "bake":
                up, alpha = (up if scale == 1.0 else up.float() * scale).to(up.dtype), None
            elif mode == "peft":
                ratio = scale / (common / down.shape[0])
                up, alpha = (up if ratio == 1.0 else up.float() * ratio).to(up.dtype), None
            elif mode == "always" and alpha is None:
                alpha = float(down.shape[0])
            self._put(name + self.naming.down, down)
            self._put(name + self.naming.up, up)
            if alpha is not None:
                self._put(name + ".alpha", torch.tensor(float(alpha)))
        self._pending = []

    # ------------------------------------------------------------------ piece sizes
    def _rows_of(self, path: str) -> int | None:
        """Output rows of a diffusers Linear: the model's, else the file's own entries for it
        or for the same Linear of another block."""
        if f"{path}.weight" in self.shapes:
            return int(self.shapes[f"{path}.weight"][0])
        candidates = [path]
        block = self.spec.split_block(path)
        if block is not None:
            group, _, inner = block
            candidates += [m for m in self.part.modules if m.startswith(group.path + ".") and m.endswith("." + inner)
                           and self.spec.split_block(m)[2] == inner]  # fmt: skip
            candidates += [d.rpartition(".")[0] for d in self.part.deltas if d.startswith(group.path + ".")
                           and d.rpartition(".")[0].endswith("." + inner)]  # fmt: skip
        for c in candidates:
            if c in self.part.modules:
                return self.part.modules[c].out_features
            for suffix in (".weight", ".bias"):
                if c + suffix in self.part.deltas:
                    return int(self.part.deltas[c + suffix].shape[0])
        return None

    def _piece_rows(self, place: Place, present: dict[int, int]) -> list[int] | None:
        rows = []
        for i, sibling in enumerate(place.siblings):
            n = present.get(i)
            if n is None:
                n = self._rows_of(sibling)
            if n is None and place.split == "equal" and present:
                n = next(iter(present.values()))
            if n is None and place.split == "linear1" and i < 3 and self.part.width:
                n = self.part.width
            if n is None:
                return None
            rows.append(n)
        return rows

    # ------------------------------------------------------------------ low rank
    def low_rank(self) -> None:
        fused: dict[str, dict[int, tuple[str, LowRank]]] = {}
        places: dict[str, Place] = {}
        for path in sorted(self.part.modules, key=_natural):
            low = self.part.modules[path]
            if self.naming.names == "diffusers":
                low = self._trimmed(path, low)
                self._put(path + self.naming.down, low.down)
                self._put(path + self.naming.up, low.up)
                alpha = _alpha_out(low)
                self._alphas[path] = float(low.rank) if alpha is None else alpha
                self._ranks[path] = low.rank
                continue
            if self.naming.names == "diffusers-underscored":
                self._lora(path.replace(".", "_"), low.down, low.up, _alpha_out(low), low.scale)
                continue
            place = module_place(self.spec, path, comfy=self.naming.comfy)
            if place is None:
                self.unsupported.append((path, f"no original {self.spec.label} name for this module"))
            elif place.index is None:
                up = _swap(low.up) if place.split == "swap" else low.up
                self._lora(self._name(place.name), low.down, up, _alpha_out(low), low.scale)
            else:
                fused.setdefault(place.name, {})[place.index] = (path, low)
                places[place.name] = place
        for name in sorted(fused, key=_natural):
            self._fused(places[name], fused[name])

    def _trimmed(self, path: str, low: LowRank) -> LowRank:
        """A piece of a fused original keeps only the ranks its rows use: a block-diagonal
        fused LoRA (per-piece A's written exactly) gives each piece all the A rows and
        zeros in the other pieces' B columns; dropping those is exact."""
        place = module_place(self.spec, path)
        if place is None or place.index is None:
            return low
        used = low.up.reshape(low.up.shape[0], low.rank).abs().sum(0) != 0
        if bool(used.all()) or not bool(used.any()):
            return low
        kept = LowRank(down=low.down[used], up=low.up[:, used], alpha=None, scale=low.scale, source_keys=low.source_keys)
        kept.alpha = _alpha_out(kept)
        return kept

    def _fused(self, place: Place, pieces: dict[int, tuple[str, LowRank]]) -> None:
        lows = {i: low for i, (_, low) in pieces.items()}
        first = lows[min(lows)]
        shared = all(
            (low.down is first.down or torch.equal(low.down, first.down))
            and low.scale == first.scale and _alpha_out(low) == _alpha_out(first)
            for low in lows.values()
        )
        name = self._name(place.name)
        rows = self._piece_rows(place, {i: low.out_features for i, low in lows.items()})
        if shared and (len(lows) == place.count or rows is not None):
            # one A for every piece: B pieces stacked by rows (a missing piece is zero rows)
            ups = [lows[i].up if i in lows else first.up.new_zeros(rows[i], first.rank) for i in range(place.count)]
            self._lora(name, first.down, torch.cat(ups), _alpha_out(first), first.scale)
            return
        if rows is None:
            for path, _ in pieces.values():
                self.unsupported.append((path, f"fusing into {place.name}: the row count of a missing piece is "
                                         "unknown (pass the model)"))  # fmt: skip
            return
        total = sum(low.rank for low in lows.values())
        dtype = first.up.dtype
        up = torch.zeros(sum(rows), total, dtype=torch.float32)
        downs, col = [], 0
        for i in range(place.count):
            if i not in lows:
                continue
            low, row = lows[i], sum(rows[:i])
            up[row : row + rows[i], col : col + low.rank] = low.scale * low.up.float()
            downs.append(low.down.to(dtype))
            col += low.rank
        biggest = max(low.rank for low in lows.values())
        self.out.notes.append(
            f"{place.name}: its {len(lows)} diffusers pieces have their own A, so it is written exactly as one LoRA "
            f"of rank {total} (A stacked, B block-diagonal; {total / biggest:.1f}x the largest piece's rank)"
        )
        self._lora(name, torch.cat(downs), up.to(dtype), None if self.naming.alpha == "bake" else float(total), 1.0)

    # ------------------------------------------------------------------ full-tensor deltas
    def deltas(self) -> None:
        fused: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
        places: dict[str, Place] = {}
        factored: dict[str, dict[int, tuple[str, FactoredDelta]]] = {}
        for path in sorted(self.part.deltas, key=_natural):
            delta = self.part.deltas[path]
            if isinstance(delta, FactoredDelta):
                self._factored(path, delta, factored, places)
                continue
            if self.naming.names == "diffusers":
                self._diffusers_delta(path, delta)
                continue
            if self.naming.names == "diffusers-underscored":
                self.unsupported.append((path, f"the {self.naming.scheme} naming has no full-tensor deltas"))
                continue
            pp = param_place(self.spec, path)
            if pp is not None:
                if self.naming.modulation == "diff_m" and pp.owner is not None:
                    self._put(self._name(pp.owner) + ".diff_m", delta)
                else:
                    self._put(self._name(pp.name) + ".diff", delta)
                continue
            module, _, attr = path.rpartition(".")
            place = module_place(self.spec, module, comfy=self.naming.comfy) if attr in ("weight", "bias") else None
            if place is None:
                self.unsupported.append((path, f"no original {self.spec.label} name for this parameter"))
                continue
            suffix = ".diff" if attr == "weight" else ".diff_b"
            if place.index is None:
                self._put(self._name(place.name) + suffix, _swap(delta) if place.split == "swap" else delta)
            else:
                fused.setdefault((place.name, suffix), {})[place.index] = delta
                places[place.name] = place
        for (name, suffix), pieces in sorted(fused.items(), key=lambda kv: _natural(kv[0][0] + kv[0][1])):
            self._fused_delta(places[name], suffix, pieces)
        for name in sorted(factored, key=_natural):
            self._fused_factored(places[name], factored[name])

    # ------------------------------------------------------------------ LyCORIS
    def _factored(self, path: str, delta: FactoredDelta, fused: dict, places: dict) -> None:
        module = path[: -len(".weight")]
        if not self.naming.lycoris:
            self.unsupported.append((path, f"LyCORIS {delta.kind} has no {self.naming.target} form (diffusers/PEFT "
                                     "files hold LoRA A/B only)"))  # fmt: skip
            return
        if self.naming.names == "diffusers-underscored":
            self._lycoris(module.replace(".", "_"), delta, path)
            return
        place = module_place(self.spec, module, comfy=self.naming.comfy)
        if place is None:
            self.unsupported.append((path, f"no original {self.spec.label} name for this module"))
        elif place.index is None:
            self._lycoris(self._name(place.name), delta.swap_halves() if place.split == "swap" else delta, path)
        else:
            fused.setdefault(place.name, {})[place.index] = (path, delta)
            places[place.name] = place

    def _lycoris(self, name: str, delta: FactoredDelta, path: str) -> None:
        got = lycoris_tensors(delta, bake=self.naming.alpha in ("bake", "peft"))
        if got is None:  # a LoKr row selection: exact as its dense rows
            self.out.notes.append(f"{path}: part of a LoKr's rows, written as a dense diff")
            self._put(name + ".diff", delta.to_dense())
            return
        tensors, alpha, rank = got
        for suffix, t in tensors.items():
            self._put(name + suffix, t)
        if alpha is None and self.naming.alpha == "always":
            alpha = None if rank is None else float(rank)
        if alpha is not None:
            self._put(name + ".alpha", torch.tensor(float(alpha)))

    def _fused_factored(self, place: Place, pieces: dict[int, tuple[str, FactoredDelta]]) -> None:
        joined = join_pieces([pieces[i][1] for i in range(place.count)]) if len(pieces) == place.count else None
        if joined is not None:
            self._lycoris(self._name(place.name), joined, place.name)
            return
        rows = self._piece_rows(place, {i: int(d.shape[0]) for i, (_, d) in pieces.items()})
        if rows is None:
            self.unsupported += [(p, f"fusing into {place.name}: the row count of a missing piece is unknown")
                                 for p, _ in pieces.values()]  # fmt: skip
            return
        self.out.notes.append(f"{place.name}: its pieces' LyCORIS deltas are not one delta's rows; written exactly "
                              "as a dense diff")  # fmt: skip
        some = next(iter(pieces.values()))[1]
        dense = [pieces[i][1].to_dense() if i in pieces else torch.zeros(rows[i], some.shape[1]) for i in range(place.count)]
        self._put(self._name(place.name) + ".diff", torch.cat(dense))

    def _fused_delta(self, place: Place, suffix: str, pieces: dict[int, torch.Tensor]) -> None:
        rows = self._piece_rows(place, {i: int(d.shape[0]) for i, d in pieces.items()})
        if rows is None:
            for i in pieces:
                attr = "weight" if suffix == ".diff" else "bias"
                self.unsupported.append((f"{place.siblings[i]}.{attr}", f"fusing into {place.name}{suffix}: the row "
                                         "count of a missing piece is unknown (pass the model)"))  # fmt: skip
            return
        some = next(iter(pieces.values()))
        parts = [pieces[i] if i in pieces else some.new_zeros((rows[i], *some.shape[1:])) for i in range(place.count)]
        self._put(self._name(place.name) + suffix, torch.cat(parts))

    def _diffusers_delta(self, path: str, delta: torch.Tensor) -> None:
        module, _, attr = path.rpartition(".")
        low = self.part.modules.get(module)
        if attr == "bias" and low is not None:
            # PEFT lora_bias: the bias of lora_B is scaled with the module (b += scale * B.bias)
            self._put(module + ".lora_B.bias", (delta.float() / low.scale).to(delta.dtype) if low.scale != 1.0 else delta)
            return
        what = "a bias delta on a module without a LoRA" if attr == "bias" else "a full-tensor delta"
        self.unsupported.append((path, f"{what} has no diffusers/PEFT name (diffusers keeps only lora_B.bias)"))

    # ------------------------------------------------------------------ PEFT config
    def peft_config(self) -> None:
        if self.naming.alpha != "metadata" or not self._ranks:
            return
        biased = any(k.endswith(".lora_B.bias") for k in self.out.tensors)
        if biased:
            # PEFT's lora_bias gives every targeted module a B bias, and diffusers leaves a
            # bias missing from the file on the meta device: write zeros for the others,
            # as PEFT's own save does.
            for path, low in self.part.modules.items():
                key = f"{self.prefix}{path}.lora_B.bias"
                if key not in self.out.tensors:
                    self.out.tensors[key] = low.up.new_zeros(low.out_features)
        r = Counter(self._ranks.values()).most_common(1)[0][0]
        alpha = Counter(self._alphas.values()).most_common(1)[0][0]
        # PEFT matches pattern keys and target_modules as dotted *suffixes*: Hunyuan's
        # "proj_out" would also catch every single block's proj_out (and give it a LoRA the
        # file has no tensors for). Anchored regexes name exactly the file's modules.
        exact = {p: "^" + re.escape(p) for p in self._ranks}
        self.out.peft = {
            "r": r,
            "lora_alpha": alpha,
            "rank_pattern": {exact[p]: v for p, v in self._ranks.items() if v != r},
            "alpha_pattern": {exact[p]: v for p, v in self._alphas.items() if v != alpha},
            "target_modules": "^(?:" + "|".join(re.escape(p) for p in sorted(self._ranks, key=_natural)) + ")$",
            "lora_bias": biased,
            "use_dora": False,
            "use_rslora": False,
            "lora_dropout": 0.0,
            "bias": "none",
        }


def render(
    part: LoRAFile,
    naming: Naming,
    prefix: str | None = None,
    drop_unsupported: bool = False,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> Rendered:
    """The tensors (and PEFT config) of one LoRA part in ``naming``. ``prefix`` replaces the
    naming's key prefix (two-expert files); ``shapes``: the model's parameter shapes, for
    fused pieces the file does not size itself."""
    if part.experts:
        raise VidloraError("render one expert part at a time")
    r = _Renderer(part, naming, naming.prefix if prefix is None else prefix, shapes)
    r.low_rank()
    r.deltas()
    r.flush()
    r.peft_config()
    if r.unsupported and not drop_unsupported:
        shown = "; ".join(f"{name} ({why})" for name, why in r.unsupported[:8])
        more = f"; and {len(r.unsupported) - 8} more" if len(r.unsupported) > 8 else ""
        raise UnsupportedError(
            f"{len(r.unsupported)} entries have no name in the {naming.target} naming ({naming.scheme}): {shown}{more}; "
            "choose another target or drop them (drop_unsupported=True, --drop-unsupported)"
        )
    r.out.dropped = list(r.unsupported)
    return r.out
