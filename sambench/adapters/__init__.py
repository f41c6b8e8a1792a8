"""Model adapters, registered by name.

A model card (``models/<name>.yaml``) names an ``adapter`` kind; the kind maps to a factory here or in
the ``sambench.adapters`` entry-point group, so another package can add adapters:

    [project.entry-points."sambench.adapters"]
    my-model = "my_package.sambench_adapter:build"

A factory is called as ``factory(card, **runtime)`` where ``runtime`` holds ``device``, ``checkpoint``,
``plugin`` and ``options`` (card options overridden by the user) and returns an :class:`Adapter`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, Callable, Optional

from sambench.adapters.base import Adapter, MASK_SELECTIONS, PREPROCESSING_MODES
from sambench.cards import ModelCard, load_model_card
from sambench.types import SambenchError

#: Built-in adapter kinds → "module:factory" (imported lazily: torch is only loaded when needed).
BUILTIN = {
    "box-fill": "sambench.adapters.baselines:build_box_fill",
    "grabcut": "sambench.adapters.baselines:build_grabcut",
    "sam": "sambench.adapters.sam:build_sam",
    "hq-sam": "sambench.adapters.sam:build_hq_sam",
    "stable-sam": "sambench.adapters.stable_sam:build_stable_sam",
    "sam2": "sambench.adapters.sam2:build_sam2_adapter",
    "hf": "sambench.adapters.hf:build_hf",
    "hf-sam": "sambench.adapters.hf:build_hf",
    "hf-sam-hq": "sambench.adapters.hf:build_hf",
    "hf-sam2": "sambench.adapters.hf:build_hf",
    "hf-sam3-tracker": "sambench.adapters.hf:build_hf",
    "hf-edgetam": "sambench.adapters.hf:build_hf",
}

ENTRY_POINT_GROUP = "sambench.adapters"


def _resolve(target: str) -> Callable[..., Adapter]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def adapter_kinds() -> dict[str, str]:
    """Adapter kind → target, built-ins first, then entry points (which may not shadow built-ins)."""
    kinds = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kinds.setdefault(ep.name, ep.value)
    return kinds


def build_adapter(model: str | ModelCard, *, device: str = "auto", checkpoint: Optional[str] = None,
                  plugin: Optional[str] = None, options: Optional[dict[str, Any]] = None) -> Adapter:
    """Build the adapter a model card describes (``model`` is a card name, a card file or a card)."""
    card = model if isinstance(model, ModelCard) else load_model_card(model)
    kinds = adapter_kinds()
    if card.adapter not in kinds:
        raise SambenchError(f"{card.path}: unknown adapter '{card.adapter}' (known: {', '.join(sorted(kinds))})")
    factory = _resolve(kinds[card.adapter])
    merged = {**card.options, **(options or {})}
    return factory(card, device=device, checkpoint=checkpoint, plugin=plugin, options=merged)


__all__ = ["Adapter", "MASK_SELECTIONS", "PREPROCESSING_MODES", "adapter_kinds", "build_adapter", "BUILTIN"]
