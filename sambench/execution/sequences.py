"""The interactive protocol's run path: click sequences of one (model, image), apart from the batch path.

The batch path (:func:`sambench.execution.image.evaluate_images`) decodes independent, pre-computed prompts
in chunks. A click sequence cannot be pre-computed: click k+1 depends on the model's mask after click k. So
each object's sequence runs here, one decoder call per step, against the **same encoded image**: the batch
path hands over ``state_for(preprocessing)``, which encodes at most once per image and preprocessing mode
and is shared with the batch path (one encode per image, never one per click or per object).

Rows: one per step, keyed (model, dataset, image, object, protocol, level = clicks so far, draw = the
start box's draw, condition), built and scored by the same code as batch rows
(:func:`sambench.execution.rows.mask_row`, the fast scorer); the stored prompt is the one the model was given
at that step (start box and all clicks so far), ``extras`` = ``{"click": [x, y, label]}`` (the step's new
click) or ``{"carried": true}`` (nothing left to click, see :mod:`sambench.inputs.clicks`). Resume: a
sequence whose every step is stored is skipped; otherwise it is replayed whole (models and clicks are
deterministic) and only its missing steps are written, in the image's one transaction.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from sambench.adapters.base import Adapter
from sambench.execution.rows import CLEAN_CONDITION, check_mask_count, describe, done_key, failed_row, mask_row, where
from sambench.config import ClickSettings
from sambench.inputs.clicks import Step, run_sequence
from sambench.inputs.prompts import PromptTask, gt_box, noisy_box, prompt_rng
from sambench.metrics.fast import ImageScorer
from sambench.store import Row
from sambench.types import Object, Prompt, SambenchError


def start_box(card, clicks: ClickSettings, dataset: str, image_id: str, obj: Object, draw: int) -> Optional[tuple]:
    """The start box of one sequence: None (first click), the GT box, or a keyed noisy box (level "0")."""
    if clicks.start == "click":
        return None
    box = gt_box(obj.mask)
    if clicks.start == "gt-box":
        return box
    rng = prompt_rng(card.seed, card.name, card.version, "0", draw, dataset, image_id, obj.id)
    return noisy_box(box, obj.mask.shape[:2], clicks.start_scale, rng)


def step_task(card, obj_id: str, level: int, draw: int, prompt: Optional[Prompt]) -> PromptTask:
    """The task of one step: level = clicks so far (as text, and as the level value)."""
    return PromptTask(protocol=card.name, version=card.version, level=str(level), level_value=float(level), draw=draw,
                      object_id=obj_id, prompt=prompt)


def _step_extras(step: Step, previous: Optional[Prompt]) -> Optional[dict]:
    """``{"carried": true}``, the step's new click ``{"click": [x, y, label]}``, or None (the box alone)."""
    if step.carried:
        return {"carried": True}
    if step.prompt.points and (previous is None or step.prompt.points != previous.points):
        (x, y), lab = step.prompt.points[-1], step.prompt.labels[-1]
        return {"click": [x, y, lab]}
    return None


def _step_row(card, model: str, sample, obj: Object, draw: int, step: Step, previous: Optional[Prompt],
              scorer: ImageScorer) -> Row:
    task = step_task(card, obj.id, step.level, draw, step.prompt)
    if step.error is not None:
        return failed_row(task, model, sample, step.error)
    return mask_row(task, model, sample, step.mask, scorer.object(obj.id), step.score, _step_extras(step, previous))


def _failed_sequence(card, clicks: ClickSettings, model: str, sample, obj_id: str, draw: int, error: str,
                     done: set, condition: tuple) -> list[Row]:
    tasks = (step_task(card, obj_id, lv, draw, None) for lv in clicks.levels)
    return [failed_row(t, model, sample, error) for t in tasks if done_key(t, condition) not in done]


def sequence_predictor(adapter: Adapter, state: Any, mask_selection: str, feed_logits: bool,
                       model: Optional[str] = None, place: str = "a click step"):
    """``predict(prompt, mask_input) -> (mask, score, logits)`` of one prompt against an encoded image;
    logits are asked for (and fed back) only when the adapter takes mask prompts and the card wants it. A
    prediction without exactly one mask fails the step (:func:`~sambench.execution.rows.check_mask_count`)."""
    use_masks = feed_logits and adapter.mask_prompts
    name = model or adapter.name

    def predict(prompt: Prompt, mask_input: Any):
        if use_masks:
            pred = adapter.predict(state, [prompt], mask_selection=mask_selection, mask_inputs=[mask_input],
                                   return_logits=True)
            check_mask_count(pred, 1, name, place)
            return pred.masks[0], float(pred.scores[0]), pred.low_res_logits[0]
        pred = adapter.predict(state, [prompt], mask_selection=mask_selection)
        check_mask_count(pred, 1, name, place)
        return pred.masks[0], float(pred.scores[0]), None

    return predict


def evaluate_clicks(adapter: Adapter, model: str, sample, card, done: set, state_for: Callable[[str], Any],
                    scorer: ImageScorer, condition: tuple = CLEAN_CONDITION) -> list[Row]:
    """Every missing row of click protocol ``card`` (a card with ``clicks`` settings) for one (model, image).

    ``sample.image`` is the image the model sees: the clean one, or its copy under ``condition`` =
    (corruption, severity). The sequence is the clean one's in every other respect: the same GT, the same
    (keyed) start box, the same click rule, so a corrupted sequence differs only by the model's masks.
    ``done``: the :func:`~sambench.execution.rows.done_key` of every row already stored.
    ``state_for(preprocessing)`` returns the image's encoded state (encoding it on first use, through the
    embedding cache) or raises; ``scorer`` holds the image's ground truth, shared with the batch path.
    """
    clicks: ClickSettings = card.clicks
    condition = tuple(condition)
    place = where(sample, condition)
    rows: list[Row] = []
    draws = 1 if clicks.deterministic else card.draws
    for obj in sample.objects:
        for draw in range(draws):
            if all(done_key(step_task(card, obj.id, lv, draw, None), condition) in done for lv in clicks.levels):
                continue
            if not adapter.interactive:
                rows += _failed_sequence(card, clicks, model, sample, obj.id, draw,
                                         f"model '{model}' ignores clicks: its mask cannot follow corrections", done,
                                         condition)
                continue
            try:
                box = start_box(card, clicks, sample.dataset, sample.image_id, obj, draw)
            except SambenchError as exc:  # an empty mask has no box
                rows += _failed_sequence(card, clicks, model, sample, obj.id, draw, f"{place}/{obj.id}: {exc}", done,
                                         condition)
                continue
            try:
                state = state_for(card.preprocessing)
            except Exception as exc:
                rows += _failed_sequence(card, clicks, model, sample, obj.id, draw,
                                         describe(exc, f"model '{model}' failed to encode {place}"), done, condition)
                continue
            predict = sequence_predictor(adapter, state, card.mask_selection, clicks.feed_logits, model, place)
            steps = run_sequence(obj.mask, predict, clicks.max_clicks, ignore=obj.ignore, start_box=box,
                                 feed_logits=clicks.feed_logits,
                                 describe_error=lambda e: describe(e, f"model '{model}' failed to decode on {place}"))
            previous = None
            for step in steps:
                if done_key(step_task(card, obj.id, step.level, draw, None), condition) not in done:
                    rows.append(_step_row(card, model, sample, obj, draw, step, previous, scorer))
                previous = step.prompt
    return rows
