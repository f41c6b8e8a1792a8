"""Metrics against hand-computed masks and an independent (scipy) rendering of boundary-iou-api."""

import math

import numpy as np
import pytest
from scipy import ndimage

from sambench.metrics import (batch_iou, boundary_dilation, boundary_iou, bootstrap_ci, decode_rle, encode_rle,
                              iou, mask_boundary, stability)


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_iou_hand_computed():
    a = _box(10, 10, 0, 4, 0, 4)   # 16 px
    b = _box(10, 10, 2, 6, 2, 6)   # 16 px, overlap 2x2 = 4
    assert iou(a, b) == pytest.approx(4 / 28)
    assert iou(a, a) == 1.0
    assert iou(a, np.zeros_like(a)) == 0.0
    assert iou(np.zeros_like(a), np.zeros_like(a)) == 1.0  # documented convention
    np.testing.assert_allclose(batch_iou(np.stack([a, b, np.zeros_like(a)]), a), [1.0, 4 / 28, 0.0])
    with pytest.raises(ValueError):
        iou(a, a[:5])


def test_dilation_is_rounded_half_to_even_as_python_round():
    assert boundary_dilation(480, 640) == 16          # 0.02 * 800 = 16
    assert boundary_dilation(75, 100) == 2            # 0.02 * 125 = 2.5 -> round() -> 2 (banker's)
    assert boundary_dilation(10, 10) == 1             # 0.28 -> 0 -> at least 1
    assert boundary_dilation(1024, 1024) == 29              # 0.02 * 1448.15 = 28.96


def test_boundary_of_a_square_by_hand():
    m = _box(10, 10, 2, 8, 2, 8)  # 6x6 square; dilation 1 -> ring of 6*6 - 4*4 = 20 px
    b = mask_boundary(m)
    assert b.sum() == 20 and not b[3:7, 3:7].any() and b[2, 2:8].all()
    # a mask touching the image edge: the zero padding makes edge pixels boundary
    edge = _box(10, 10, 0, 10, 0, 5)
    assert mask_boundary(edge)[:, 0].all()


def _reference_boundary(mask, ratio=0.02):
    """boundary-iou-api's mask_to_boundary, written independently with scipy.ndimage."""
    h, w = mask.shape
    d = max(1, int(round(ratio * math.sqrt(h * h + w * w))))
    padded = np.pad(mask, 1, constant_values=False)
    er = ndimage.binary_erosion(padded, structure=np.ones((3, 3), bool), iterations=d, border_value=0)
    return mask & ~er[1:-1, 1:-1]


def _reference_biou(gt, dt):
    g, d = _reference_boundary(gt), _reference_boundary(dt)
    return (g & d).sum() / (g | d).sum()


def test_boundary_iou_matches_independent_reference_on_random_shapes():
    rng = np.random.default_rng(0)
    for trial in range(12):
        h, w = rng.integers(30, 160, size=2)
        yy, xx = np.mgrid[:h, :w]
        def blob():
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, max(h, w) / 2)
            return (yy - cy) ** 2 + ((xx - cx) * rng.uniform(0.5, 2)) ** 2 < r ** 2
        gt, dt = blob() | blob(), blob()
        if not gt.any() or not dt.any():
            continue
        np.testing.assert_array_equal(mask_boundary(gt), _reference_boundary(gt))
        assert boundary_iou(dt, gt) == pytest.approx(_reference_biou(gt, dt), abs=1e-12)


