"""LoRA file readers (placeholder until the formats issue lands)."""
