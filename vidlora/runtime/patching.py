"""Module surgery: find the transformers of a pipeline, swap their Linears for
``LoRALinear`` units (fusing Wan's sibling projections), and put everything back.

Fusion goes through the model's own fused path: diffusers' ``WanAttention`` calls
``to_qkv`` / ``to_kv`` / ``to_added_kv`` instead of the separate projections when its
``fused_projections`` flag is set. Unlike ``fuse_projections()``, which keeps the separate
Linears beside the concatenated copy (twice the attention weights in memory), the fused
unit holds the concatenated weight once: the separate projections' tensors are released
and a parameter-free :class:`~vidlora.runtime.unit.FusedAway` marks where each one went. Detach
gives each original ``nn.Linear`` object back, holding its rows of the fused weight.
"""

from __future__ import annotations


import torch
from torch import nn

from vidlora.errors import VidloraError
from vidlora.model import FAMILIES, Inventory, block_linear_paths, inventory, refusal_for, spec_for_class
from vidlora.kernels.fp8_format import FP8_DTYPE
from .cp_hooks import carry_cp_hooks, has_cp_hooks
from .offload import refuse_offload_hooks
from .rank_stack import Part
from .unit import FusedAway, LoRALinear

__all__ = ["PatchedModel", "find_transformers", "ADOPTS_ADJACENT_ROWS"]

# A fusion group whose weights already are consecutive row blocks of one tensor (what a
# prefused load and a detach leave) becomes the fused unit's weight as is: no copy.
ADOPTS_ADJACENT_ROWS = True


def _is_transformer(obj) -> bool:
    return any(spec_for_class(c.__name__) is not None for c in type(obj).__mro__)


def _supported() -> str:
    return " and ".join(c for spec in FAMILIES for c in spec.classes)


def find_transformers(obj) -> tuple[object | None, dict[str, nn.Module]]:
    """(pipeline or None, {"transformer": model[, "transformer_2": model]})."""
    if refusal_for(obj) is not None:
        raise VidloraError(refusal_for(obj))
    if _is_transformer(obj):
        return None, {"transformer": obj}
    found = {}
    for key in ("transformer", "transformer_2"):
        model = getattr(obj, key, None)
        if model is not None:
            if refusal_for(model) is not None:
                raise VidloraError(f"{type(obj).__name__}.{key}: {refusal_for(model)}")
            if not _is_transformer(model):
                raise VidloraError(
                    f"{type(obj).__name__}.{key} is a {type(model).__name__}; vidlora patches {_supported()} "
                    f"({', '.join(spec.label for spec in FAMILIES)})"
                )
            found[key] = model
    if not found:
        raise VidloraError(
            f"attach() expects a diffusers {' or '.join(spec.label for spec in FAMILIES)} pipeline or transformer; "
            f"got {type(obj).__name__}"
        )
    return obj, found


def _check_attachable(pipe, key: str, model: nn.Module) -> None:
    if getattr(model, "_vidlora_attached", False):
        raise VidloraError(f"{key} is already attached by vidlora: use that handle, or call its detach() first")
    peft_names = sorted(getattr(model, "peft_config", None) or {})
    has_peft_layers = any(hasattr(m, "base_layer") and hasattr(m, "lora_A") for m in model.modules())
    if peft_names or has_peft_layers:
        names = f" {peft_names}" if peft_names else ""
        raise VidloraError(
            f"{key} already carries diffusers/PEFT LoRA adapters{names}; vidlora would apply its LoRAs on top "
            "of them. Remove them first (pipe.unload_lora_weights()) and load the files with vidlora's "
            "Adapters.add() instead"
        )
    if pipe is not None and int(getattr(pipe, "num_fused_loras", 0) or 0) > 0:
        raise VidloraError(
            "this pipeline has LoRAs fused into its base weights (pipe.fuse_lora()); call pipe.unfuse_lora() "
            "and pipe.unload_lora_weights() first, so no LoRA is applied twice"
        )
    refuse_offload_hooks(key, model)
    for name, m in model.named_modules():
        if getattr(m, "fused_projections", False):
            raise VidloraError(
                f"{key}.{name} already has fused projections made outside vidlora (fuse_qkv_projections()); "
                "call unfuse_qkv_projections() first: vidlora fuses them itself without keeping a second copy"
            )


def _compute_dtype(lin: nn.Module) -> torch.dtype:
    """The dtype a Linear computes in: its weight's, unless the weight is FP8 storage. Then,
    in order: diffusers layerwise casting's compute dtype, the one vidlora's FP8
    checkpoint loader recorded, the bias's dtype, bfloat16."""
    if lin.weight.dtype != FP8_DTYPE:
        return lin.weight.dtype
    registry = getattr(lin, "_diffusers_hook", None)
    hook = registry.get_hook("layerwise_casting") if registry is not None else None
    if getattr(hook, "compute_dtype", None) is not None:
        return hook.compute_dtype
    if getattr(lin, "vidlora_compute_dtype", None) is not None:
        return lin.vidlora_compute_dtype
    if lin.bias is not None and lin.bias.dtype.is_floating_point and lin.bias.element_size() > 1:
        return lin.bias.dtype
    return torch.bfloat16


