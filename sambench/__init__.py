"""sambench: a benchmark harness for promptable segmentation under degraded prompts."""

__version__ = "0.1.0"
