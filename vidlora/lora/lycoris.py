"""LyCORIS LoHa / LoKr modules of a file -> factored deltas (factored.py), with each
producer's scale rule. Nothing is expanded here: memory stays in proportion to the file.

Scale rules (LyCORIS, ComfyUI weight_adapter/{loha,lokr}.py, musubi networks/{loha,lokr}.py):

* LoHa: alpha / r with r = hada_w1_b's rank; no alpha means 1.
* LoKr: alpha / r only when a factor is low-rank, r = w2's rank when w2 is factored, else
  w1's; two full factors mean scale 1 whatever alpha says. musubi writes alpha = r there,
  ai-toolkit writes 9999999999, which its default fp16 save stores as +inf: that alpha is
  never used, so :func:`unused_alpha_keys` lets it through the finite-value check (a NaN,
  or an inf anywhere a rule does use it, is still refused).
"""

from __future__ import annotations

from vidlora.errors import LoRAFormatError

from .factored import KronDelta, LoHaDelta
from .alpha_rules import scale_for
from .tensor_checks import alpha_value, check_dense, need_2d

__all__ = ["LOHA_ROLES", "LOKR_ROLES", "loha_delta", "lokr_delta", "unused_alpha_keys"]

LOHA_ROLES = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
LOKR_ROLES = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")


def unused_alpha_keys(keys) -> set[str]:
    """The ``.alpha`` keys of LoKr modules with two full factors (alpha is never used)."""
    keys = set(keys)
    out = set()
    for key in keys:
        if not key.endswith(".alpha"):
            continue
        module = key[: -len(".alpha")]
        full = all(f"{module}.lokr_w{n}" in keys for n in "12")
        factored = any(f"{module}.lokr_w{n}_{s}" in keys for n in "12" for s in "ab")
        if full and not factored:
            out.add(key)
    return out


def loha_delta(path: str, module: str, roles: dict[str, str], tensors) -> tuple[LoHaDelta, float | None]:
    missing = [r for r in LOHA_ROLES if r not in roles]
    if missing:
        raise LoRAFormatError(f"{path}: LoHa module {module!r} lacks {', '.join(missing)}")
    w1a, w1b, w2a, w2b = (tensors[roles[r]] for r in LOHA_ROLES)
    for r, t in zip(LOHA_ROLES, (w1a, w1b, w2a, w2b)):
        need_2d(path, roles[r], t)
    if w1a.shape[1] != w1b.shape[0] or w2a.shape[1] != w2b.shape[0]:
        raise LoRAFormatError(f"{path}: LoHa {module!r}: rank mismatch between hada_w*_a and hada_w*_b")
    if (w1a.shape[0], w1b.shape[1]) != (w2a.shape[0], w2b.shape[1]):
        raise LoRAFormatError(f"{path}: LoHa {module!r}: the two Hadamard factors have different shapes")
    check_dense(path, module, "LoHa", (w1a.shape[0], w1b.shape[1]))
    alpha = alpha_value(path, roles["alpha"], tensors[roles["alpha"]]) if "alpha" in roles else None
    return LoHaDelta(w1a, w1b, w2a, w2b, scale_for(alpha, int(w1b.shape[0]))), alpha


def _lokr_factor(path: str, module: str, roles: dict[str, str], tensors, n: str):
    """(factor, its rank when factored else None); a factor is a matrix or an (a, b) pair."""
    full, a, b = f"lokr_w{n}", f"lokr_w{n}_a", f"lokr_w{n}_b"
    if full in roles:
        t = tensors[roles[full]]
        need_2d(path, roles[full], t)
        return t, None
    if a in roles and b in roles:
        ta, tb = tensors[roles[a]], tensors[roles[b]]
        need_2d(path, roles[a], ta)
        need_2d(path, roles[b], tb)
        if ta.shape[1] != tb.shape[0]:
            raise LoRAFormatError(f"{path}: LoKr {module!r}: {a} and {b} have different ranks")
        check_dense(path, module, f"LoKr factor w{n} of", (ta.shape[0], tb.shape[1]))
        return (ta, tb), int(tb.shape[0])
    raise LoRAFormatError(f"{path}: LoKr module {module!r} lacks {full} (or {a} + {b})")


def _shape(f) -> tuple[int, int]:
    return (int(f[0].shape[0]), int(f[1].shape[1])) if isinstance(f, tuple) else (int(f.shape[0]), int(f.shape[1]))


def lokr_delta(path: str, module: str, roles: dict[str, str], tensors) -> tuple[KronDelta, float | None]:
    w1, r1 = _lokr_factor(path, module, roles, tensors, "1")
    w2, r2 = _lokr_factor(path, module, roles, tensors, "2")
    (a, b), (c, d) = _shape(w1), _shape(w2)
    check_dense(path, module, "LoKr", (a * c, b * d))
    rank = r2 if r2 is not None else r1
    alpha = alpha_value(path, roles["alpha"], tensors[roles["alpha"]]) if "alpha" in roles else None
    scale = 1.0 if rank is None else scale_for(alpha, rank)
    return KronDelta(w1, w2, scale), (None if rank is None else alpha)
