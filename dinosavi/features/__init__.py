"""Frozen-encoder features computed once: in memory for small sets (and the on-disk store)."""
