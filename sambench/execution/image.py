"""The batch path: one model's missing rows on a batch of images, all under one condition.

:func:`evaluate_images` is what a run executes for every (model, condition) of a batch of images
(:meth:`sambench.execution.work.ImageWork.batch`): work out which (protocol, level, draw, object) rows are
still missing (resume), encode the images once per preprocessing mode those rows need (the cache misses
of the batch share encoder passes of ``encode_batch`` images), decode their prompts ``prompts_per_call``
at a time, score each chunk's masks on the scoring threads while the adapter decodes the next chunk, then
run the click sequences of interactive protocols (:mod:`sambench.execution.sequences`) on the same
encoded states. Failures — an unusable object, a prompt the model cannot take, an exception in ``encode``
or ``predict`` — become failed rows with their reason (:mod:`sambench.execution.rows`): never dropped.

A **condition** is the (corruption, severity) pair an image is decoded under: ``("none", 0)`` for the
clean image, else its corrupted copy (:class:`CorruptedSample`). Prompts and the scoring GT are always the
clean sample's.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np

from sambench.adapters.base import Adapter
from sambench.execution.encode import EncodeStage
from sambench.execution.rows import (CLEAN_CONDITION, check_mask_count, describe, done_key, failed_row, mask_row,
                                     object_failure_rows, where)
from sambench.execution.sequences import evaluate_clicks
from sambench.execution.timing import StageTimer
from sambench.inputs import corruptions as corr
from sambench.inputs.prompts import Protocol, PromptTask
from sambench.execution.scoring import ScoringPool
from sambench.metrics.fast import ImageScorer
from sambench.store import Row
from sambench.types import SambenchError, first_line


class CorruptedSample:
    """A sample whose ``image`` is its clean image under one condition, made on first access (so a resumed
    image whose rows are all stored is never corrupted) and then shared by every model; ``objects`` and
    everything else are the clean sample's. A corruption that cannot be made for this image (a 1×1 image
    under motion blur) raises one SambenchError line naming the image and the condition, on every access:
    the condition's rows fail with it (:func:`evaluate_images`), the image's other conditions still run."""

    def __init__(self, sample, condition: tuple[str, int], seed: int) -> None:
        self._sample, self._condition, self._seed, self._image = sample, condition, seed, None
        self._error: Optional[SambenchError] = None

    @property
    def image(self) -> np.ndarray:
        if self._error is not None:
            raise self._error
        if self._image is None:
            name, severity = self._condition
            s = self._sample
            try:
                self._image = corr.corrupt_keyed(s.image, name, severity, self._seed, s.dataset, s.image_id)
            except Exception as exc:  # noqa: BLE001 - any failure of the corruption is this condition's alone
                self._error = SambenchError(f"{where(s, self._condition)}: cannot make this corruption: "
                                            f"{first_line(exc, empty=type(exc).__name__)}")
                raise self._error from None
        return self._image

    def __getattr__(self, name: str):
        return getattr(self._sample, name)


def condition_axes(protocols: list[Protocol], specs: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
    """Per protocol: the conditions (corruption, severity) it runs under — clean first, then its card's
    ``corruptions`` and the run's ``--corruption`` specs. Click protocols too: each corrupted copy gets
    its own click sequences (:func:`sambench.execution.sequences.evaluate_clicks`)."""
    return {p.name: corr.parse_specs(list(p.card.corruptions) + list(specs)) for p in protocols}


def pending_tasks(adapter: Adapter, model: str, sample, protocols: list[Protocol], done: set, failed: list[Row],
                  condition: tuple[str, int] = CLEAN_CONDITION) -> dict[tuple[str, str], list[PromptTask]]:
    """The batch tasks still to run, grouped by (preprocessing, mask_selection); unusable ones go to ``failed``."""
    groups: dict[tuple[str, str], list[PromptTask]] = {}
    for proto in protocols:
        for task in proto.tasks(sample.dataset, sample.image_id, sample.objects):
            if done_key(task, condition) in done:
                continue
            if task.prompt is None:
                failed.append(failed_row(task, model, sample,
                                         f"{sample.dataset}/{sample.image_id}/{task.object_id}: {task.error}"))
            elif task.prompt.form not in adapter.capabilities:
                failed.append(failed_row(task, model, sample,
                                         f"model '{model}' cannot take a '{task.prompt.form}' prompt"))
            else:
                groups.setdefault((proto.card.preprocessing, proto.card.mask_selection), []).append(task)
    return groups


def encode_states(stage: EncodeStage, images: list, prep: str) -> list:
    """Per image, its state or the exception that prevented it (the stage isolates per-image failures)."""
    try:
        return stage.encode(images, prep)
    except Exception as exc:  # noqa: BLE001 - e.g. a cache problem: every image of the call fails alike
        return [exc] * len(images)


def sample_states(stage: EncodeStage, samples: list, prep: str) -> list:
    """:func:`encode_states` of the samples' images; a sample whose image cannot be made (a corruption
    :class:`CorruptedSample` cannot apply) gets that exception as its state, and the others are encoded."""
    images: list = []
    for s in samples:
        try:
            images.append(s.image)
        except Exception as exc:  # noqa: BLE001 - recorded as this sample's failed rows
            images.append(exc)
    ok = [k for k, im in enumerate(images) if not isinstance(im, BaseException)]
    encoded = iter(encode_states(stage, [images[k] for k in ok], prep) if ok else [])
    return [im if isinstance(im, BaseException) else next(encoded) for im in images]


def _scored_rows(pred, tasks: list[PromptTask], model: str, sample, scorer: ImageScorer,
                 timer: StageTimer) -> list[Row]:
    """Rows of one predicted chunk (:func:`sambench.execution.rows.mask_row`). Masks that an adapter left on a
    CUDA device are scored there; numpy arrays and CPU tensors on the host."""
    masks, place = pred.masks, "host"
    if not isinstance(masks, np.ndarray):  # a torch tensor
        if masks.device.type == "cpu":
            masks = masks.numpy()
        else:
            place = str(masks.device)
    timer.count(place, len(tasks))
    return [mask_row(task, model, sample, masks[i], scorer.object(task.object_id), float(pred.scores[i]),
                     pred.extras[i] if pred.extras is not None and pred.extras[i] else None, timer)
            for i, task in enumerate(tasks)]


def _decode_groups(adapter: Adapter, model: str, sample, groups: dict, states: dict, prompts_per_call: int,
                   pool: ScoringPool, scorer: ImageScorer, timer: StageTimer, place: str) -> list:
    """Row lists and futures of row lists, in row order, of the pending ``groups``: decode ``prompts_per_call``
    at a time against ``states`` (preprocessing → encoded state, or the exception its encoding raised); each
    call's masks are scored on ``pool``'s threads while the adapter decodes the next call's."""
    slots: list = []
    for (prep, selection), tasks in groups.items():
        state = states[prep]
        if isinstance(state, BaseException):  # recorded, never dropped: the run goes on with the next group
            err = describe(state, f"model '{model}' failed to encode {place}")
            slots.append([failed_row(t, model, sample, err) for t in tasks])
            continue
        for start in range(0, len(tasks), prompts_per_call):
            chunk = tasks[start:start + prompts_per_call]
            try:
                with timer.stage("decode"):
                    pred = adapter.predict(state, [t.prompt for t in chunk], mask_selection=selection)
                check_mask_count(pred, len(chunk), model, place)
            except Exception as exc:
                err = describe(exc, f"model '{model}' failed to decode on {place}")
                slots.append([failed_row(t, model, sample, err) for t in chunk])
                continue
            slots.append(pool.submit(_scored_rows, pred, chunk, model, sample, scorer, timer))
            del pred
    return slots


