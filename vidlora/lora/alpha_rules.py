"""How a module's scale is derived: alpha keys, PEFT configs, rsLoRA.

Rules (notes §1.1): an ``.alpha`` tensor gives scale alpha / r, r the module's own rank
(a rank-32 musubi file with alpha 1 scales by 1/32); no alpha at all means scale 1;
alpha 0 is treated as missing (LightX2V does the same; musubi writes r in its place).
diffusers files carry no alpha keys but may carry ``lora_adapter_metadata`` (a PEFT
LoraConfig as JSON, keys optionally prefixed ``transformer.``); raw PEFT folders carry an
``adapter_config.json`` beside the weights. With either, alpha comes from
``alpha_pattern`` / ``lora_alpha`` and rsLoRA divides by sqrt(r) instead of r.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field

from vidlora.errors import LoRAFormatError

__all__ = ["PeftConfig", "peft_config_for", "scale_for", "sidecar_allowed", "PEFT_WEIGHTS_NAME"]


@dataclass
class PeftConfig:
    """The alpha-relevant part of a PEFT LoraConfig found with the file."""

    source: str  # where it came from, for evidence ("lora_adapter_metadata", "adapter_config.json")
    lora_alpha: float | None = None
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    use_rslora: bool = False
    use_dora: bool = False

    def alpha_for(self, *modules: str) -> float | None:
        """alpha_pattern entry matching one of the module's names (the file's own, then the
        diffusers path; PEFT matches a key as a suffix of the dotted module path, or as a
        regex), else lora_alpha."""
        for pattern, alpha in self.alpha_pattern.items():
            for module in modules:
                if module == pattern or module.endswith("." + pattern):
                    return float(alpha)
                try:
                    if re.fullmatch(rf"(.*\.)?{pattern}", module):
                        return float(alpha)
                except re.error:
                    continue
        return self.lora_alpha


def _from_mapping(path: str, source: str, config: object) -> PeftConfig:
    if not isinstance(config, dict):
        raise LoRAFormatError(f"{path}: {source} is not a JSON object")
    # diffusers pipelines save the transformer's config with a "transformer." prefix.
    if any(isinstance(k, str) and k.startswith("transformer.") for k in config):
        config = {k[len("transformer.") :]: v for k, v in config.items() if k.startswith("transformer.")}
    try:
        alpha = config.get("lora_alpha")
        pattern = config.get("alpha_pattern") or {}
        if not isinstance(pattern, dict):
            raise TypeError("alpha_pattern is not an object")
        return PeftConfig(
            source=source,
            lora_alpha=None if alpha is None else float(alpha),
            alpha_pattern={str(k): float(v) for k, v in pattern.items()},
            use_rslora=bool(config.get("use_rslora", False)),
            use_dora=bool(config.get("use_dora", False)),
        )
    except (TypeError, ValueError) as exc:
        raise LoRAFormatError(f"{path}: malformed {source} ({exc})") from None


# PEFT's save_pretrained writes adapter_model.safetensors with adapter_config.json beside it
PEFT_WEIGHTS_NAME = "adapter_model.safetensors"


def sidecar_allowed(path: str, prefixes: set[str]) -> bool:
    """Whether an ``adapter_config.json`` beside the file belongs to it: PEFT's own file name,
    or keys with PEFT's ``base_model.model.`` prefix (a save_pretrained file renamed)."""
    return os.path.basename(path) == PEFT_WEIGHTS_NAME or "base_model.model." in prefixes


def peft_config_for(path: str, metadata: dict[str, str], allow_sidecar: bool) -> PeftConfig | None:
    """The PEFT config that governs alpha for this file, if any.

    ``allow_sidecar``: also read ``adapter_config.json`` beside the file (raw PEFT
    ``save_pretrained`` folders, scheme W4b), which is where PEFT keeps lora_alpha.
    """
    raw = metadata.get("lora_adapter_metadata")
    if raw:
        try:
            return _from_mapping(path, "lora_adapter_metadata", json.loads(raw))
        except ValueError:
            raise LoRAFormatError(f"{path}: lora_adapter_metadata is not valid JSON") from None
    if allow_sidecar:
        sidecar = os.path.join(os.path.dirname(os.path.abspath(path)), "adapter_config.json")
        if os.path.isfile(sidecar):
            try:
                with open(sidecar, encoding="utf-8") as f:
                    return _from_mapping(path, "adapter_config.json", json.load(f))
            except (OSError, ValueError) as exc:
                raise LoRAFormatError(f"{sidecar}: unreadable adapter_config.json ({exc})") from None
    return None


def scale_for(alpha: float | None, rank: int, rslora: bool = False) -> float:
    """The multiplier of up @ down: alpha / r (alpha / sqrt(r) for rsLoRA); 1 without alpha."""
    if alpha is None or alpha == 0.0:
        return 1.0
    return float(alpha) / (math.sqrt(rank) if rslora else rank)
