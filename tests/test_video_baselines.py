"""The weight-free video baselines: mask-hold (the floor) and flow-warp (optical flow), on a tiny moving square."""

import cv2
import numpy as np
import pytest

from sambench.adapters.video import ListFrames, build_video_adapter
from sambench.types import Prompt, SambenchError

H, W, STEP = 48, 64, 3


def _moving_square(n: int = 5):
    """A textured 16×16 square moving STEP px right per frame on a different texture; its exact masks."""
    rng = np.random.default_rng(7)
    # smooth textures (blurred noise): what optical flow can match, unlike pixel-wise noise
    back = cv2.GaussianBlur(rng.integers(0, 120, (H, W, 3)).astype(np.uint8), (5, 5), 1.5)
    obj = cv2.GaussianBlur(rng.integers(130, 255, (16, 16, 3)).astype(np.uint8), (5, 5), 1.5)
    frames, masks = [], []
    for t in range(n):
        img, m = back.copy(), np.zeros((H, W), bool)
        img[16:32, 8 + STEP * t:24 + STEP * t] = obj
        m[16:32, 8 + STEP * t:24 + STEP * t] = True
        frames.append(img)
        masks.append(m)
    return frames, masks


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_mask_hold_yields_the_prompt_mask_on_every_frame_in_order():
    frames, masks = _moving_square()
    ad = build_video_adapter("mask-hold")
    out = list(ad.propagate(ad.open(ListFrames(frames)), 2, mask=masks[2], direction="both"))
    assert [t for t, _, _ in out] == [2, 3, 4, 1, 0]
    assert all(np.array_equal(m, masks[2]) and s is None for _, m, s in out)


def test_a_box_prompt_starts_from_the_box_fill_mask():
    frames, _ = _moving_square()
    ad = build_video_adapter("mask-hold")
    t, first, _ = next(ad.propagate(ad.open(ListFrames(frames)), 0, prompt=Prompt(box=(2.4, 3.6, 5.5, 7.0))))
    expected = np.zeros((H, W), bool)
    expected[4:8, 2:7] = True  # rows round(3.6)=4..7, columns round(2.4)=2..round(5.5)=6 (half up), inclusive
    assert t == 0 and np.array_equal(first, expected)


def test_flow_warp_follows_a_moving_square_that_mask_hold_loses():
    frames, masks = _moving_square()
    scores = {}
    for name in ("mask-hold", "flow-warp"):
        ad = build_video_adapter(name)
        out = dict((t, m) for t, m, _ in ad.propagate(ad.open(ListFrames(frames)), 0, mask=masks[0]))
        scores[name] = _iou(out[4], masks[4])
    # held still, the square overlaps its position 12 px later by 4 of 16 columns: IoU 4/28
    assert scores["mask-hold"] == pytest.approx(4 / 28)
    assert scores["flow-warp"] > 0.85


def test_flow_warp_computes_each_frame_and_flow_once_per_session():
    frames, masks = _moving_square()
    ad = build_video_adapter("flow-warp", options={"method": "farneback"})
    session = ad.open(ListFrames(frames))
    first = [m for _, m, _ in ad.propagate(session, 0, mask=masks[0])]
    assert ad.counters() == {"encoder_calls": 5, "propagations": 1}
    again = [m for _, m, _ in ad.propagate(session, 0, mask=masks[0])]
    assert ad.counters() == {"encoder_calls": 5, "propagations": 2}  # no frame converted twice
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # a propagation does not see earlier ones


def test_flow_warp_options_are_checked_in_one_line():
    with pytest.raises(SambenchError, match="'method' must be one of dis, farneback"):
        build_video_adapter("flow-warp", options={"method": "lk"})
    with pytest.raises(SambenchError, match="unknown option 'radius'"):
        build_video_adapter("flow-warp", options={"radius": 3})
    with pytest.raises(SambenchError, match="takes no --checkpoint"):
        build_video_adapter("mask-hold", checkpoint="x.pt")