def _click_rows(adapter: Adapter, model: str, sample, protocols: list[Protocol], done: set, states: dict,
                stage: EncodeStage, scorer: ImageScorer, condition: tuple[str, int], place: str) -> list[Row]:
    """Rows of the interactive (click) protocols on the image's states under ``condition`` (encoded through
    ``stage`` if a mode is still missing; an encode failure raises one SambenchError line)."""

    def state_for(prep: str) -> Any:
        if prep not in states:
            states[prep] = sample_states(stage, [sample], prep)[0]
        if isinstance(states[prep], BaseException):
            raise SambenchError(describe(states[prep], f"model '{model}' failed to encode {place}"))
        return states[prep]

    rows: list[Row] = []
    for proto in (p for p in protocols if p.card.interactive):
        rows.extend(evaluate_clicks(adapter, model, sample, proto.card, done, state_for, scorer, condition))
    return rows


def _image_rows(adapter: Adapter, model: str, sample, protocols: list[Protocol], done: set, failed: list[Row],
                groups: dict, states: dict, prompts_per_call: int, stage: EncodeStage, pool: ScoringPool,
                timer: StageTimer, condition: tuple[str, int]) -> list[Row]:
    """One (model, image)'s rows under ``condition`` once its states are encoded: failures, the decoded and
    scored batch protocols, then the click sequences on the same states."""
    place = where(sample, condition)
    scorer = pool.image_scorer({o.id: o.mask for o in sample.objects}, {o.id: o.ignore for o in sample.objects})
    slots = [failed] + _decode_groups(adapter, model, sample, groups, states, prompts_per_call, pool, scorer, timer,
                                      place)
    slots.append(_click_rows(adapter, model, sample, protocols, done, states, stage, scorer, condition, place))
    with timer.stage("wait for scoring"):
        rows = [r for slot in slots for r in (slot if isinstance(slot, list) else slot.result())]
    for r in rows:
        r.corruption, r.severity = condition
    return rows


