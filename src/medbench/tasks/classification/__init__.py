"""The classification family: class labels (binary, multi-class, multi-label, ordinal)."""
