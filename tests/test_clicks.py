"""The click simulator on hand-made masks: every click position worked out by hand, step by step."""

import cv2
import numpy as np
import pytest

from sambench.inputs.clicks import (Click, click_prompt, error_distance, next_click, noc, run_sequence,
                                    squared_error_distance)


def _mask(h, w, *rects):
    """Boolean (h, w) mask with the inclusive rectangles (r0, r1, c0, c1) set."""
    m = np.zeros((h, w), dtype=bool)
    for r0, r1, c0, c1 in rects:
        m[r0:r1 + 1, c0:c1 + 1] = True
    return m


def test_first_click_is_the_deepest_object_pixel():
    gt = _mask(7, 7, (2, 4, 2, 4))  # 3x3 square: centre (3, 3) is 2 px from the outside
    assert next_click(gt, np.zeros_like(gt)) == Click(x=3, y=3, positive=True)


def test_image_border_counts_as_boundary_and_ties_go_to_the_first_pixel_in_row_major_order():
    gt = _mask(5, 5, (0, 2, 0, 4))  # rows 0-2, full width: touches the top, left and right borders
    d = error_distance(gt)
    # without padding row 0 would be 3 px from row 3; with it, the border is 1 px away
    assert d[0].tolist() == [1, 1, 1, 1, 1]
    assert d[1].tolist() == [1, 2, 2, 2, 1]
    assert next_click(gt, np.zeros_like(gt)) == Click(x=1, y=1, positive=True)


def test_equal_depth_goes_to_a_negative_click_and_deeper_region_wins():
    gt = _mask(9, 14, (1, 3, 1, 3))  # FN: 3x3, depth 2
    fp = _mask(9, 14, (1, 3, 8, 10))  # FP: 3x3, depth 2
    assert next_click(gt, fp) == Click(x=9, y=2, positive=False)  # tie -> negative (RITM's strict >)
    deeper_fn = _mask(9, 14, (1, 5, 1, 5))  # 5x5: depth 3 beats 2
    assert next_click(deeper_fn, fp) == Click(x=3, y=3, positive=True)


def test_clicked_and_ignored_pixels_are_never_clicked_and_an_exact_mask_gives_none():
    gt = _mask(7, 7, (2, 4, 2, 4))
    empty = np.zeros_like(gt)
    clicked = np.zeros_like(gt)
    clicked[3, 3] = True  # the centre is taken: the next deepest pixels have distance 1
    assert next_click(gt, empty, clicked=clicked) == Click(x=2, y=2, positive=True)
    assert next_click(gt, gt) is None
    assert next_click(gt, empty, ignore=gt) is None  # every error pixel ignored
    assert next_click(gt, empty, clicked=gt) is None  # every error pixel already clicked


def test_click_prompt_keeps_order_labels_and_box():
    p = click_prompt([Click(4, 4, True), Click(11, 7, False)], box=(1.0, 1.0, 7.0, 7.0))
    assert p.points == ((4.0, 4.0), (11.0, 7.0)) and p.labels == (1, 0) and p.box == (1.0, 1.0, 7.0, 7.0)
    assert click_prompt([], box=(0.0, 0.0, 2.0, 2.0)).form == "box"


# A 10x20 scene: object = blob A (7x7, rows 1-7, cols 1-7) + blob B (3x3, rows 2-4, cols 12-14).
# The fake model returns the GT blobs hit by a positive click (or inside the box), plus a fixed
# false-positive bar (rows 6-8, cols 10-18) unless a negative click lies on it.
A = (1, 7, 1, 7)
B = (2, 4, 12, 14)
BAR = (6, 8, 10, 18)
H, W = 10, 20
GT = _mask(H, W, A, B)


