"""sambench: a benchmark harness for promptable segmentation under degraded prompts.

The Python API (docs/python-api.md) is exported lazily, so that ``import sambench`` loads neither torch
nor the runner: ``sambench.run``, ``sambench.open_run``, ``sambench.Run`` and the types a user implements
or catches (``Adapter``, ``Prediction``, ``Prompt``, ``Dataset``, ``DatasetSpec``, ``SambenchError``).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name → the module that defines it (imported on first access).
_LAZY = {
    "run": "sambench.api",
    "open_run": "sambench.api",
    "Run": "sambench.api",
    "Adapter": "sambench.adapters.base",
    "Prediction": "sambench.types",
    "Prompt": "sambench.types",
    "SambenchError": "sambench.types",
    "Dataset": "sambench.datasets",
    "DatasetSpec": "sambench.datasets",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'sambench' has no attribute '{name}'")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
