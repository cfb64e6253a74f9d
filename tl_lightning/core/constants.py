"""Project-wide constants."""

IGNORE_INDEX = -100
"""Label value ignored by the loss (PyTorch's `cross_entropy` default)."""
