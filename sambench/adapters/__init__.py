"""Model adapters, registered by name.

A model card (``models/<name>.yaml``) names an ``adapter``; the name maps to a factory here or in the
``sambench.adapters`` entry-point group, so another package can add adapters:

    [project.entry-points."sambench.adapters"]
    my-model = "my_package.sambench_adapter:build"

A factory is called as ``factory(card, **runtime)`` where ``runtime`` holds ``device``, ``checkpoint``,
``plugin`` and ``options`` (card options overridden by the user) and returns an :class:`Adapter`.

The registry also answers the questions the runner and the command line ask about a model before
building it: is it a CPU-parallel baseline (:func:`is_cpu_baseline`: a process pool over images pays
off, no weights, no torch) and which model a ``--checkpoint PATH`` is for (:func:`route_files`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Optional

from sambench.adapters.base import MASK_SELECTIONS, PREPROCESSING_MODES, Adapter, OptionValueError, UnknownOptionsError
from sambench.config import ModelCard, load_model_card
from sambench.types import SambenchError, did_you_mean


@dataclass(frozen=True)
class AdapterEntry:
    """A registered adapter: its factory (``"module:function"``, imported lazily: torch is only loaded when
    needed) and whether it is a classical CPU baseline (pure Python/OpenCV, no weights: a process pool over
    images speeds it up and no malloc tuning is needed)."""

    target: str
    cpu_baseline: bool = False


#: Built-in adapters.
BUILTIN = {
    "box-fill": AdapterEntry("sambench.adapters.baselines:build_box_fill", cpu_baseline=True),
    "grabcut": AdapterEntry("sambench.adapters.baselines:build_grabcut", cpu_baseline=True),
    "sam": AdapterEntry("sambench.adapters.sam.adapter:build_sam"),
    "hq-sam": AdapterEntry("sambench.adapters.sam.adapter:build_hq_sam"),
    "stable-sam": AdapterEntry("sambench.adapters.stable_sam.adapter:build_stable_sam"),
    "sam2": AdapterEntry("sambench.adapters.sam2:build_sam2_adapter"),
    "hf": AdapterEntry("sambench.adapters.hf:build_hf"),
    "hf-sam": AdapterEntry("sambench.adapters.hf:build_hf"),
    "hf-sam-hq": AdapterEntry("sambench.adapters.hf:build_hf"),
    "hf-sam2": AdapterEntry("sambench.adapters.hf:build_hf"),
    "hf-sam3-tracker": AdapterEntry("sambench.adapters.hf:build_hf"),
    "hf-edgetam": AdapterEntry("sambench.adapters.hf:build_hf"),
}

ENTRY_POINT_GROUP = "sambench.adapters"


def _resolve(target: str) -> Callable[..., Adapter]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def registered_adapters() -> dict[str, AdapterEntry]:
    """Adapter name → entry, built-ins first, then entry points (which may not shadow built-ins)."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, AdapterEntry(ep.value))
    return found


def _card(model: str | ModelCard) -> ModelCard:
    return model if isinstance(model, ModelCard) else load_model_card(model)


def is_cpu_baseline(model: str | ModelCard) -> bool:
    """True when the model's adapter is a classical CPU baseline (:class:`AdapterEntry`)."""
    return is_cpu_baseline_adapter(_card(model).adapter)


def is_cpu_baseline_adapter(adapter: str) -> bool:
    """True when ``adapter`` (an adapter name, e.g. an adapter object's ``signature()["adapter"]``) is a
    registered classical CPU baseline; any other name, unknown or empty, is not a baseline."""
    entry = BUILTIN.get(adapter)
    return bool(entry and entry.cpu_baseline)


def route_files(values: tuple | list, models: list[str], option: str) -> dict[str, str]:
    """Assign ``--checkpoint``/``--plugin`` values to models: ``MODEL=PATH``, or a bare ``PATH`` when one
    model of the run can take it (the only model, or the only one that is not a CPU baseline)."""
    out: dict[str, str] = {}
    for v in values:
        if "=" in v and v.split("=", 1)[0] in models:
            m, p = v.split("=", 1)
            out[m] = p
            continue
        takers = models if len(models) == 1 else [m for m in models if not is_cpu_baseline(m)]
        if len(takers) != 1:
            raise SambenchError(f"--{option} {v}: several models in this run; write --{option} MODEL=PATH")
        out[takers[0]] = v
    return out


def build_adapter(model: str | ModelCard, *, device: str = "auto", checkpoint: Optional[str] = None,
                  plugin: Optional[str] = None, options: Optional[dict[str, Any]] = None) -> Adapter:
    """Build the adapter a model card describes (``model`` is a card name, a card file or a card)."""
    card = _card(model)
    known = registered_adapters()
    if card.video and card.adapter not in known:  # a video-only card (docs/video.md "Models")
        raise SambenchError(f"model '{card.name}' is a video model ({card.path}: video: true): it runs with a video "
                            f"protocol, through sambench.adapters.video.build_video_adapter")
    if card.adapter not in known:
        raise SambenchError(f"{card.path}: unknown adapter '{card.adapter}' (known: {', '.join(sorted(known))})")
    factory = _resolve(known[card.adapter].target)
    merged = {**card.options, **(options or {})}
    try:
        return factory(card, device=device, checkpoint=checkpoint, plugin=plugin, options=merged)
    except UnknownOptionsError as exc:
        given = [k for k in exc.keys if k in (options or {})]
        if not given:  # only the card's own options are unknown: the card file is to blame
            raise
        known = ", ".join(exc.known) or "none"
        raise SambenchError(f"--option {given[0]}: unknown option '{given[0]}' for model '{card.name}'"
                            f"{did_you_mean(given[0], exc.known)} (its options: {known})") from None
    except OptionValueError as exc:
        if exc.key not in (options or {}):  # the card's own value is refused: the card file is to blame
            raise
        raise SambenchError(f"--option {card.name}.{exc.key}={options[exc.key]}: model '{card.name}': "
                            f"option '{exc.key}' {exc.problem}") from None


__all__ = ["Adapter", "AdapterEntry", "BUILTIN", "MASK_SELECTIONS", "PREPROCESSING_MODES", "build_adapter",
           "is_cpu_baseline", "is_cpu_baseline_adapter", "registered_adapters", "route_files"]