class FakeModel:
    def __init__(self, fail_at=None):
        self.calls = []
        self.fail_at = fail_at

    def __call__(self, prompt, mask_input):
        self.calls.append((prompt, mask_input))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("decoder exploded")
        pred = np.zeros((H, W), dtype=bool)
        pos = [(x, y) for (x, y), lab in zip(prompt.points or (), prompt.labels or ()) if lab == 1]
        neg = [(x, y) for (x, y), lab in zip(prompt.points or (), prompt.labels or ()) if lab == 0]
        for r0, r1, c0, c1 in (A, B):
            blob = _mask(H, W, (r0, r1, c0, c1))
            hit = any(blob[int(y), int(x)] for x, y in pos)
            if prompt.box is not None:
                x0, y0, x1, y1 = prompt.box
                hit |= x0 <= c0 and c1 <= x1 and y0 <= r0 and r1 <= y1
            pred |= blob if hit else False
        bar = _mask(H, W, BAR)
        if not any(bar[int(y), int(x)] for x, y in neg):
            pred |= bar
        return pred, 0.5, len(self.calls)  # "logits" = the call number


def test_sequence_step_by_step():
    model = FakeModel()
    steps = run_sequence(GT, model, max_clicks=5)
    assert [s.level for s in steps] == [1, 2, 3, 4, 5]
    # 1: empty prediction -> FN = A u B; A's centre (4, 4) is 4 px deep
    # 2: FN = B (depth 2 at (13, 3)), FP = bar (depth 2 at rows 7, cols 11..17): tie -> negative,
    #    first in row-major order: (11, 7)
    # 3: bar gone, FN = B -> (13, 3)
    # 4, 5: prediction exact -> no click, carried
    assert steps[0].prompt.points == ((4.0, 4.0),) and steps[0].prompt.labels == (1,)
    assert steps[1].prompt.points == ((4.0, 4.0), (11.0, 7.0)) and steps[1].prompt.labels == (1, 0)
    assert steps[2].prompt.points[-1] == (13.0, 3.0) and steps[2].prompt.labels == (1, 0, 1)
    assert [s.carried for s in steps] == [False, False, False, True, True]
    assert steps[4].prompt == steps[2].prompt and (steps[4].mask == GT).all()
    assert len(model.calls) == 3  # carried steps decode nothing
    from sambench.metrics import iou

    assert [round(iou(s.mask, GT), 4) for s in steps] == [round(49 / 85, 4), round(49 / 58, 4), 1.0, 1.0, 1.0]


def test_sequence_feeds_back_the_previous_logits_only_when_asked():
    model = FakeModel()
    run_sequence(GT, model, max_clicks=3, feed_logits=True)
    assert [m for _, m in model.calls] == [None, 1, 2]
    model = FakeModel()
    run_sequence(GT, model, max_clicks=3, feed_logits=False)
    assert [m for _, m in model.calls] == [None, None, None]


def test_sequence_with_a_start_box_and_an_ignore_band():
    box = (1.0, 1.0, 7.0, 7.0)  # around A
    steps = run_sequence(GT, FakeModel(), max_clicks=2, start_box=box)
    assert [s.level for s in steps] == [0, 1, 2]
    assert steps[0].prompt.points is None and steps[0].prompt.box == box
    assert steps[1].prompt.points == ((11.0, 7.0),) and steps[1].prompt.labels == (0,)  # box's error: tie -> FP bar
    assert steps[2].prompt.points == ((11.0, 7.0), (13.0, 3.0)) and steps[2].prompt.box == box
    # B ignored: after A is found only the bar is an error; then nothing is left
    ignore = _mask(H, W, B)
    steps = run_sequence(GT, FakeModel(), max_clicks=4, ignore=ignore)
    assert [s.prompt.points[-1] for s in steps[:2]] == [(4.0, 4.0), (11.0, 7.0)]
    assert [s.carried for s in steps] == [False, False, True, True]


def test_a_failed_step_fails_the_rest_of_the_sequence():
    steps = run_sequence(GT, FakeModel(fail_at=2), max_clicks=4, describe_error=lambda e: f"boom: {e}")
    assert [s.error for s in steps] == [None, "boom: decoder exploded", "boom: decoder exploded", "boom: decoder exploded"]
    assert steps[1].mask is None and steps[1].prompt.points == ((4.0, 4.0), (11.0, 7.0))


