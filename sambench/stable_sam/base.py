"""Resolve and load the frozen base model (SAM or HQ-SAM) a Stable-SAM plug-in sits on.

A Stable-SAM model card names its base with ``base: <card>`` (``stable-sam-vit-l`` → ``sam-vit-l``).
The base card's options (``variant``, ``seed``, ``hq_token_only``, ...) are the defaults; the Stable-SAM
card's options and the user's overrides win. Weights are found and loaded exactly as for the base
model itself (:func:`sambench.adapters.sam.load_sam_model`: explicit ``--checkpoint``, else the base
card's file in the checkpoint directory, else random init for cards without a checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Union

import torch

from sambench.cards import ModelCard, load_model_card
from sambench.stable_sam.modules import PluginConfig
from sambench.stable_sam.plugin_io import BaseSignature
from sambench.types import SambenchError

#: Options a Stable-SAM card or user may set besides the base SAM adapter's own.
#: ``introspect`` (bool, default false): put sampling locations and attention in ``Prediction.extras``;
#: ``top_k`` (int, 64): how many locations per prompt; ``allow_fresh_plugin`` (bool, false): run an
#: untrained plug-in (which reproduces the base exactly) when no ``--plugin`` is given; ``plugin_seed``
#: (int, 0): init seed of a fresh plug-in's routing MLP; plus every :class:`PluginConfig` field.
STABLE_OPTION_KEYS = ("introspect", "top_k", "allow_fresh_plugin", "plugin_seed") + tuple(
    f.name for f in fields(PluginConfig))

BASE_KINDS = {"sam": False, "hq-sam": True}


@dataclass
class LoadedBase:
    """The frozen base: the official ``Sam`` module, its card, parsed SAM options and signature."""

    model: torch.nn.Module
    card: ModelCard
    hq: bool
    sam_options: object  # sambench.adapters.sam.SamOptions
    signature: BaseSignature


def resolve_base_card(card: Union[str, ModelCard]) -> tuple[ModelCard, Optional[ModelCard]]:
    """``(base card, stable-sam card or None)`` for a card name/card that is a SAM/HQ-SAM card or a
    Stable-SAM card (whose ``base:`` is followed)."""
    c = card if isinstance(card, ModelCard) else load_model_card(card)
    if c.adapter == "stable-sam":
        base_name = c.raw.get("base")
        if not isinstance(base_name, str) or not base_name:
            raise SambenchError(f"{c.path or c.name}: a stable-sam card needs 'base: <sam or hq-sam card name>'")
        b = load_model_card(base_name)
        if b.adapter not in BASE_KINDS:
            raise SambenchError(f"{c.path or c.name}: base '{base_name}' is a '{b.adapter}' model; Stable-SAM needs a "
                                f"sam or hq-sam base")
        return b, c
    if c.adapter not in BASE_KINDS:
        raise SambenchError(f"model '{c.name}' is a '{c.adapter}' model; Stable-SAM needs a sam or hq-sam base")
    return c, None


def split_options(options: Optional[dict]) -> tuple[dict, dict]:
    """``(sam adapter options, stable-sam options)`` from one merged options dict."""
    opts = dict(options or {})
    stable = {k: v for k, v in opts.items() if k in STABLE_OPTION_KEYS}
    sam = {k: v for k, v in opts.items() if k not in STABLE_OPTION_KEYS}
    return sam, stable


def load_base(base_card: ModelCard, checkpoint: Optional[str], options: Optional[dict], where: str) -> LoadedBase:
    """Load the base model of ``base_card`` with ``options`` (base card options already merged in)."""
    from sambench.adapters.sam import load_sam_model, parse_options

    hq = BASE_KINDS[base_card.adapter]
    sam_opts = parse_options(options, hq=hq, where=where, extra_keys=STABLE_OPTION_KEYS)
    loaded = load_sam_model(base_card, hq=hq, options=sam_opts, checkpoint=checkpoint)
    sig = BaseSignature(card=base_card.name, variant=sam_opts.variant, hq=hq, weights_id=loaded.weights_id)
    model = loaded.model.eval()
    model.requires_grad_(False)
    return LoadedBase(model=model, card=base_card, hq=hq, sam_options=sam_opts, signature=sig)
