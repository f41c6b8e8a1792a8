"""The interactive protocol's click simulator and click sequence: pure functions, no model, no store.

The simulator is the deterministic rule of the interactive-segmentation literature (RITM's
``isegm/inference/clicker.py``, reused by f-BRS, FocalClick and SimpleClick), computed in exact integer
arithmetic instead of RITM's float32 (step 2). FocSAM's clicker differs: it picks **at random** among
the pixels of maximal distance, where RITM (and sambench) take the first one. docs/protocols.md
("Corrective clicks") says the same. Given the object's GT mask ``gt``, an optional
ignore mask ``ignore`` and the model's current prediction ``pred`` (all boolean, H×W):

1. **Error regions.** False negatives ``FN = gt & ~pred & ~ignore``; false positives
   ``FP = ~gt & pred & ~ignore``. Ignored pixels (GrabCut/Berkeley's 128 band, VOC/SBD's 255) are never
   an error and never clicked. The error regions are **not eroded**.
2. **Distance to the region's boundary.** Each region is zero-padded by one pixel on every side; each
   region pixel's nearest non-region pixel comes from scipy's exact Euclidean feature transform
   (``ndimage.distance_transform_edt(return_indices=True)``) and its distance is kept as the **integer
   squared** distance ``dy² + dx²``; then the padding is cropped. The padding makes the image border count
   as boundary: a region pixel on the image edge has distance 1, never more. RITM uses
   ``cv2.distanceTransform(region, DIST_L2, DIST_MASK_PRECISE)``, whose float32 values differ by one
   rounding step with the output buffer's alignment (so with the allocator and OpenCV's thread count);
   that flips ties between equally deep pixels, so the same mask gave different clicks on different
   machines (and on consecutive calls). Integer squared distances
   compare exactly: equal depths are equal, and the tie rules of steps 4-5 decide, on every machine.
3. **Already-clicked pixels** get distance 0, so a pixel is never clicked twice.
4. **Which region wins.** ``positive = max(dist²_FN) > max(dist²_FP)``: the click goes into the region
   whose deepest point lies farther from its boundary (the issue's "larger error region", in RITM's
   sense: deepest, not widest). A tie goes to the **negative** click (RITM's strict ``>``).
5. **Where.** The first pixel, in row-major order (smallest row, then smallest column), whose distance
   equals that maximum (RITM's ``np.argwhere(dt == max)[0]``; FocSAM instead draws one of them at
   random). The click is ``(x, y) = (column, row)``, label 1 for a positive click and 0 for a negative
   one — sambench's point convention.
6. **Nothing left to click.** When neither region has an unclicked pixel (the prediction is exact up to
   ignored and already-clicked pixels), :func:`next_click` returns None and the sequence stops giving
   clicks (RITM would still place a degenerate click at the first pixel of the image; its evaluation
   stops at the target IoU before that matters). Later steps repeat the last prediction unchanged.

**The first click** with no start box: the prediction before any click is empty (RITM starts from an
all-zero mask), so FN = the whole object and the first click is the object's deepest interior point.
**Start box** (``start: gt-box`` or ``noisy-box``): step 0 gives the box alone; the first click
corrects the box's prediction; every later prompt is the box plus all clicks so far.

**A sequence** (:func:`run_sequence`) of ``max_clicks`` steps: at step k the model gets the full set of
the k clicks so far (plus the start box), in the order given, and — when asked and the model can take
it — its own low-resolution logits of step k-1 as a mask prompt (SAM's interactive use). The prompt
stored for a step is exactly the one the model was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
from scipy import ndimage

from sambench.types import Prompt


@dataclass(frozen=True)
class Click:
    """One simulated click: pixel (x, y) = (column, row) and whether it is positive (label 1)."""

    x: int
    y: int
    positive: bool


def squared_error_distance(region: np.ndarray) -> np.ndarray:
    """Exact squared Euclidean distance (int64) of each pixel of ``region`` to its boundary, image border
    included: ``dy² + dx²`` to the nearest non-region pixel. Pixels outside the region are 0.

    Zero padding by one pixel makes the image border count as boundary (step 2 of the module docstring);
    the nearest non-region pixel comes from scipy's exact feature transform, so no float is involved. The
    transform runs on the region's bounding box padded by one pixel, which is exact: for a pixel inside
    the box, clamping any outside pixel onto that padding ring gives a non-region pixel at least as near.
    """
    region = region.astype(bool, copy=False)
    out = np.zeros(region.shape, dtype=np.int64)
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    if rows.size == 0:
        return out
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    padded = np.pad(region[r0:r1, c0:c1], 1, mode="constant")
    nearest = ndimage.distance_transform_edt(padded, return_distances=False, return_indices=True)
    dy = (nearest[0] - np.arange(padded.shape[0], dtype=nearest.dtype)[:, None]).astype(np.int64)
    dx = (nearest[1] - np.arange(padded.shape[1], dtype=nearest.dtype)[None, :]).astype(np.int64)
    out[r0:r1, c0:c1] = (dy * dy + dx * dx)[1:-1, 1:-1]
    return out


def error_distance(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pixel of ``region`` to its boundary (float64 square root of
    :func:`squared_error_distance`; the click rule compares the exact squared values, not these)."""
    return np.sqrt(squared_error_distance(region))