def test_noc_counts_the_first_level_reaching_the_target_and_the_limit_on_failure():
    ious = {1: 0.5, 2: 0.86, 3: 0.91, 4: 0.89}
    assert noc(ious, 0.85, 20) == 2 and noc(ious, 0.90, 20) == 3
    assert noc(ious, 0.95, 20) == 20  # never reached: the click limit
    assert noc({0: 0.97, 1: 0.5}, 0.95, 20) == 0  # a start box can reach it with no click
    with pytest.raises(ValueError):
        next_click(np.zeros((2, 2), bool), np.zeros((3, 3), bool))


# Two ellipses (cv2.ellipse((5, 0), (7, 4), 8) and ((6, 4), (18, 7), 35)) on a 22x20 image: three pixels,
# (row, col) = (7, 10), (7, 11) and (8, 12), tie as the deepest, at squared distance 50 (7.0710678...).
TIE = np.array([[c == "#" for c in row] for row in (
    "##############......", "###############.....", "################....", "#################...",
    "##################..", "###################.", "####################", "####################",
    "####################", ".###################", "..##################", "...#################",
    "......##############", ".......#############", ".........###########", "...........#########",
    "...............####.", "....................", "....................", "....................",
    "....................", "....................")])


def _brute_force_squared_depth(region):
    """min over non-region pixels of the zero-padded image of dy² + dx², by exhaustive search."""
    padded = np.pad(region, 1)
    outside = np.argwhere(~padded)
    out = np.zeros(region.shape, dtype=np.int64)
    for r, c in np.argwhere(region):
        out[r, c] = ((outside - (r + 1, c + 1)) ** 2).sum(axis=1).min()
    return out


def test_squared_distances_are_exact_integers_equal_to_a_brute_force_search():
    d2 = squared_error_distance(TIE)
    assert d2.dtype == np.int64
    assert np.array_equal(d2, _brute_force_squared_depth(TIE))
    assert sorted(map(tuple, np.argwhere(d2 == 50))) == [(7, 10), (7, 11), (8, 12)] and d2.max() == 50
    rng = np.random.default_rng(0)  # random blobs, inside the image or touching its border, and empty ones
    for _ in range(40):
        h, w = rng.integers(1, 14, size=2)
        region = np.zeros((h, w), bool)
        r0, c0 = rng.integers(0, h), rng.integers(0, w)
        region[r0:r0 + rng.integers(0, h + 1), c0:c0 + rng.integers(0, w + 1)] = True
        region &= rng.random((h, w)) < 0.9
        assert np.array_equal(squared_error_distance(region), _brute_force_squared_depth(region))


def _float32_ritm_choice(region, offset):
    """RITM's rule (cv2 float32 distances, first maximum) with the output buffer ``offset`` bytes past a
    64-byte boundary: OpenCV's result depends on that alignment (and so on the allocator and thread count)."""
    padded = np.pad(region.astype(np.uint8), 1)
    raw = np.zeros(padded.size * 4 + 128, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    dst = raw[start:start + padded.size * 4].view(np.float32).reshape(padded.shape)
    cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE, dst=dst)
    return divmod(int(np.argmax(dst[1:-1, 1:-1])), region.shape[1])


def test_click_on_a_tie_is_identical_with_one_and_two_opencv_threads_unlike_ritms_float32_rule():
    threads = cv2.getNumThreads()
    try:
        chosen, float32 = set(), set()
        for n in (1, 2):
            cv2.setNumThreads(n)
            for _ in range(4):  # fresh allocations: the float32 rule alternated between calls here
                chosen.add(next_click(TIE, np.zeros_like(TIE)))
            float32 |= {_float32_ritm_choice(TIE, off) for off in (0, 16)}
    finally:
        cv2.setNumThreads(threads)
    # exact rule: the first of the three tied pixels in row-major order, on every machine
    assert chosen == {Click(x=10, y=7, positive=True)}
    # RITM's float32 rule differs here: its values for the three tied pixels are one rounding step apart, so
    # (7, 10) or (8, 12) wins depending on the output buffer's alignment (both seen with OpenCV 5.1.0 on
    # x86-64; another build may show one). It never leaves the tie (docs/protocols.md: how often it matters).
    assert float32 <= {(7, 10), (7, 11), (8, 12)}, f"OpenCV {cv2.__version__} float32 choices: {float32}"
