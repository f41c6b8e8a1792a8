"""The one row builder: every stored row — batch prompts, click steps, failures — is made here.

A row's key comes from its :class:`~sambench.inputs.prompts.PromptTask` (object, protocol, level, draw) and
the image's **condition**, the (corruption, severity) pair it was decoded under (``("none", 0)`` when clean).
A predicted mask becomes a row through :func:`mask_row`, which scores it with the fast scorer
(:mod:`sambench.metrics.fast`, proven equal to :mod:`sambench.metrics`): batch rows
(:mod:`sambench.execution.image`) and click rows (:mod:`sambench.execution.sequences`) alike. What resume
compares, :func:`done_key`, is read from the one key declaration (:data:`sambench.store.IMAGE_ROW_COLUMNS`,
part of :data:`sambench.store.KEY_COLUMNS`), by column name.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Iterable, Optional

import numpy as np

from sambench.config import ProtocolCard
from sambench.execution.timing import StageTimer
from sambench.inputs import corruptions as corr
from sambench.inputs.prompts import PromptTask
from sambench.metrics.fast import ObjectScorer
from sambench.store import IMAGE_ROW_COLUMNS, Row
from sambench.types import SambenchError, canonical_json, first_line

#: The condition (corruption, severity) of the clean image.
CLEAN_CONDITION = (corr.CLEAN, 0)


def describe(exc: Exception, context: str) -> str:
    """One line for a failed row: a SambenchError says it all; anything else gets its type and context."""
    if isinstance(exc, SambenchError):
        return str(exc)
    return f"{context}: {type(exc).__name__}: {first_line(exc, empty='')}"


def check_mask_count(pred: Any, prompts: int, model: str, place: str) -> None:
    """Refuse (one-line SambenchError, which becomes the failed rows' reason) a prediction that does not hold
    exactly one mask (and one ``extras`` entry, if any) per prompt: fewer would leave prompts without a mask,
    more would pair masks with the wrong prompts."""
    got = len(pred.masks)
    extras = None if pred.extras is None else len(pred.extras)
    if got != prompts or extras not in (None, prompts):
        what = f"{got} masks" if got != prompts else f"{extras} extras entries"
        raise SambenchError(f"model '{model}' returned {what} for {prompts} prompt{'s' if prompts != 1 else ''} "
                            f"on {place}")


def where(sample, condition: tuple[str, int]) -> str:
    """``dataset/image`` and, on a corrupted copy, ``under NAME:SEVERITY``: the place failure messages name."""
    return f"{sample.dataset}/{sample.image_id}" + ("" if not condition[1] else f" under {condition[0]}:{condition[1]}")


def done_key(task: PromptTask, condition: tuple[str, int]) -> tuple:
    """The :data:`~sambench.store.IMAGE_ROW_COLUMNS` of ``task``'s row on the image under ``condition``."""
    fields = {"corruption": condition[0], "severity": condition[1]}
    return tuple(fields[c] if c in fields else getattr(task, c) for c in IMAGE_ROW_COLUMNS)


def row_key(row: Row) -> tuple:
    """The :data:`~sambench.store.IMAGE_ROW_COLUMNS` of a built row (what :func:`done_key` predicts)."""
    return tuple(getattr(row, c) for c in IMAGE_ROW_COLUMNS)


def task_row(task: PromptTask, model: str, sample, **kw: Any) -> Row:
    """The row of ``task`` for ``model`` on ``sample`` (its dataset and image id); ``kw`` are the other columns."""
    return Row(model=model, dataset=sample.dataset, image_id=sample.image_id, object_id=task.object_id,
               protocol=task.protocol, level=task.level, draw=task.draw, protocol_version=task.version,
               level_value=task.level_value,
               prompt=task.prompt.to_json() if task.prompt else None,
               prompt_hash=task.prompt.hash() if task.prompt else None, **kw)


def failed_row(task: PromptTask, model: str, sample, error: str) -> Row:
    """The failed row of ``task``, with its one-line reason."""
    return task_row(task, model, sample, status="failed", error=error)


def mask_row(task: PromptTask, model: str, sample, mask: Any, gt: ObjectScorer, confidence: float,
             extras: Optional[dict], timer: Optional[StageTimer] = None) -> Row:
    """The row of one predicted mask: IoU, boundary IoU, areas and RLE by the fast scorer (exactly the values
    of :mod:`sambench.metrics`' definitions); a mask of the wrong size fails. ``timer`` times the scoring."""
    if tuple(mask.shape) != gt.shape:
        return failed_row(task, model, sample, f"model '{model}' returned a {tuple(mask.shape)} mask for a "
                                               f"{gt.shape} image")
    s = gt.score(mask, timer)
    with timer.stage("rows") if timer is not None else nullcontext():
        return task_row(task, model, sample, iou=s.iou, biou=s.biou,
                        score=None if np.isnan(confidence) else float(confidence), gt_area=gt.area,
                        pred_area=s.pred_area, mask_rle=canonical_json(s.rle),
                        extras=canonical_json(extras) if extras else None, status="ok")


def image_failure_rows(model: str, dataset: str, image_id: str, protocols: Iterable[ProtocolCard],
                       error: str) -> list[Row]:
    """One failed row per protocol for an image that could not be used at all."""
    return [Row(model=model, dataset=dataset, image_id=image_id, object_id="", protocol=p.name, level="", draw=-1,
                protocol_version=p.version, status="failed", error=error) for p in protocols]


def object_failure_rows(model: str, sample, protocols: Iterable[ProtocolCard], done: set) -> list[Row]:
    """One failed row per protocol for each unusable object of ``sample`` (``Sample.failed_objects``):
    object id set, level ``""``, draw -1, so each lost object is counted while the others are scored."""
    rows = [Row(model=model, dataset=sample.dataset, image_id=sample.image_id, object_id=oid, protocol=p.name,
                level="", draw=-1, protocol_version=p.version, status="failed", error=reason)
            for oid, reason in sorted(sample.failed_objects.items()) for p in protocols]
    return [r for r in rows if row_key(r) not in done]


__all__ = ["CLEAN_CONDITION", "check_mask_count", "describe", "done_key", "failed_row", "image_failure_rows", "mask_row",
           "object_failure_rows", "row_key", "task_row", "where"]
