"""The interactive protocol's run path: click sequences of one (model, image), apart from the batch path.

The batch path (``sambench.execution.runner.evaluate_image``) decodes independent, pre-computed prompts in chunks.
A click sequence cannot be pre-computed: click k+1 depends on the model's mask after click k. So each
object's sequence runs here, one decoder call per step, against the **same encoded image**: the runner
hands over ``state_for(preprocessing)``, which encodes at most once per image and preprocessing mode
and is shared with the batch path (one encode per image, never one per click or per object).

Rows: one per step, keyed (model, dataset, image, object, protocol, level = clicks so far, draw = the
start box's draw); the stored prompt is the one the model was given at that step (start box and all
clicks so far), ``extras`` = ``{"click": [x, y, label]}`` (the step's new click) or ``{"carried": true}``
(nothing left to click, see :mod:`sambench.inputs.clicks`). Resume: a sequence whose every step is stored is
skipped; otherwise it is replayed whole (models and clicks are deterministic) and only its missing steps
are written, in the image's one transaction.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from sambench.adapters.base import Adapter
from sambench.config import ClickSettings
from sambench.inputs.clicks import Step, run_sequence
from sambench.metrics import boundary_iou, encode_rle, iou
from sambench.inputs.prompts import gt_box, noisy_box, prompt_rng
from sambench.store import Row
from sambench.types import Object, Prompt, SambenchError, canonical_json

#: (corruption, severity) of the clean image: the rest of a stored row key (sambench.store.IMAGE_ROW_COLUMNS).
CLEAN_KEY = ("none", 0)


def start_box(card, clicks: ClickSettings, dataset: str, image_id: str, obj: Object, draw: int) -> Optional[tuple]:
    """The start box of one sequence: None (first click), the GT box, or a keyed noisy box (level "0")."""
    if clicks.start == "click":
        return None
    box = gt_box(obj.mask)
    if clicks.start == "gt-box":
        return box
    rng = prompt_rng(card.seed, card.name, card.version, "0", draw, dataset, image_id, obj.id)
    return noisy_box(box, obj.mask.shape[:2], clicks.start_scale, rng)


def _row(card, model: str, sample, obj_id: str, level: int, draw: int, prompt: Optional[Prompt], **kw: Any) -> Row:
    return Row(model=model, dataset=sample.dataset, image_id=sample.image_id, object_id=obj_id, protocol=card.name,
               level=str(level), draw=draw, protocol_version=card.version, level_value=float(level),
               prompt=prompt.to_json() if prompt is not None else None,
               prompt_hash=prompt.hash() if prompt is not None else None, **kw)


def _step_row(card, model: str, sample, obj: Object, draw: int, step: Step, previous: Optional[Prompt]) -> Row:
    if step.error is not None:
        return _row(card, model, sample, obj.id, step.level, draw, step.prompt, status="failed", error=step.error)
    if step.mask.shape != obj.mask.shape:
        return _row(card, model, sample, obj.id, step.level, draw, step.prompt, status="failed",
                    error=f"model '{model}' returned a {step.mask.shape} mask for a {obj.mask.shape} image")
    if step.carried:
        extras: Optional[dict] = {"carried": True}
    elif step.prompt.points and (previous is None or step.prompt.points != previous.points):
        (x, y), lab = step.prompt.points[-1], step.prompt.labels[-1]
        extras = {"click": [x, y, lab]}
    else:
        extras = None
    return _row(card, model, sample, obj.id, step.level, draw, step.prompt,
                iou=iou(step.mask, obj.mask, obj.ignore), biou=boundary_iou(step.mask, obj.mask, ignore=obj.ignore),
                score=None if np.isnan(step.score) else float(step.score),
                gt_area=int(np.count_nonzero(obj.mask)), pred_area=int(np.count_nonzero(step.mask)),
                mask_rle=canonical_json(encode_rle(step.mask)), extras=canonical_json(extras) if extras else None,
                status="ok")


def _failed_sequence(card, clicks: ClickSettings, model: str, sample, obj_id: str, draw: int, error: str,
                     done: set, corruption: tuple = CLEAN_KEY) -> list[Row]:
    return [_row(card, model, sample, obj_id, lv, draw, None, status="failed", error=error)
            for lv in clicks.levels if (obj_id, card.name, str(lv), draw) + tuple(corruption) not in done]


def sequence_predictor(adapter: Adapter, state: Any, mask_selection: str, feed_logits: bool):
    """``predict(prompt, mask_input) -> (mask, score, logits)`` of one prompt against an encoded image;
    logits are asked for (and fed back) only when the adapter takes mask prompts and the card wants it."""
    use_masks = feed_logits and adapter.mask_prompts

    def predict(prompt: Prompt, mask_input: Any):
        if use_masks:
            pred = adapter.predict(state, [prompt], mask_selection=mask_selection, mask_inputs=[mask_input],
                                   return_logits=True)
            return pred.masks[0], float(pred.scores[0]), pred.low_res_logits[0]
        pred = adapter.predict(state, [prompt], mask_selection=mask_selection)
        return pred.masks[0], float(pred.scores[0]), None

    return predict


def evaluate_clicks(adapter: Adapter, model: str, sample, card, done: set, state_for: Callable[[str], Any],
                    describe: Callable[[Exception, str], str], corruption: tuple = CLEAN_KEY) -> list[Row]:
    """Every missing row of click protocol ``card`` (a card with ``clicks`` settings) for one (model, image).

    ``sample.image`` is the image the model sees: the clean one, or its copy under ``corruption`` =
    (name, severity). The sequence is the clean one's in every other respect: the same GT, the same
    (keyed) start box, the same click rule, so a corrupted sequence differs only by the model's masks.
    ``done``: (object_id, protocol, level, draw, corruption, severity) already stored. ``state_for(preprocessing)``
    returns the image's encoded state (encoding it on first use, through the embedding cache;
    ``sambench.execution.runner._click_rows``) or raises;
    ``describe(exc, context)`` makes the one-line error of a failed row.
    """
    clicks: ClickSettings = card.clicks
    corruption = tuple(corruption)
    where = f"{sample.dataset}/{sample.image_id}" + ("" if not corruption[1] else f" under {corruption[0]}:{corruption[1]}")
    rows: list[Row] = []
    draws = 1 if clicks.deterministic else card.draws
    for obj in sample.objects:
        for draw in range(draws):
            if all((obj.id, card.name, str(lv), draw) + corruption in done for lv in clicks.levels):
                continue
            if not adapter.interactive:
                rows += _failed_sequence(card, clicks, model, sample, obj.id, draw,
                                         f"model '{model}' ignores clicks: its mask cannot follow corrections", done,
                                         corruption)
                continue
            try:
                box = start_box(card, clicks, sample.dataset, sample.image_id, obj, draw)
            except SambenchError as exc:  # an empty mask has no box
                rows += _failed_sequence(card, clicks, model, sample, obj.id, draw, f"{where}/{obj.id}: {exc}", done,
                                         corruption)
                continue
            try:
                state = state_for(card.preprocessing)
            except Exception as exc:
                rows += _failed_sequence(card, clicks, model, sample, obj.id, draw,
                                         describe(exc, f"model '{model}' failed to encode {where}"), done, corruption)
                continue
            predict = sequence_predictor(adapter, state, card.mask_selection, clicks.feed_logits)
            steps = run_sequence(obj.mask, predict, clicks.max_clicks, ignore=obj.ignore, start_box=box,
                                 feed_logits=clicks.feed_logits,
                                 describe_error=lambda e: describe(e, f"model '{model}' failed to decode on {where}"))
            previous = None
            for step in steps:
                if (obj.id, card.name, str(step.level), draw) + corruption not in done:
                    rows.append(_step_row(card, model, sample, obj, draw, step, previous))
                previous = step.prompt
    return rows