def next_click(gt: np.ndarray, pred: np.ndarray, ignore: Optional[np.ndarray] = None,
               clicked: Optional[np.ndarray] = None) -> Optional[Click]:
    """The next corrective click for prediction ``pred`` of object ``gt`` (module docstring, steps 1-6).

    ``ignore``: pixels excluded from the error regions; ``clicked``: pixels already clicked (never
    clicked again). Returns None when no unclicked error pixel remains.
    """
    gt = gt.astype(bool, copy=False)
    pred = pred.astype(bool, copy=False)
    if gt.shape != pred.shape:
        raise ValueError(f"mask shapes differ: {gt.shape} vs {pred.shape}")
    valid = ~ignore if ignore is not None else np.ones_like(gt)
    fn_dist = squared_error_distance(gt & ~pred & valid)
    fp_dist = squared_error_distance(~gt & pred & valid)
    if clicked is not None:
        fn_dist[clicked] = 0
        fp_dist[clicked] = 0
    fn_max, fp_max = int(fn_dist.max(initial=0)), int(fp_dist.max(initial=0))
    if fn_max <= 0 and fp_max <= 0:
        return None
    positive = fn_max > fp_max
    dist = fn_dist if positive else fp_dist
    row, col = divmod(int(np.argmax(dist)), dist.shape[1])  # argmax: first maximum in row-major order
    return Click(x=col, y=row, positive=positive)


def click_prompt(clicks: list[Click], box: Optional[tuple] = None) -> Prompt:
    """The prompt of a step: the start box (if any) and every click so far, in order."""
    if not clicks:
        return Prompt(box=box)
    return Prompt(box=box, points=tuple((float(c.x), float(c.y)) for c in clicks),
                  labels=tuple(1 if c.positive else 0 for c in clicks))


@dataclass
class Step:
    """One step of a click sequence: its level (clicks so far), the prompt given and the outcome.

    ``mask``/``score`` are the prediction (None when the step failed: ``error`` says why).
    ``carried``: no error pixel was left to click, so the step repeats the previous prediction.
    """

    level: int
    prompt: Prompt
    mask: Optional[np.ndarray] = None
    score: float = float("nan")
    error: Optional[str] = None
    carried: bool = False
    extras: dict = field(default_factory=dict)


#: ``predict(prompt, mask_input) -> (mask, score, logits)`` for one prompt against an encoded image;
#: ``mask_input`` is the previous step's ``logits`` (or None) and ``logits`` is what the model returns
#: for the next step (None if it has none).
PredictFn = Callable[[Prompt, Any], tuple[np.ndarray, float, Any]]


def run_sequence(gt: np.ndarray, predict: PredictFn, max_clicks: int, *, ignore: Optional[np.ndarray] = None,
                 start_box: Optional[tuple] = None, feed_logits: bool = False,
                 describe_error: Callable[[Exception], str] = lambda e: f"{type(e).__name__}: {e}") -> list[Step]:
    """The steps of one object's click sequence (module docstring).

    Steps are levels ``1..max_clicks`` (``0..max_clicks`` with a start box, step 0 being the box alone).
    An exception from ``predict`` fails that step and every later one with ``describe_error(exc)``: a
    sequence cannot continue without the prediction its next click depends on.
    """
    steps: list[Step] = []
    clicks: list[Click] = []
    clicked = np.zeros(gt.shape, dtype=bool)
    pred = np.zeros(gt.shape, dtype=bool)
    logits: Any = None
    score = float("nan")
    first = 0 if start_box is not None else 1
    done = False  # no error pixel left: later steps carry the last prediction
    for level in range(first, max_clicks + 1):
        if level > 0 and not done:
            click = next_click(gt, pred, ignore, clicked)
            if click is None:
                done = True
            else:
                clicks.append(click)
                clicked[click.y, click.x] = True
        prompt = click_prompt(clicks, start_box)
        if done:
            steps.append(Step(level, prompt, pred, score, carried=True))
            continue
        try:
            pred, score, logits = predict(prompt, logits if feed_logits else None)
        except Exception as exc:  # the step and all later ones fail with the reason
            err = describe_error(exc)
            steps.extend(Step(lv, prompt if lv == level else click_prompt(clicks, start_box), error=err)
                         for lv in range(level, max_clicks + 1))
            break
        steps.append(Step(level, prompt, pred, float(score)))
    return steps


def noc(ious: dict[int, float], threshold: float, limit: int) -> int:
    """Number of clicks to reach IoU >= ``threshold``: the smallest level whose IoU reaches it, or
    ``limit`` (the click limit) if none does (RITM's ``compute_noc_metric``)."""
    for level in sorted(ious):
        if ious[level] >= threshold:
            return level
    return limit
