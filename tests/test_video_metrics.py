"""Video metrics J, F and the per-track statistics, against DAVIS's definitions (davis2017-evaluation
``davis2017/metrics.py`` and ``utils.db_statistics``): hand-computed cases, an independent distance-based
formulation of the boundary match, and real DAVIS masks (skipped when ../shared/data is absent)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from sambench.metrics.video import boundary_f, boundary_map, boundary_tolerance, decay_bins, region_j, track_scores

DAVIS_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016-video-sample"


def _square(n, y0, y1, x0, x1):
    m = np.zeros((n, n), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_region_j_is_intersection_over_union_and_void_pixels_count_nowhere():
    gt = _square(6, 0, 2, 0, 4)        # 8 px
    pred = _square(6, 0, 2, 2, 6)      # 8 px, 4 shared -> 4 / 12
    assert region_j(pred, gt) == pytest.approx(4 / 12)
    void = np.zeros((6, 6), bool)
    void[:, 4:] = True                 # removes 4 predicted-only pixels -> 4 / 8
    assert region_j(pred, gt, void) == pytest.approx(4 / 8)


def test_region_j_empty_union_is_one_and_one_empty_mask_is_zero():
    empty = np.zeros((5, 5), bool)
    assert region_j(empty, empty) == 1.0
    assert region_j(empty, _square(5, 1, 3, 1, 3)) == 0.0
    assert region_j(_square(5, 1, 3, 1, 3), empty) == 0.0
    everything_void = np.ones((5, 5), bool)
    assert region_j(_square(5, 1, 3, 1, 3), empty, everything_void) == 1.0


def test_boundary_map_marks_pixels_differing_from_right_lower_or_diagonal_neighbour():
    # 2x2 square at rows 1-2, cols 1-2 of a 5x5 mask, worked out by hand from _seg2bmap's rule
    b = boundary_map(_square(5, 1, 3, 1, 3))
    expected = {(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)}
    assert set(zip(*np.nonzero(b))) == expected


def test_boundary_map_last_row_and_column_compare_with_one_neighbour_only():
    full = np.ones((4, 4), bool)
    assert not boundary_map(full).any()       # no pixel differs from any neighbour; the edge is no boundary
    m = np.zeros((4, 4), bool)
    m[3, 0:2] = True                          # bottom row: only the right neighbour counts
    assert set(zip(*np.nonzero(boundary_map(m)))) == {(2, 0), (2, 1), (3, 1)}


def test_boundary_tolerance_is_ceil_of_fraction_of_diagonal_or_pixels_when_at_least_one():
    assert boundary_tolerance((480, 854)) == 8            # ceil(0.008 * 979.64) = ceil(7.84)
    assert boundary_tolerance((240, 320)) == 4            # ceil(0.008 * 400) = ceil(3.2)
    assert boundary_tolerance((100, 100), 3) == 3


def test_boundary_f_stripes_two_pixels_apart_match_only_with_two_pixel_tolerance():
    gt = np.zeros((10, 10), bool)
    gt[:, :5] = True                           # boundary: column 4, 10 px
    pred = np.zeros((10, 10), bool)
    pred[:, :7] = True                         # boundary: column 6, 10 px
    assert boundary_f(pred, gt, bound_th=1) == 0.0
    assert boundary_f(pred, gt, bound_th=2) == 1.0


def test_boundary_f_extra_boundary_halves_precision():
    gt = np.zeros((10, 10), bool)
    gt[:, :5] = True                           # boundary column 4
    pred = gt.copy()
    pred[:, 8:] = True                         # adds boundary column 7 (the last column is never boundary here)
    # precision 10/20, recall 10/10 -> F = 2 * 0.5 * 1 / 1.5
    assert boundary_f(pred, gt, bound_th=1) == pytest.approx(2 / 3)


def test_boundary_f_empty_conventions_follow_davis():
    empty = np.zeros((8, 8), bool)
    obj = _square(8, 2, 5, 2, 5)
    assert boundary_f(empty, empty) == 1.0     # P = R = 1
    assert boundary_f(empty, obj) == 0.0       # P = 1, R = 0
    assert boundary_f(obj, empty) == 0.0       # P = 0, R = 1


def _f_by_distances(pred, gt, radius):
    """The boundary F-measure from Euclidean distances between boundary pixels (no dilation)."""
    pb, gb = np.argwhere(boundary_map(pred)), np.argwhere(boundary_map(gt))
    p_hit = cKDTree(gb).query(pb, distance_upper_bound=radius + 1e-9)[0] <= radius + 1e-9
    g_hit = cKDTree(pb).query(gb, distance_upper_bound=radius + 1e-9)[0] <= radius + 1e-9
    p, r = p_hit.mean(), g_hit.mean()
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_boundary_f_equals_distance_based_match_on_random_blobs():
    rng = np.random.default_rng(0)
    for _ in range(5):
        gt = np.zeros((60, 80), bool)
        pred = np.zeros((60, 80), bool)
        for m in (gt, pred):
            for _ in range(3):
                y, x, h, w = rng.integers(0, 50), rng.integers(0, 70), rng.integers(3, 20), rng.integers(3, 20)
                m[y:y + h, x:x + w] = True
        r = boundary_tolerance(gt.shape)
        assert boundary_f(pred, gt) == pytest.approx(_f_by_distances(pred, gt, r))


def test_decay_bins_follow_davis_edges():
    # n = 8: linspace(1, 8, 5) = 1, 2.75, 4.5, 6.25, 8 -> rounded (4.5 up, as DAVIS's +1e-10) 1, 3, 5, 6, 8
    assert decay_bins(8) == [(0, 3), (2, 5), (4, 6), (5, 8)]
    assert decay_bins(1) == [(0, 1)] * 4


def test_track_scores_hand_case():
    j = [1, 1, 1, 0.9, 0.8, 0.5, 0.4, 0.3]
    f = [0.5] * 8
    s = track_scores(j, f)
    assert s["J"] == pytest.approx(5.9 / 8)
    assert s["J_recall"] == pytest.approx(5 / 8)          # 0.5 is not > 0.5
    assert s["J_decay"] == pytest.approx(1.0 - 0.4)       # bins [0:3] and [5:8]
    assert s["F"] == 0.5 and s["F_recall"] == 0.0 and s["F_decay"] == 0.0
    assert s["JF"] == pytest.approx((5.9 / 8 + 0.5) / 2)
    assert s["n_frames"] == 8


def test_track_scores_without_frames_is_nan_and_skips_nan_frames():
    assert all(math.isnan(v) for k, v in track_scores([], []).items() if k != "n_frames")
    s = track_scores([1.0, math.nan, 0.0], [1.0, 1.0, 1.0])
    assert s["J"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        track_scores([1.0], [1.0, 1.0])


def _davis_mask(video, frame):
    from PIL import Image  # test-only reader, independent of the dataset classes
    return np.asarray(Image.open(DAVIS_SAMPLE / "Annotations" / "480p" / video / f"{frame:05d}.png")) > 0


@pytest.mark.skipif(not DAVIS_SAMPLE.is_dir(), reason="../shared/data/davis2016-video-sample not available")
def test_j_and_f_on_real_davis_masks_match_independent_computation():
    gt = _davis_mask("motocross-jump", 10)
    for other in (11, 14, 20):
        pred = _davis_mask("motocross-jump", other)
        inter, union = np.logical_and(pred, gt).sum(), np.logical_or(pred, gt).sum()
        assert region_j(pred, gt) == pytest.approx(inter / union)
        assert boundary_f(pred, gt) == pytest.approx(_f_by_distances(pred, gt, 8))
    assert boundary_f(gt, gt) == 1.0 and region_j(gt, gt) == 1.0