def test_boundary_iou_cases():
    a = _box(50, 50, 10, 40, 10, 40)
    assert boundary_iou(a, a) == 1.0
    assert boundary_iou(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert boundary_iou(a, np.zeros_like(a)) == 0.0
    # a 1-px shift of a 30x30 square: IoU stays high, boundary IoU drops more
    b = _box(50, 50, 11, 41, 11, 41)
    assert boundary_iou(a, b) < iou(a, b)


def test_rle_roundtrip():
    rng = np.random.default_rng(1)
    m = rng.random((37, 53)) > 0.6
    r = encode_rle(m)
    assert r["size"] == [37, 53] and isinstance(r["counts"], str)
    np.testing.assert_array_equal(decode_rle(r), m)


def test_stability_hand_computed():
    a = _box(10, 10, 0, 4, 0, 4)   # 16
    b = _box(10, 10, 0, 4, 0, 8)   # 32, contains a
    c = _box(10, 10, 0, 4, 4, 8)   # 16, disjoint from a, inside b
    rles = [encode_rle(m) for m in (a, b, c)]
    pair, union = stability(rles)
    # pairs: a-b 16/32, a-c 0, b-c 16/32 -> mean 1/3 ; union = b (32): 16/32, 32/32, 16/32 -> mean 2/3
    assert pair == pytest.approx(1 / 3)
    assert union == pytest.approx(2 / 3)
    assert stability(rles[:1]) == (1.0, 1.0)
    assert stability([encode_rle(a)] * 4) == (1.0, 1.0)
    z = encode_rle(np.zeros((10, 10), bool))
    assert all(np.isnan(v) for v in stability([z, z]))  # undefined when every draw is empty (issue 11)
    assert stability([z, encode_rle(a)]) == (0.0, 0.5)


def test_bootstrap_ci_is_keyed_and_brackets_the_mean():
    v = np.random.default_rng(2).random(50)
    lo, hi = bootstrap_ci(v, key="x")
    assert lo < v.mean() < hi
    assert (lo, hi) == bootstrap_ci(v, key="x")
    assert (lo, hi) != bootstrap_ci(v, key="y")
    # half-width close to the normal approximation 1.96 * sd / sqrt(n)
    assert (hi - lo) / 2 == pytest.approx(1.96 * v.std(ddof=1) / np.sqrt(v.size), rel=0.2)
    assert bootstrap_ci([0.5], key="x") == (0.5, 0.5)
    assert all(math.isnan(x) for x in bootstrap_ci([], key="x"))


def test_ignore_band_counts_in_neither_intersection_nor_union():
    gt = _box(10, 10, 2, 6, 2, 6)        # 16 px object
    band = _box(10, 10, 1, 7, 1, 7) & ~gt  # its 1-px ring (36 - 16 = 20 px): unlabelled, as GrabCut's 128
    pred = _box(10, 10, 1, 7, 1, 7)      # object + the whole ring
    assert iou(pred, gt) == pytest.approx(16 / 36)   # without the ignore mask the ring is false positive
    assert iou(pred, gt, ignore=band) == 1.0          # with it the ring is neither right nor wrong
    half = _box(10, 10, 2, 4, 2, 6)      # 8 px of the object, no ring
    assert iou(half, gt, ignore=band) == pytest.approx(8 / 16)
    # a prediction that is only ring: empty against the object once the ring is ignored
    assert iou(band, gt, ignore=band) == 0.0
    assert iou(pred, gt, ignore=np.zeros_like(gt)) == iou(pred, gt)
    # boundary IoU: the ring is where pred's boundary lies, so ignoring it leaves gt's inner ring vs none of pred's
    assert boundary_iou(gt, gt, ignore=band) == 1.0
    with pytest.raises(ValueError):
        iou(pred, gt, ignore=band[:5])


def test_stability_columns_are_metrics_stability_per_group():
    """A report's per-object stability (analysis.summary.stability_columns: one JSON parse, one sort) is
    metrics.stability of each group's masks in row order, bit for bit."""
    import json

    from sambench.analysis.summary import stability_columns

    rng = np.random.default_rng(5)
    z = encode_rle(np.zeros((20, 24), bool))
    groups = [[encode_rle(_box(20, 24, *sorted(rng.integers(0, 20, 2)), *sorted(rng.integers(0, 24, 2))))
               for _ in range(int(rng.integers(1, 7)))] for _ in range(30)]
    groups += [[z, z], [z], [z, encode_rle(_box(20, 24, 2, 9, 3, 8))]]
    rows = [(g, json.dumps(r)) for g, masks in enumerate(groups) for r in masks]
    shuffled = [rows[i] for i in rng.permutation(len(rows))]  # rows of a group need not be adjacent
    group, texts = np.array([g for g, _ in shuffled]), [t for _, t in shuffled]
    expected = [stability([json.loads(t) for g2, t in shuffled if g2 == g]) for g in range(len(groups))]
    pairwise, union = stability_columns(texts, group, len(groups))
    assert np.array_equal(pairwise, [e[0] for e in expected], equal_nan=True)
    assert np.array_equal(union, [e[1] for e in expected], equal_nan=True)
