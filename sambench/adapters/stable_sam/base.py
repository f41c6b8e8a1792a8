"""Resolve and load the frozen base model (SAM, HQ-SAM or SAM 2.1) a Stable-SAM plug-in sits on.

A Stable-SAM model card names its base with ``base: <card>`` (``stable-sam-vit-l`` → ``sam-vit-l``).
The base card's options (``variant``, ``seed``, ``hq_token_only``, ...) are the defaults; the Stable-SAM
card's options and the user's overrides win. Weights are found and loaded exactly as for the base
model itself (:func:`sambench.adapters.sam.adapter.load_sam_model`, :func:`sambench.adapters.sam2.load_sam2_model`:
explicit ``--checkpoint``, else the base card's file in the checkpoint directory, else random init for
cards without a checkpoint). Before anything is loaded, :func:`missing_files` names every file a run
lacks and the commands that get them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Union

import torch

from sambench.adapters.sam.adapter import load_sam_model, parse_options
from sambench.adapters.sam2 import load_sam2_model, parse_sam2_options
from sambench.adapters.weights import checkpoint_dir
from sambench.config import ModelCard, load_model_card
from sambench.adapters.stable_sam.modules import PluginConfig
from sambench.adapters.stable_sam.plugin_io import BaseSignature
from sambench.types import SambenchError

#: Options a Stable-SAM card or user may set besides the base SAM adapter's own.
#: ``introspect`` (bool, default false): put sampling locations and attention in ``Prediction.extras``;
#: ``top_k`` (int, 64): how many locations per prompt; ``allow_fresh_plugin`` (bool, false): run an
#: untrained plug-in (which reproduces the base exactly) when no ``--plugin`` is given; ``plugin_seed``
#: (int, 0): init seed of a fresh plug-in's routing MLP; plus every :class:`PluginConfig` field.
STABLE_OPTION_KEYS = ("introspect", "top_k", "allow_fresh_plugin", "plugin_seed") + tuple(
    f.name for f in fields(PluginConfig))

#: Base adapter kinds → HQ-SAM or not. ``sam2``: SAM 2.1 on the official ``sam2`` package.
BASE_KINDS = {"sam": False, "hq-sam": True, "sam2": False}


@dataclass
class LoadedBase:
    """The frozen base: the official ``Sam`` (or SAM 2 ``SAM2Base``) module, its card, parsed options and signature."""

    model: torch.nn.Module
    card: ModelCard
    hq: bool
    sam_options: object  # sambench.adapters.sam.adapter.SamOptions
    signature: BaseSignature


def resolve_base_card(card: Union[str, ModelCard]) -> tuple[ModelCard, Optional[ModelCard]]:
    """``(base card, stable-sam card or None)`` for a card name/card that is a SAM/HQ-SAM card or a
    Stable-SAM card (whose ``base:`` is followed)."""
    c = card if isinstance(card, ModelCard) else load_model_card(card)
    if c.adapter == "stable-sam":
        base_name = c.raw.get("base")
        if not isinstance(base_name, str) or not base_name:
            raise SambenchError(f"{c.path or c.name}: a stable-sam card needs 'base: <sam, hq-sam or sam2 card name>'")
        b = load_model_card(base_name)
        if b.adapter not in BASE_KINDS:
            raise SambenchError(f"{c.path or c.name}: base '{base_name}' is a '{b.adapter}' model; Stable-SAM needs a "
                                f"sam, hq-sam or sam2 base")
        return b, c
    if c.adapter not in BASE_KINDS:
        raise SambenchError(f"model '{c.name}' is a '{c.adapter}' model; Stable-SAM needs a sam, hq-sam or sam2 base")
    return c, None


#: The plug-in file a Stable-SAM card uses when no ``--plugin`` is given: ``<card>.plugin.pt`` in the
#: checkpoint directory (``$SAMBENCH_CHECKPOINTS``), where ``sambench train stable-sam --out`` can put it.
PLUGIN_SUFFIX = ".plugin.pt"

#: The training data in the error message: HQ-SAM's HQSeg-44K layout (docs/stable-sam.md "Training").
DEFAULT_TRAIN_DATA = "/data/HQSeg-44K/DIS5K/DIS-TR"


def default_plugin_path(card: ModelCard) -> Path:
    """``$SAMBENCH_CHECKPOINTS/<card name>.plugin.pt`` (the plug-in a card uses without ``--plugin``)."""
    return checkpoint_dir() / f"{card.name}{PLUGIN_SUFFIX}"


def missing_files(card: ModelCard, base_card: ModelCard, checkpoint: Optional[str], plugin: Optional[str],
                  allow_fresh: bool, random_init: bool) -> Optional[str]:
    """One line naming every file a Stable-SAM run lacks and the commands that get them, or None.

    Checked before anything is loaded, so that ``sambench run --model stable-sam`` on a machine without
    weights fails once, saying all of it: the base checkpoint (``sambench download <base>``) and the
    trained plug-in (``sambench train stable-sam --base <base> ... --out <default plug-in path>``).
    """
    missing, commands = [], []
    spec = base_card.checkpoint
    if checkpoint is None and spec is not None and not random_init and not (checkpoint_dir() / spec.file).is_file():
        missing.append(f"the {base_card.name} checkpoint {spec.file}")
        commands.append(f"`sambench download {base_card.name}`")
    if plugin is None and not allow_fresh and not default_plugin_path(card).is_file():
        missing.append(f"a trained plug-in {default_plugin_path(card).name}")
        commands.append(f"`sambench train stable-sam --base {base_card.name} --data {DEFAULT_TRAIN_DATA} "
                        f"--out {default_plugin_path(card)}` (HQSeg-44K's training sets, docs/stable-sam.md)")
    if not missing:
        return None
    return (f"model '{card.name}' needs {' and '.join(missing)}, not found in {checkpoint_dir()} (set "
            f"$SAMBENCH_CHECKPOINTS, or pass --checkpoint / --plugin); get {'them' if len(missing) > 1 else 'it'} "
            f"with {' then '.join(commands)}")


def split_options(options: Optional[dict]) -> tuple[dict, dict]:
    """``(sam adapter options, stable-sam options)`` from one merged options dict."""
    opts = dict(options or {})
    stable = {k: v for k, v in opts.items() if k in STABLE_OPTION_KEYS}
    sam = {k: v for k, v in opts.items() if k not in STABLE_OPTION_KEYS}
    return sam, stable


def load_base(base_card: ModelCard, checkpoint: Optional[str], options: Optional[dict], where: str) -> LoadedBase:
    """Load the base model of ``base_card`` with ``options`` (base card options already merged in)."""
    hq = BASE_KINDS[base_card.adapter]
    if base_card.adapter == "sam2":
        opts2 = parse_sam2_options(options, where=where, extra_keys=STABLE_OPTION_KEYS)
        loaded2 = load_sam2_model(base_card, options=opts2, checkpoint=checkpoint)
        sig = BaseSignature(card=base_card.name, variant=opts2.variant, hq=False, weights_id=loaded2.weights_id)
        model = loaded2.model.eval()
        model.requires_grad_(False)
        return LoadedBase(model=model, card=base_card, hq=False, sam_options=opts2, signature=sig)
    sam_opts = parse_options(options, hq=hq, where=where, extra_keys=STABLE_OPTION_KEYS)
    loaded = load_sam_model(base_card, hq=hq, options=sam_opts, checkpoint=checkpoint)
    sig = BaseSignature(card=base_card.name, variant=sam_opts.variant, hq=hq, weights_id=loaded.weights_id)
    model = loaded.model.eval()
    model.requires_grad_(False)
    return LoadedBase(model=model, card=base_card, hq=hq, sam_options=sam_opts, signature=sig)