def _set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    carry_cp_hooks(getattr(parent, attr), module, path)  # context parallelism's split/gather hooks
    setattr(parent, attr, module)


def _fusion_groups(model: nn.Module, inv: Inventory, targets: set[str]) -> list[tuple[str, str, list[str]]]:
    """[(attention path, fused attribute, [sibling Linear paths])]: the spec's fusions on
    attention modules whose processor honours ``fused_projections`` (others would keep
    calling the separate projections, which a fused unit has released)."""
    spec = inv.spec
    groups = []
    for name, attn in model.named_modules():
        fusions = spec.fusions_for(name)
        if not fusions or not hasattr(attn, "fuse_projections"):
            continue
        if type(getattr(attn, "processor", None)).__name__ not in spec.fused_processors:
            continue
        cross = bool(getattr(attn, "is_cross_attention", False))
        for fusion in fusions:
            if fusion.cross != cross:
                continue
            paths = [f"{name}.{s}" for s in fusion.parts]
            mods = [getattr(attn, s, None) for s in fusion.parts]
            if not all(p in targets for p in paths) or not all(type(m) is nn.Linear for m in mods):
                continue
            if any(has_cp_hooks(m) for m in mods):  # a fused-away part never runs its hooks
                continue
            if len({(m.in_features, m.weight.dtype, m.weight.device, m.bias is not None) for m in mods}) != 1:
                continue
            groups.append((name, fusion.fused, paths))
    return groups


def _adjacent_rows(ts: list[torch.Tensor]) -> torch.Tensor | None:
    """One tensor over ``ts`` when they already are consecutive row blocks of one storage
    (contiguous, same dtype and trailing shape), else None: then the group is copied."""
    first = ts[0]
    if first.device.type == "meta":
        return None
    storage, offset = first.untyped_storage(), first.storage_offset()
    step = first.stride(0) if first.dim() > 1 else 1
    rows = 0
    for t in ts:
        if (not t.is_contiguous() or t.dtype != first.dtype or t.shape[1:] != first.shape[1:]
                or t.untyped_storage().data_ptr() != storage.data_ptr() or t.storage_offset() != offset + rows * step):
            return None
        rows += t.shape[0]
    return first.detach().new_empty(0).set_(storage, offset, (rows, *first.shape[1:]))


def _joined(ts: list[torch.Tensor]) -> torch.Tensor:
    """The rows of ``ts`` as one tensor: adopted without a copy when adjacent, else concatenated."""
    adopted = _adjacent_rows(ts)
    return adopted if adopted is not None else torch.cat([t.detach() for t in ts], 0)


def _stored_scale(pm: "PatchedModel", unit: LoRALinear) -> torch.Tensor | None:
    """The per-channel scales an FP8 checkpoint stored with the unit's weights (a
    ``weight_scale`` buffer on each original Linear; a part without one counts as 1)."""
    lins = [pm.originals[p.path] for p in unit.parts]
    scales = [getattr(lin, "weight_scale", None) for lin in lins]
    if all(s is None for s in scales):
        return None
    out = []
    for s, lin in zip(scales, lins):
        s = torch.ones(1) if s is None else s.detach().float().reshape(-1)
        out.append((s.expand(lin.out_features) if s.numel() == 1 else s).to(unit.weight.device))
    return torch.cat(out)


