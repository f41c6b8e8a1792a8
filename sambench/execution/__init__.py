"""How a run executes: configuration, the run loop, engines, the batch and click paths, the ledger.

``run(config)`` (:mod:`~sambench.execution.runner`) reads top-down through the stages: :mod:`.config`
(RunConfig, its checks, THE default run directory and THE worker count), :mod:`.ledger` (identities,
invocations, manifest), :mod:`.engines` and :mod:`.ray` (where images run), :mod:`.work` (the unit of work
and the worker entry points), :mod:`.image` (the batch path of a batch of images), :mod:`.sequences` (the
click path), :mod:`.rows` (the one row builder), :mod:`.stability` (the per-object stability stored with
the rows), and the helpers :mod:`.encode`, :mod:`.cache`, :mod:`.loader`, :mod:`.lifetime`, :mod:`.lock`,
:mod:`.timing`, :mod:`.export`.

The public names below are exported lazily, so that importing one helper module (the embedding cache for
``sambench cache``) does not load the run loop.
"""

from __future__ import annotations

import importlib

#: Public name → the module of this folder that defines it (imported on first access).
_LAZY = {
    "RunConfig": "sambench.execution.config",
    "OPTIONS": "sambench.execution.config",
    "default_run_dir": "sambench.execution.config",
    "default_workers": "sambench.execution.config",
    "worker_count": "sambench.execution.config",
    "RunResult": "sambench.execution.runner",
    "run": "sambench.execution.runner",
    "select_images": "sambench.execution.runner",
    "ENGINES": "sambench.execution.engines",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'sambench.execution' has no attribute '{name}'")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
