"""Video metrics as the DAVIS benchmark defines them: region J, boundary F, and their per-track statistics.

Our own implementation of the definitions in davisvideochallenge/davis2017-evaluation
(``davis2017/metrics.py``: ``db_eval_iou``, ``f_measure``, ``_seg2bmap``; ``davis2017/utils.py``:
``db_statistics``). docs/video.md says the same.

* **J** (region similarity) = |P ∩ G| / |P ∪ G| over the pixels that are not void; an empty union (both
  masks empty, or everything void) gives 1.0, as ``db_eval_iou`` does (the object is absent and the model
  says so). One empty mask against a non-empty one gives 0.0.
* **F** (boundary F-measure): each mask (void pixels cleared first) becomes a 1-pixel boundary map
  (``_seg2bmap``: a pixel is boundary where it differs from its right, lower or lower-right neighbour;
  the last row compares with the right neighbour only, the last column with the lower one, the
  bottom-right pixel is never boundary). The tolerance is ``bound_th`` pixels when ``bound_th >= 1``,
  else ``ceil(bound_th * sqrt(H² + W²))`` (DAVIS's default 0.008: 8 px at 854×480). Each boundary is
  dilated with a disk of that radius (pixels with x² + y² <= r²); precision = predicted boundary pixels
  within the dilated GT boundary / predicted boundary pixels, recall = GT boundary pixels within the
  dilated predicted boundary / GT boundary pixels, F = 2PR / (P + R) (0 when P + R = 0). Empty
  boundaries: both empty -> P = R = 1 (F = 1); predicted empty only -> P = 1, R = 0 (F = 0); GT empty
  only -> P = 0, R = 1 (F = 0).
* **Track statistics** (``db_statistics``), over the per-frame values the caller chose to score (the
  prompt frame and unannotated frames already excluded): mean; recall = fraction of frames with value
  > 0.5; decay = mean of the first of 4 frame-order bins minus mean of the last, with DAVIS's bin edges
  ``round(linspace(1, n, 5)) - 1`` and bins ``values[e_i : e_{i+1} + 1]`` (neighbouring bins share their
  edge frame). NaN values are skipped (nanmean). DAVIS casts the edges to uint8, which wraps past 255
  frames; we keep them as integers (identical below 256 frames).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np

#: DAVIS's default boundary tolerance: a fraction of the image diagonal.
BOUND_TH = 0.008


def _check_shapes(pred: np.ndarray, gt: np.ndarray, void: Optional[np.ndarray]) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {gt.shape}")
    if pred.ndim != 2:
        raise ValueError(f"expected 2-D masks, got shape {pred.shape}")
    if void is not None and void.shape != gt.shape:
        raise ValueError(f"void mask shape {void.shape} differs from the mask's {gt.shape}")


def region_j(pred: np.ndarray, gt: np.ndarray, void: Optional[np.ndarray] = None) -> float:
    """DAVIS region similarity J: IoU of two boolean masks over non-void pixels; empty union -> 1.0."""
    _check_shapes(pred, gt, void)
    p, g = pred.astype(bool, copy=False), gt.astype(bool, copy=False)
    if void is not None:
        keep = ~void.astype(bool, copy=False)
        p, g = p & keep, g & keep
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The 1-pixel boundary map of a boolean mask, as DAVIS's ``_seg2bmap`` draws it (same size)."""
    seg = mask.astype(bool, copy=False)
    right = np.zeros_like(seg)
    down = np.zeros_like(seg)
    diag = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    down[:-1, :] = seg[1:, :]
    diag[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ right) | (seg ^ down) | (seg ^ diag)
    b[-1, :] = seg[-1, :] ^ right[-1, :]
    b[:, -1] = seg[:, -1] ^ down[:, -1]
    b[-1, -1] = False
    return b


