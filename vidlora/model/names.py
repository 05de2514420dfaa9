"""Name tables: how producers name a family's modules, and where each name lands in diffusers.

A family's modules are named three ways in the wild: the original checkpoint's dotted
names (``blocks.0.self_attn.q``; ComfyUI, musubi, LightX2V), the same with dots turned
into underscores by kohya-style trainers (``blocks_0_self_attn_q``), and diffusers'
module paths (``blocks.0.attn1.to_q``), sometimes also underscored (OneTrainer). A
:class:`NameTable` holds the original <-> diffusers correspondence once, as data: block
groups (``blocks.N``, ``double_blocks.N``, ...) with their inner names, plus the
top-level names, and derives every lookup from it. Underscores are never guessed back
into dots: an underscored name is looked up among the known names with dots replaced.

A name may land on several diffusers modules (a fused original that diffusers splits):
:class:`Target` says how the fused rows are cut among them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

__all__ = ["Target", "BlockGroup", "NameTable", "SPLITS"]

# How the rows of a fused original output are cut among a Target's diffusers paths:
# "equal": n equal parts (Hunyuan qkv); "linear1": width, width, width, the rest (Hunyuan
# single-block q, k, v, MLP); "swap": one path whose two row halves trade places (Hunyuan's
# final adaLN emits shift, scale; diffusers' norm_out.linear scale, shift).
SPLITS = ("equal", "linear1", "swap")

Entry = tuple[tuple[str, ...], "str | None"]  # (diffusers names, split)


@dataclass(frozen=True)
class Target:
    """The diffusers destination of one module name of a LoRA file.

    paths: diffusers module paths (parameter paths when ``is_param``); more than one for
        a fused original module that diffusers splits.
    split: None (one path) or one of :data:`SPLITS`.
    is_param: the name is itself a parameter (Wan ``modulation``), so a ``diff`` on it
        patches that parameter rather than ``<path>.weight``.
    """

    paths: tuple[str, ...]
    split: str | None = None
    is_param: bool = False


def _entries(table: Mapping[str, Entry | str]) -> Mapping[str, Entry]:
    """Normalise a table: a plain string value means one diffusers name, no split."""
    out = {}
    for name, value in table.items():
        out[name] = ((value,), None) if isinstance(value, str) else (tuple(value[0]), value[1])
    return MappingProxyType(out)


@dataclass(frozen=True)
class BlockGroup:
    """A list of repeated blocks, as diffusers and the original checkpoint name it.

    path / original: the container (``blocks`` / ``blocks``; ``transformer_blocks`` /
        ``double_blocks``). Block N is ``f"{path}.{N}"``.
    names: original inner name -> diffusers inner name(s) (``"self_attn.q"`` ->
        ``"attn1.to_q"``; ``"img_attn_qkv"`` -> ((to_q, to_k, to_v), "equal")). Several
        original spellings may map to one diffusers name (Tencent and ComfyUI).
    params: original inner parameter names -> diffusers parameter (Wan ``modulation``).
    owner_param: the parameter a ``diff_m`` on the bare block (``blocks.N``) patches.
    underscore_aliases: extra underscored inner names some trainers write (ai-toolkit's
        half-converted ``self_attn_to_q``), underscored name -> diffusers inner name.
    """

    path: str
    original: str
    names: Mapping[str, Entry]
    params: Mapping[str, str] = field(default_factory=dict)
    owner_param: str | None = None
    underscore_aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", _entries(self.names))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "underscore_aliases", MappingProxyType(dict(self.underscore_aliases)))

    @property
    def diffusers_inner(self) -> tuple[str, ...]:
        """Every diffusers inner module name the table knows, in table order."""
        return tuple(dict.fromkeys(n for names, _ in self.names.values() for n in names))


class NameTable:
    """The original <-> diffusers names of one family, and every lookup derived from them.

    groups: the block groups, in model order.
    top / top_params / top_owner_params: names outside the blocks (modules, parameters,
        and bare owners of a ``diff_m``: Wan ``head`` -> ``scale_shift_table``).
    """

    def __init__(
        self,
        groups: tuple[BlockGroup, ...],
        top: Mapping[str, Entry | str],
        top_params: Mapping[str, str] | None = None,
        top_owner_params: Mapping[str, str] | None = None,
    ):
        self.groups = tuple(groups)
        self.top = _entries(top)
        self.top_params = MappingProxyType(dict(top_params or {}))
        self.top_owner_params = MappingProxyType(dict(top_owner_params or {}))
        self._by_original = [(self._block_re(g.original, "."), g) for g in self.groups]
        self._by_original_u = [(self._block_re(g.original.replace(".", "_"), "_"), g) for g in self.groups]
        self._by_diffusers_u = [(self._block_re(g.path.replace(".", "_"), "_"), g) for g in self.groups]
        self._owner_re = [(re.compile(rf"^{re.escape(g.original)}\.(\d+)$"), g) for g in self.groups if g.owner_param]
        self._owner_re_u = [
            (re.compile(rf"^{re.escape(g.original.replace('.', '_'))}_(\d+)$"), g) for g in self.groups if g.owner_param
        ]
        self._u_inner = {g.path: {k.replace(".", "_"): k for k in (*g.names, *g.params)} for g in self.groups}
        self._u_top = {k.replace(".", "_"): k for k in (*self.top, *self.top_params, *self.top_owner_params)}
        self._du_inner = {g.path: {n.replace(".", "_"): n for n in g.diffusers_inner} for g in self.groups}
        self._du_top = {n.replace(".", "_"): n for names, _ in self.top.values() for n in names}
        self._diffusers_top = {n for names, _ in self.top.values() for n in names} | set(self.top_params.values())
        # underscored name -> Target: the kohya reader asks every family's table about every
        # module name of a file (7 tables x 1,200 names for a Wan 14B LoRA); Targets are frozen
        self._underscored_memo: dict[str, Target | None] = {}

    @staticmethod
    def _block_re(container: str, sep: str) -> re.Pattern:
        return re.compile(rf"^{re.escape(container)}{re.escape(sep)}(\d+){re.escape(sep)}(.+)$")

    # ------------------------------------------------------------------ dotted original names
    def translate_original(self, name: str, split_index: bool = False) -> Target | None:
        """Diffusers target of a dotted original module name, None if unknown.

        ``split_index``: OneTrainer's split form, where ``img_attn.qkv.1`` is its own LoRA
        over the k rows of the fused module: it maps to that one piece.
        """
        if split_index:
            base, dot, idx = name.rpartition(".")
            if dot and idx.isdigit() and len(idx) == 1:
                fused = self.translate_original(base)
                if fused is not None and fused.split in ("equal", "linear1") and int(idx) < len(fused.paths):
                    return Target((fused.paths[int(idx)],))
        for pattern, group in self._owner_re:
            m = pattern.match(name)
            if m:
                return Target((f"{group.path}.{m.group(1)}.{group.owner_param}",), is_param=True)
        for pattern, group in self._by_original:
            m = pattern.match(name)
            if m:
                return self._inner(group, m.group(1), m.group(2))
        if name in self.top:
            names, split = self.top[name]
            return Target(names, split)
        if name in self.top_params:
            return Target((self.top_params[name],), is_param=True)
        if name in self.top_owner_params:
            return Target((self.top_owner_params[name],), is_param=True)
        return None

    def is_split_index(self, name: str) -> bool:
        """Whether a dotted name is OneTrainer's split form: a fused module plus ``.<i>``."""
        base, dot, idx = name.rpartition(".")
        if not (dot and idx.isdigit() and len(idx) == 1):
            return False
        fused = self.translate_original(base)
        return fused is not None and fused.split in ("equal", "linear1") and int(idx) < len(fused.paths)

    @staticmethod
    def _inner(group: BlockGroup, index: str, inner: str) -> Target | None:
        prefix = f"{group.path}.{index}."
        if inner in group.names:
            names, split = group.names[inner]
            return Target(tuple(prefix + n for n in names), split)
        if inner in group.params:
            return Target((prefix + group.params[inner],), is_param=True)
        return None

    # ------------------------------------------------------------------ underscored names
    def translate_underscored(self, name: str) -> Target | None:
        """Target of a kohya-style underscored original name (``blocks_0_self_attn_q``), also
        accepting the group's ``underscore_aliases``."""
        if name not in self._underscored_memo:
            if len(self._underscored_memo) > 1 << 16:  # bounded: names from many files
                self._underscored_memo.clear()
            self._underscored_memo[name] = self._translate_underscored(name)
        return self._underscored_memo[name]

    def _translate_underscored(self, name: str) -> Target | None:
        for pattern, group in self._owner_re_u:
            m = pattern.match(name)
            if m:
                return Target((f"{group.path}.{m.group(1)}.{group.owner_param}",), is_param=True)
        for pattern, group in self._by_original_u:
            m = pattern.match(name)
            if m:
                index, inner = m.group(1), m.group(2)
                dotted = self._u_inner[group.path].get(inner)
                if dotted is not None:
                    return self._inner(group, index, dotted)
                alias = group.underscore_aliases.get(inner)
                return None if alias is None else Target((f"{group.path}.{index}.{alias}",))
        dotted = self._u_top.get(name)
        return None if dotted is None else self.translate_original(dotted)

    def translate_diffusers_underscored(self, name: str) -> Target | None:
        """Target of an underscored diffusers name (``transformer_blocks_0_attn_to_q``)."""
        for pattern, group in self._by_diffusers_u:
            m = pattern.match(name)
            if m:
                inner = self._du_inner[group.path].get(m.group(2))
                return None if inner is None else Target((f"{group.path}.{m.group(1)}.{inner}",))
        return Target((self._du_top[name],)) if name in self._du_top else None

    def knows_diffusers(self, name: str) -> bool:
        """Whether a diffusers module (or parameter) path is one this table knows: a block's
        inner module / parameter, or a top-level one."""
        for group in self.groups:
            prefix = group.path + "."
            if name.startswith(prefix):
                index, _, inner = name[len(prefix):].partition(".")
                if index.isdigit() and (inner in group.diffusers_inner or inner in group.params.values()
                                        or (not inner and group.owner_param)):
                    return True  # fmt: skip
        return name in self._diffusers_top

    # ------------------------------------------------------------------ reverse (diffusers -> original)
    def original_of(self, diffusers_path: str) -> str | None:
        """The original dotted name of a diffusers module path that maps one to one (no
        split), None otherwise (the first spelling when several map to it)."""
        for group in self.groups:
            prefix = group.path + "."
            if diffusers_path.startswith(prefix):
                index, _, inner = diffusers_path[len(prefix):].partition(".")
                if not index.isdigit():
                    continue
                for original, (names, split) in group.names.items():
                    if split is None and names == (inner,):
                        return f"{group.original}.{index}.{original}"
                return None
        for original, (names, split) in self.top.items():
            if split is None and names == (diffusers_path,):
                return original
        return None
