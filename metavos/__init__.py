"""metavos: one-shot and label-efficient video object segmentation in JAX."""

__version__ = "0.1.0"