class PatchedModel:
    """What attach changed in one transformer, and how to undo it.

    ``patch`` builds one (every default block Linear patched, siblings fused);
    ``patch_linear`` / ``unpatch_linear`` patch one more Linear on demand (a LoRA on an
    embedder) and undo that; ``unpatch`` puts every original module back.
    """

    def __init__(self, key: str, model: nn.Module, inv: Inventory):
        self.key = key  # "transformer" | "transformer_2"
        self.model = model
        self.inv = inv
        self.units: dict[str, LoRALinear] = {}  # unit module path -> unit
        self.part_unit: dict[str, LoRALinear] = {}  # original Linear path -> unit
        self.originals: dict[str, nn.Module] = {}  # original Linear path -> Linear
        self.fused_attn: dict[str, bool] = {}  # attention path -> had the attribute before

    def unit_of(self, linear_path: str) -> LoRALinear | None:
        return self.part_unit.get(linear_path)

    @classmethod
    def patch(
        cls, pipe, key: str, model: nn.Module, fuse: bool = True, fp8: str | None = None,
        device: torch.device | str | None = None, keep_original: bool = False,
    ) -> "PatchedModel":
        """Patch every DiT-block Linear of ``model`` (fusing Wan's siblings when ``fuse``).

        fp8: None, "w8a16" or "w8a8": quantize every patched weight, one unit at a time (and
        onto ``device`` when given, so a bf16 model in CPU memory becomes an FP8 one on the
        GPU without a full bf16 copy there). Weights that already are float8_e4m3fn (FP8
        checkpoints) are used as stored, whatever ``fp8`` says.
        """
        _check_attachable(pipe, key, model)
        pm = cls(key, model, inventory(model))
        targets = block_linear_paths(pm.inv)
        try:
            if fuse:
                for attn_path, fused_attr, paths in _fusion_groups(model, pm.inv, set(targets)):
                    pm._fuse(attn_path, fused_attr, paths)
            for path in targets:
                if path not in pm.part_unit:
                    pm.patch_linear(path)
            for unit in pm.units.values():
                if unit.weight.dtype == FP8_DTYPE:
                    unit.adopt_fp8(fp8 or "w8a16", _stored_scale(pm, unit))
                elif fp8:
                    unit.quantize_(fp8, device=device, keep_original=keep_original)
            if device is not None:
                model.to(device)
        except BaseException:
            pm.unpatch()
            raise
        model._vidlora_attached = True
        return pm

    def patch_linear(self, path: str) -> LoRALinear:
        """Wrap one ``nn.Linear`` (no copy: the unit holds the same Parameter objects)."""
        unit = self.part_unit.get(path)
        if unit is not None:
            return unit
        lin = self.model.get_submodule(path)
        if not isinstance(lin, nn.Linear):
            raise VidloraError(f"{self.key}.{path} is a {type(lin).__name__}, not a Linear: vidlora cannot put a LoRA on it")
        unit = LoRALinear(lin.weight, lin.bias, [Part(path, 0, lin.out_features)], path, compute_dtype=_compute_dtype(lin))
        _set_module(self.model, path, unit)
        self.originals[path] = lin
        self.part_unit[path] = unit
        self.units[path] = unit
        return unit

    def unpatch_linear(self, path: str) -> None:
        """Undo an on-demand :meth:`patch_linear` of a single Linear (rollback of a failed add)."""
        unit = self.units.pop(path, None)
        if unit is None:
            return
        _set_module(self.model, path, self.originals.pop(path))
        self.part_unit.pop(path, None)

    @torch.no_grad()
    def _fuse(self, attn_path: str, fused_attr: str, paths: list[str]) -> None:
        model = self.model
        attn = model.get_submodule(attn_path)
        lins = [model.get_submodule(p) for p in paths]
        requires_grad = lins[0].weight.requires_grad
        weight = nn.Parameter(_joined([lin.weight for lin in lins]), requires_grad=requires_grad)
        bias = None
        if lins[0].bias is not None:
            bias = nn.Parameter(_joined([lin.bias for lin in lins]), requires_grad=requires_grad)
        parts, start = [], 0
        for p, lin in zip(paths, lins):
            parts.append(Part(p, start, start + lin.out_features))
            start += lin.out_features
        unit_path = f"{attn_path}.{fused_attr}"
        unit = LoRALinear(weight, bias, parts, unit_path, compute_dtype=_compute_dtype(lins[0]))
        # Release the separate tensors: the weight now lives once, in the unit.
        for p, lin, part in zip(paths, lins, parts):
            for param in lin.parameters(recurse=False):
                param.data = torch.empty(0, dtype=param.dtype, device=param.device)
            self.originals[p] = lin
            self.part_unit[p] = unit
            setattr(attn, p.rsplit(".", 1)[1], FusedAway(unit_path, part.start, part.stop))
        setattr(attn, fused_attr, unit)
        self.fused_attn.setdefault(attn_path, hasattr(attn, "fused_projections"))
        attn.fused_projections = True
        self.units[unit_path] = unit

    @torch.no_grad()
    def unpatch(self) -> None:
        """Put every original Linear back (bit for bit, for non-FP8 bases)."""
        model = self.model
        for unit_path, unit in list(self.units.items()):
            if len(unit.parts) == 1 and unit.parts[0].path == unit_path:
                lin = self.originals[unit_path]
                if unit.fp8_origin == "quantized":  # FP8 is one way: dequantized, or the kept original
                    lin.weight.data = unit.base_weight()
                _set_module(model, unit_path, lin)
            else:
                attn_path = unit_path.rsplit(".", 1)[0]
                attn = model.get_submodule(attn_path)
                weight, bias = unit.base_weight(), unit.base_bias()
                for part in unit.parts:
                    lin = self.originals[part.path]
                    lin.weight.data = weight[part.start : part.stop]
                    if lin.bias is not None:
                        lin.bias.data = bias[part.start : part.stop]
                    setattr(attn, part.path.rsplit(".", 1)[1], lin)
                delattr(attn, unit_path.rsplit(".", 1)[1])
            del self.units[unit_path]
        for attn_path, had_attr in self.fused_attn.items():
            attn = model.get_submodule(attn_path)
            if had_attr:
                attn.fused_projections = False
            elif "fused_projections" in attn.__dict__:
                del attn.__dict__["fused_projections"]
        self.fused_attn.clear()
        self.part_unit.clear()
        self.originals.clear()
        if "_vidlora_attached" in model.__dict__:
            del model.__dict__["_vidlora_attached"]
