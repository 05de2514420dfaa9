"""The model layer: one ``FamilySpec`` per model family and what is derived from it
(inventories, block numbering, module kinds, real configs on the meta device). Pure facts:
no I/O, nothing from the layers above.
"""

from .inventory import (
    Inventory,
    LinearInfo,
    block_index,
    block_linear_paths,
    describe,
    inventory,
    module_counts,
    module_kind,
)
from .meta import HUB_MODEL_IDS, REAL_CONFIGS, meta_transformer, transformer_class
from .names import BlockGroup, NameTable, Target
from .parallel_plan import CPPlan, Gather, Split
from .registry import FAMILIES, REFUSED, family_label, refusal_for, spec_for_arch, spec_for_class, spec_for_model
from .spec import MODULE_KINDS, FamilySpec, Fusion, GroupLayout, Signal, lycoris_label

__all__ = [
    "FamilySpec", "lycoris_label", "GroupLayout", "Fusion", "Signal", "MODULE_KINDS", "NameTable", "BlockGroup", "Target",
    "FAMILIES", "REFUSED", "refusal_for", "spec_for_arch", "spec_for_class", "spec_for_model", "family_label",
    "Inventory", "LinearInfo", "inventory", "block_index", "block_linear_paths", "describe", "module_kind",
    "module_counts", "REAL_CONFIGS", "HUB_MODEL_IDS", "meta_transformer", "transformer_class",
    "CPPlan", "Split", "Gather",
]  # fmt: skip