def boundary_tolerance(shape: tuple, bound_th: float = BOUND_TH) -> int:
    """DAVIS's tolerance radius in pixels: ``bound_th`` if >= 1, else ceil(bound_th * image diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2 <= radius ** 2).astype(np.uint8)


def _box(mask: np.ndarray, margin: int) -> Optional[tuple[slice, slice]]:
    """The mask's bounding box grown by ``margin`` (clipped to the image), None for an empty mask.

    With a margin of at least the tolerance + 2, the boundary map and the dilations computed on the crop
    equal the full image's restricted to it: rows/columns beyond the box are empty in both masks, so a
    crop edge inside the image sees empty neighbours, exactly as the full image does there."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    return (slice(max(0, rows[0] - margin), min(h, rows[-1] + margin + 1)),
            slice(max(0, cols[0] - margin), min(w, cols[-1] + margin + 1)))


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH,
               void: Optional[np.ndarray] = None) -> float:
    """DAVIS boundary F-measure of a predicted mask against the GT (module docstring: conventions)."""
    _check_shapes(pred, gt, void)
    p, g = pred.astype(bool, copy=False), gt.astype(bool, copy=False)
    if void is not None:
        keep = ~void.astype(bool, copy=False)
        p, g = p & keep, g & keep
    radius = boundary_tolerance(pred.shape, bound_th)
    box = _box(p | g, radius + 2)
    if box is None:
        return 1.0                                   # both empty: no boundary on either side
    p, g = p[box], g[box]
    pb, gb = boundary_map(p), boundary_map(g)
    n_p, n_g = int(np.count_nonzero(pb)), int(np.count_nonzero(gb))
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0  # P=1,R=0 or P=0,R=1: F = 0 either way
    kernel = _disk(radius)
    p_dil = cv2.dilate(pb.astype(np.uint8), kernel).astype(bool)
    g_dil = cv2.dilate(gb.astype(np.uint8), kernel).astype(bool)
    precision = np.count_nonzero(pb & g_dil) / n_p
    recall = np.count_nonzero(gb & p_dil) / n_g
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def frame_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(J, F) of one predicted frame, as davis2017-evaluation's semi-supervised evaluation scores it: with no
    void mask (it reads DAVIS 2017's void pixels, then calls both metrics with ``None``), DAVIS's tolerance.
    What a video run stores and ``leaderboard --verify`` re-scores."""
    return region_j(pred, gt), boundary_f(pred, gt)


def decay_bins(n: int) -> list[tuple[int, int]]:
    """DAVIS's 4 decay bins over ``n`` frames as (start, stop) slices: edges round(linspace(1, n, 5)) - 1,
    bin i = [e_i, e_{i+1}] inclusive."""
    edges = (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.int64)
    return [(int(edges[i]), int(edges[i + 1]) + 1) for i in range(4)]


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or np.all(np.isnan(v)):
        return math.nan, math.nan, math.nan
    ok = v[~np.isnan(v)]
    mean = float(ok.mean())
    recall = float(np.mean(ok > 0.5))
    bins = [v[a:b] for a, b in decay_bins(v.size)]
    first, last = bins[0][~np.isnan(bins[0])], bins[3][~np.isnan(bins[3])]
    decay = float(first.mean() - last.mean()) if first.size and last.size else math.nan
    return mean, recall, decay


def track_scores(j: Sequence[float], f: Sequence[float]) -> dict:
    """Per-track statistics over the scored frames (in frame order; the caller excludes the prompt frame
    and unannotated frames): ``J``, ``F``, ``JF`` = (J + F) / 2, ``J_recall``, ``F_recall``, ``J_decay``,
    ``F_decay`` (DAVIS ``db_statistics``), and ``n_frames``. No scored frame -> NaN everywhere."""
    if len(j) != len(f):
        raise ValueError(f"J and F have different lengths: {len(j)} vs {len(f)}")
    jm, jr, jd = _stats(j)
    fm, fr, fd = _stats(f)
    return {"J": jm, "F": fm, "JF": (jm + fm) / 2, "J_recall": jr, "F_recall": fr, "J_decay": jd, "F_decay": fd,
            "n_frames": len(j)}
