"""Classical baselines: box-fill by hand, GrabCut on a synthetic scene, order-independence."""

import numpy as np
import pytest

from sambench.adapters import build_adapter
from sambench.adapters.baselines import BoxFillAdapter, GrabCutAdapter
from sambench.metrics import iou
from sambench.types import Prompt, SambenchError


def _scene(h=180, w=240):
    rng = np.random.default_rng(0)
    img = (rng.normal(60, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    disk = (yy - 90) ** 2 + (xx - 130) ** 2 < 45 ** 2
    img[disk] = (rng.normal(200, 12, (disk.sum(), 3)) * [1.0, 0.6, 0.3]).clip(0, 255).astype(np.uint8)
    return img, disk


def test_box_fill_by_hand():
    ad = BoxFillAdapter()
    st = ad.encode(np.zeros((6, 8, 3), np.uint8))
    pred = ad.predict(st, [Prompt(box=(1, 2, 3, 4)), Prompt(box=(6.4, 0, 8, 6)), Prompt(points=((1, 1),))])
    want = np.zeros((6, 8), bool)
    want[2:5, 1:4] = True
    np.testing.assert_array_equal(pred.masks[0], want)
    assert pred.masks[1][:, 6:].all() and not pred.masks[1][:, :6].any()  # clamped to the image
    assert not pred.masks[2].any()  # no box: empty
    assert np.isnan(pred.scores).all()
    assert ad.counters() == {"encoder_calls": 1, "decoded_prompts": 3}


@pytest.mark.parametrize("max_side", [0, 128])
def test_grabcut_segments_a_clear_object(max_side):
    img, disk = _scene()
    ad = GrabCutAdapter(max_side=max_side, iterations=3)
    st = ad.encode(img)
    pred = ad.predict(st, [Prompt(box=(80, 40, 180, 140)), Prompt(points=((130, 90), (120, 100)))])
    assert pred.masks.shape == (2, 180, 240)
    assert iou(pred.masks[0], disk) > 0.9
    assert pred.masks[1][90, 130]  # the clicked pixel is foreground


def test_grabcut_results_do_not_depend_on_call_order():
    img, _ = _scene()
    prompts = [Prompt(box=(70 + i, 35, 185 - i, 150)) for i in range(4)] + [Prompt(points=((125, 95),))]
    a = GrabCutAdapter(max_side=128)
    fwd = a.predict(a.encode(img), prompts).masks
    b = GrabCutAdapter(max_side=128)
    rev = b.predict(b.encode(img), prompts[::-1]).masks[::-1]
    np.testing.assert_array_equal(fwd, rev)


def test_grabcut_whole_image_box_returns_the_box():
    img, _ = _scene(40, 50)
    ad = GrabCutAdapter(max_side=0)
    assert ad.predict(ad.encode(img), [Prompt(box=(0, 0, 50, 40))]).masks.all()


def test_baseline_cards_and_options():
    ad = build_adapter("grabcut")
    assert isinstance(ad, GrabCutAdapter) and ad.signature()["options"] == {"max_side": 320, "iterations": 3}
    assert build_adapter("grabcut", options={"iterations": 1}).iterations == 1
    with pytest.raises(SambenchError, match="unknown option"):
        build_adapter("grabcut", options={"itrations": 1})
    for bad in ("abc", 2.7, True, 0):
        with pytest.raises(SambenchError, match="'iterations' must be an integer >= 1"):
            build_adapter("grabcut", options={"iterations": bad})
    with pytest.raises(SambenchError, match="takes no --checkpoint"):
        build_adapter("box-fill", checkpoint="x.pth")