def evaluate_images(adapter: Adapter, model: str, samples: list, dones: list[set], protocols: list[Protocol],
                    prompts_per_call: int, stage: Optional[EncodeStage] = None, scoring: Optional[ScoringPool] = None,
                    timer: Optional[StageTimer] = None,
                    condition: tuple[str, int] = CLEAN_CONDITION) -> list[list[Row]]:
    """Per sample, ``model``'s missing rows on it under ``condition`` (``dones[k]``: the
    :func:`~sambench.execution.rows.done_key` of its stored rows). ``samples[k].image`` is the image as the
    model sees it; ``stage`` encodes (embedding cache, ``encode_batch``; default: a plain one), ``scoring``
    scores (default: in this thread), ``timer`` collects the stage seconds."""
    stage = stage or EncodeStage(adapter)
    pool = scoring if scoring is not None else ScoringPool(threads=0)
    timer = timer if timer is not None else StageTimer()
    cards = [p.card for p in protocols]
    # an unusable object is a fault of the clean GT: recorded once, on the clean condition
    failed = [object_failure_rows(model, s, cards, d) if not condition[1] else [] for s, d in zip(samples, dones)]
    batch_protocols = [p for p in protocols if not p.card.interactive]  # clicks: _click_rows
    groups = [pending_tasks(adapter, model, s, batch_protocols, d, f, condition)
              for s, d, f in zip(samples, dones, failed)]
    states: list[dict] = [{} for _ in samples]
    for prep in dict.fromkeys(p for g in groups for p, _ in g):
        need = [k for k in range(len(samples)) if any(p == prep for p, _ in groups[k])]
        with timer.stage("encode"):
            encoded = sample_states(stage, [samples[k] for k in need], prep)
        for k, state in zip(need, encoded):
            states[k][prep] = state
    out = []
    for k, sample in enumerate(samples):
        out.append(_image_rows(adapter, model, sample, protocols, dones[k], failed[k], groups[k], states[k],
                               prompts_per_call, stage, pool, timer, condition))
        states[k] = {}  # an image's encoded states go as soon as its rows are made
    return out


__all__ = ["CorruptedSample", "condition_axes", "encode_states", "evaluate_images", "pending_tasks", "sample_states"]
