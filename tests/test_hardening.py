"""Issue 11: each defect of the 105-fault audit, reproduced and kept fixed (one test or more per item)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sambench.adapters.baselines import BoxFillAdapter
from sambench.cards import make_setting
from sambench.metrics import encode_rle, iou, stability
from sambench.prompts import gt_box, keyed_rng, make_prompt, prompt_key
from sambench.types import SambenchError


def _cli(*args):
    return [sys.executable, "-m", "sambench.cli", *args]


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


# ------------------------------------------------------------------ item 11: noisy box s = 0 is the GT box


@pytest.mark.parametrize("kind", ["noisy-box", "box-shift", "box-scale"])
def test_item11_zero_noise_is_exactly_the_gt_box_for_1px_and_other_objects(kind):
    rng0 = np.random.default_rng(3)
    masks = []
    one = np.zeros((20, 30), bool)
    one[5, 7] = True                                  # a 1-pixel object: GT box (7, 5, 7, 5)
    masks.append(one)
    line = np.zeros((20, 30), bool)
    line[4:15, 29] = True                             # a 1-px wide line on the image's right edge
    masks.append(line)
    for _ in range(5):
        m = np.zeros((20, 30), bool)
        y, x = rng0.integers(0, 15), rng0.integers(0, 25)
        m[y:y + rng0.integers(1, 6), x:x + rng0.integers(1, 6)] = True
        masks.append(m)
    s0 = make_setting(kind, {"scale": 0}, None, "test")
    for i, m in enumerate(masks):
        for draw in range(4):
            rng = keyed_rng(prompt_key(0, "p", 1, "0", draw, "d", "im", str(i)))
            assert make_prompt(s0, m, rng).box == gt_box(m)
    # A 1-px object has zero-size noise terms: its GT box at every level, so box-fill scores exactly gt-box's 1.0.
    fill = BoxFillAdapter()
    state = fill.encode(np.zeros((20, 30, 3), np.uint8))
    for scale in (0.0, 0.5, 1.0):
        p = make_prompt(make_setting(kind, {"scale": scale}, None, "test"), one, keyed_rng("ab" * 32))
        assert p.box == (7.0, 5.0, 7.0, 5.0)
        assert iou(fill.predict(state, [p]).masks[0], one) == 1.0


def test_item11_collapsed_boxes_of_wider_objects_are_still_1px_wide():
    from sambench.prompts import noisy_box

    class _Push:  # u = +1 on the centre terms: a box pushed beyond the right/bottom edge collapses
        def uniform(self, lo, hi, size):
            return np.array([1.0, 1.0, -1.0, -1.0])

    box = noisy_box((25.0, 15.0, 29.0, 19.0), (20, 30), 1.0, _Push())
    assert box[2] - box[0] >= 1.0 - 1e-9 and box[3] - box[1] >= 1.0 - 1e-9
    assert 0 <= box[0] and box[2] <= 30 and 0 <= box[1] and box[3] <= 20


# ------------------------------------------------------------- item 12: stability of empty predictions


def test_item12_all_empty_draws_have_undefined_stability_and_are_counted():
    import pandas as pd

    from sambench.summary import summarize

    z = encode_rle(np.zeros((10, 10), bool))
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    assert all(np.isnan(v) for v in stability([z, z, z]))
    assert all(np.isnan(v) for v in stability([z]))
    assert stability([encode_rle(a)]) == (1.0, 1.0)
    # Inside a non-empty union an empty draw is an ordinary mask: pairs (z,z)=1, (z,a)=0, (z,a)=0.
    pair, union = stability([z, z, encode_rle(a)])
    assert pair == pytest.approx(1 / 3) and union == pytest.approx(1 / 3)

    rows = []
    for obj, masks in (("0", [a, a]), ("1", [np.zeros_like(a)] * 2)):  # object 1: empty in every draw
        gt = np.zeros_like(a)
        gt[1:4, 1:4] = True
        for d, m in enumerate(masks):
            rows.append(dict(model="m", dataset="d", image_id=f"im{obj}", object_id=obj, protocol="p", level="1",
                             draw=d, level_value=1.0, iou=iou(m, gt), biou=0.0, status="ok", error=None,
                             mask_rle=json.dumps(encode_rle(m)), prompt=None))
    table = summarize(pd.DataFrame(rows))
    r = table.iloc[0]
    assert r["n"] == 2 and r["n_stability"] == 1
    assert r["stability_pairwise"] == 1.0 and r["stability_union"] == 1.0  # object 0 only, not (1 + 1) / 2 of "nothing"
