"""What a file's ``__metadata__`` says: trigger words and training facts worth showing.

Keys (notes §4): ``modelspec.trigger_phrase`` (SAI ModelSpec), ``ss_tag_frequency`` (JSON
{dataset folder: {tag: count}}; kohya folders are named ``<repeats>_<trigger>`` and
ai-toolkit writes ``{"1_<trigger>": {"<trigger>": 1}}``), and a "trigger word: ..." line
in ``ss_training_comment``.
"""

from __future__ import annotations

import json
import re

__all__ = ["trigger_words", "training_summary", "SHOWN_KEYS"]

# Tags shown from ss_tag_frequency: those with the top count in each dataset, at most
# this many (a captioned dataset can list hundreds of tags; the trigger is in every caption).
_MAX_TAGS = 8
_COMMENT_TRIGGER = re.compile(
    r"(?:trigger|activation)[ _-]?(?:words?|phrases?|tokens?|tags?)?\s*(?:is|are|:|=)\s*([^\n;]+)", re.IGNORECASE
)
_FOLDER = re.compile(r"^\d+_(.+)$")

SHOWN_KEYS = (
    "modelspec.title", "modelspec.author", "modelspec.description", "modelspec.date", "modelspec.license",
    "modelspec.tags", "modelspec.resolution", "modelspec.usage_hint", "modelspec.architecture",
    "modelspec.implementation", "modelspec.timestep_range",
    "ss_base_model_version", "ss_sd_model_name", "ss_network_module", "ss_network_dim", "ss_network_alpha",
    "ss_network_args", "ss_output_name", "ss_steps", "ss_epoch", "ss_num_epochs", "ss_learning_rate", "ss_seed",
    "ss_discrete_flow_shift", "ss_timestep_sampling", "ss_training_started_at", "ss_training_finished_at",
    "ss_training_comment", "training_info", "software", "name", "version",
)
_MAX_VALUE = 300


def _add(words: list[str], word: str) -> None:
    word = word.strip().strip("\"'")
    if word and word.lower() not in (w.lower() for w in words):
        words.append(word)


def _from_tag_frequency(raw: str, words: list[str]) -> None:
    try:
        table = json.loads(raw)
    except ValueError:
        return
    if not isinstance(table, dict):
        return
    for folder, tags in table.items():
        m = _FOLDER.match(str(folder))
        if m:
            _add(words, m.group(1))
        if isinstance(tags, dict):
            counts = {str(t): c for t, c in tags.items() if isinstance(c, (int, float))}
            if counts:
                top = max(counts.values())
                for tag in [t for t, c in counts.items() if c == top][:_MAX_TAGS]:
                    _add(words, tag)


def trigger_words(metadata: dict[str, str]) -> list[str]:
    """Trigger words / phrases in the order: ModelSpec, tag frequency, training comment."""
    words: list[str] = []
    phrase = metadata.get("modelspec.trigger_phrase", "")
    for part in phrase.split(","):
        _add(words, part)
    if "ss_tag_frequency" in metadata:
        _from_tag_frequency(metadata["ss_tag_frequency"], words)
    comment = metadata.get("ss_training_comment", "")
    for m in _COMMENT_TRIGGER.finditer(comment):
        for part in m.group(1).split(","):
            _add(words, part)
    return words


def training_summary(metadata: dict[str, str]) -> dict[str, str]:
    """The metadata entries worth showing a user, long values shortened."""
    out = {}
    for key in SHOWN_KEYS:
        value = metadata.get(key)
        if value:
            out[key] = value if len(value) <= _MAX_VALUE else value[: _MAX_VALUE - 3] + "..."
    return out
