"""Metrics: IoU, boundary IoU, stability across prompt draws, aggregation and bootstrap CIs.

Every value is a fraction in [0, 1]; tables multiply by 100 (as the papers do). docs/metrics.md says the same.

* **IoU** = |P ∩ G| / |P ∪ G| on boolean masks at the original image resolution. Two empty masks give
  1.0 (the prediction is exactly right); one empty mask against a non-empty one gives 0.0. With an
  **ignore** mask (GrabCut/Berkeley's 128 band, VOC/SBD's 255), ignored pixels count in neither the
  intersection nor the union (RITM's ``get_iou``); without one nothing changes.
* **Boundary IoU** (Cheng et al. 2021), exactly as ``bowenc0221/boundary-iou-api`` and HQ-SAM's
  ``misc.boundary_iou`` compute it: ``dilation = max(1, int(round(0.02 * sqrt(H² + W²))))`` (Python's
  ``round``, i.e. half-to-even); a mask's boundary is the mask minus its erosion by a 3×3 kernel of ones
  applied ``dilation`` times after 1-px zero padding (so pixels at the image edge are boundary); the
  score is |Bp ∩ Bg| / |Bp ∪ Bg|. Two empty boundaries give 1.0 (our convention; the reference divides by
  zero). With an ignore mask, both boundaries are computed on the full masks and ignored pixels are
  then left out of their intersection and union (the band is neither right nor wrong).
* **Stability** over the N predicted masks of one object at one level (one per draw):
  ``stability_pairwise`` = mean IoU over the N(N-1)/2 pairs; ``stability_union`` = mean over masks of
  IoU(mask, union of all N masks) = mean |M_i| / |∪M|. Both are 1.0 when all draws agree. With one draw
  both are 1.0 by definition (nothing varies). When every draw predicts an empty mask (empty union)
  stability is undefined (NaN): agreeing on "nothing" is a failure to segment, not a stable one; such
  objects are left out of the stability means and the summary counts the objects that have a value
  (``n_stability``). Inside a non-empty union, an empty draw is an ordinary mask (two empty draws
  have IoU 1, an empty draw against a non-empty one 0).
* **Aggregation**: per (model, protocol, level, dataset), first the mean over the draws of each object,
  then the mean over objects (each object weighs the same, whatever its number of draws); the
  cross-dataset figure is the plain mean of dataset means (as HQ-SAM and Stable-SAM report).
* **Bootstrap 95% CI**: percentile bootstrap over objects (resampled with replacement), 1000 resamples,
  from a keyed generator so the interval is reproducible.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from sambench.types import keyed_rng


def iou(pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None) -> float:
    """IoU of two boolean masks of the same shape (two empty masks → 1.0); ``ignore``d pixels count nowhere."""
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {gt.shape}")
    p, g = pred.astype(bool, copy=False), gt.astype(bool, copy=False)
    if ignore is not None:
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore mask shape {ignore.shape} differs from the mask's {gt.shape}")
        keep = ~ignore.astype(bool, copy=False)
        p, g = p & keep, g & keep
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


def batch_iou(preds: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of each mask of ``preds`` (N, H, W) against ``gt`` (H, W)."""
    p = preds.reshape(preds.shape[0], -1).astype(bool, copy=False)
    g = gt.reshape(-1).astype(bool, copy=False)
    inter = np.count_nonzero(p & g, axis=1)
    union = np.count_nonzero(p | g, axis=1)
    out = np.ones(preds.shape[0], dtype=np.float64)
    nz = union > 0
    out[nz] = inter[nz] / union[nz]
    return out


def boundary_dilation(height: int, width: int, dilation_ratio: float = 0.02) -> int:
    """Number of 3×3 erosions of the boundary band: ``max(1, int(round(ratio * diagonal)))``."""
    return max(1, int(round(dilation_ratio * math.sqrt(height ** 2 + width ** 2))))


def mask_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """The inner boundary band of a mask (bool), as boundary-iou-api's ``mask_to_boundary``."""
    h, w = mask.shape
    m = mask.astype(np.uint8)
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=boundary_dilation(h, w, dilation_ratio))
    return (m - eroded[1:h + 1, 1:w + 1]).astype(bool)


def boundary_iou(pred: np.ndarray, gt: np.ndarray, dilation_ratio: float = 0.02,
                 ignore: Optional[np.ndarray] = None) -> float:
    """Boundary IoU of two boolean masks (see module docstring; both boundaries empty → 1.0)."""
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {gt.shape}")
    return iou(mask_boundary(pred, dilation_ratio), mask_boundary(gt, dilation_ratio), ignore)


# --------------------------------------------------------------------------------------- RLE helpers


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a boolean mask, with ``counts`` as str (JSON-able)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def to_coco_rle(rle: dict) -> dict:
    """The form pycocotools' C functions take: ``counts`` as bytes (JSON stores it as str)."""
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode_rle(rle: dict) -> np.ndarray:
    """Boolean mask of a COCO RLE dict (``counts`` as str, as :func:`encode_rle` gives, or bytes)."""
    return mask_utils.decode(to_coco_rle(rle)).astype(bool)


def _coco_rles(rles: Sequence[dict]) -> list[dict]:
    return [to_coco_rle(r) for r in rles]


def stability(rles: Sequence[dict]) -> tuple[float, float]:
    """``(stability_pairwise, stability_union)`` of the masks of one object's draws, from their RLEs.

    ``(nan, nan)`` when every mask is empty (see the module docstring); ``(1, 1)`` for one non-empty mask.
    """
    n = len(rles)
    if n == 0:
        return float("nan"), float("nan")
    coco = _coco_rles(rles)
    areas = mask_utils.area(coco).astype(np.float64)
    if not areas.any():
        return float("nan"), float("nan")
    if n == 1:
        return 1.0, 1.0
    # pycocotools' iou(dt, gt, iscrowd=0) is |a∩b|/|a∪b|; it returns 0 for two empty masks, where we
    # define IoU = 1, so fix those pairs from the areas.
    ious = np.asarray(mask_utils.iou(coco, coco, [0] * n), dtype=np.float64)
    both_empty = (areas[:, None] == 0) & (areas[None, :] == 0)
    ious[both_empty] = 1.0
    iu = np.triu_indices(n, k=1)
    pairwise = float(ious[iu].mean())
    union_area = float(mask_utils.area(mask_utils.merge(coco, intersect=False)))
    union = float(np.mean(areas / union_area))
    return pairwise, union


# --------------------------------------------------------------------------------------- aggregation


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, alpha: float = 0.05, key: str = "") -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``; ``key`` seeds the resampling (reproducible)."""
    v = np.asarray([x for x in values if x is not None and not np.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = keyed_rng("bootstrap", key, n_boot)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
