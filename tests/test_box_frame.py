"""``box_frame: hq-sam-1024``: the GT box as HQ-SAM's evaluation measures it, on the label resized to 1024².

The reference (``sam_fixtures.hq_sam_reference_box``) is HQ-SAM's ``train/utils/misc.py::masks_to_boxes``
written out from its definition (coordinate grids, foreground = value > 128, max of x·mask, min with the
background filled by 1e8), applied to the label its dataloader's ``Resize`` produces (``F.interpolate``
bilinear on the float 0/255 label). It shares nothing with ``sambench.inputs.prompts`` but the resize call, which
is the definition itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from sambench.config import load_protocol_card, make_setting, parse_protocol_card, with_overrides
from sambench.datasets import open_dataset
from sambench.inputs.prompts import Protocol, gt_box, hq_sam_box, make_prompt
from sambench.types import Object, Prompt, SambenchError, keyed_rng

try:
    from sam_fixtures import hq_sam_reference_box
except ImportError:  # tests/ imported as a package
    from tests.sam_fixtures import hq_sam_reference_box


def in_1024_frame(box, h: int, w: int) -> np.ndarray:
    """An original-frame box as a model under ``hq-sam-1024`` preprocessing receives it (x·1024/W, y·1024/H)."""
    return np.asarray(box, dtype=np.float64) * [1024 / w, 1024 / h, 1024 / w, 1024 / h]


def test_hand_computed_box_of_a_two_pixel_square():
    """A 2×2 object at rows/columns 1–2 of a 4×4 label. Upscaling ×256 with ``align_corners=False`` maps
    output pixel i to source coordinate (i + 0.5)/256 − 0.5; between background column 0 and foreground
    column 1 the value is 255·t (t = that coordinate), > 128 from t > 128/255, i.e. i ≥ 257; on the far side
    255·(3 − t) > 128 up to i = 766. So HQ-SAM's box is (257, 257, 766, 766) where sambench's label-frame box
    (1, 1, 2, 2) scales to (256, 256, 512, 512)."""
    m = np.zeros((4, 4), bool)
    m[1:3, 1:3] = True
    assert gt_box(m) == (1.0, 1.0, 2.0, 2.0)
    box = hq_sam_box(m)
    assert box == (257 / 256, 257 / 256, 766 / 256, 766 / 256)
    np.testing.assert_array_equal(in_1024_frame(box, 4, 4), [257, 257, 766, 766])
    np.testing.assert_array_equal(hq_sam_reference_box(m), [257, 257, 766, 766])


def _shapes():
    rng = keyed_rng("box-frame-test")
    for h, w in ((90, 150), (333, 127), (1200, 1600), (37, 41)):
        yy, xx = np.mgrid[:h, :w]
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
        yield ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        yield rng.random((h, w)) < 0.02  # scattered pixels: extremes set by isolated pixels


def test_box_equals_hq_sams_masks_to_boxes_on_ellipses_and_scattered_pixels():
    for m in _shapes():
        h, w = m.shape
        np.testing.assert_allclose(in_1024_frame(hq_sam_box(m), h, w), hq_sam_reference_box(m), atol=1e-9)


@pytest.mark.slow
def test_box_equals_hq_sams_on_the_shipped_grabcut_masks_and_differs_from_the_label_frame():
    ds = open_dataset("grabcut-sample")
    far_edges = []
    for image_id in ds.ids():
        obj = ds.load(image_id).objects[0]
        h, w = obj.mask.shape
        hq = in_1024_frame(hq_sam_box(obj.mask), h, w)
        np.testing.assert_allclose(hq, hq_sam_reference_box(obj.mask), atol=1e-9)
        far_edges.append(hq[2:] - in_1024_frame(gt_box(obj.mask), h, w)[2:])
    far = np.array(far_edges)
    assert (far > 0.3).all() and far.max() > 1.5  # right/bottom edges always further out (docs/models.md)


def test_an_object_that_vanishes_at_1024_is_one_clear_error():
    m = np.zeros((3000, 3000), bool)
    m[11, 11] = True  # ×1024/3000 without antialiasing samples rows/columns 9.75 and 12.68: both > 0.5 px away
    with pytest.raises(SambenchError, match=r"vanishes when its 3000×3000 label is resized to 1024×1024"):
        hq_sam_box(m)
    card = load_protocol_card("hq-sam-paper")
    tasks = list(Protocol(card).tasks("d", "img", [Object(id="tiny", mask=m)]))
    assert len(tasks) == 1 and tasks[0].prompt is None and "vanishes" in tasks[0].error


def test_the_hq_sam_paper_card_draws_hq_sams_box():
    card = load_protocol_card("hq-sam-paper")
    assert card.preprocessing == "hq-sam-1024" and card.mask_selection == "single"
    (setting,) = card.settings
    assert setting.is_gt_box and setting.deterministic and dict(setting.params) == {"box_frame": "hq-sam-1024"}
    assert card.identity()["settings"] == [{"level": "gt-box", "kind": "gt-box", "box_frame": "hq-sam-1024"}]
    m = next(_shapes())
    prompt = Protocol(card).prompt(setting, 0, "d", "img", Object(id="o", mask=m))
    assert prompt.box == Prompt(box=hq_sam_box(m)).box != Prompt(box=gt_box(m)).box  # prompts keep 1e-4 px


def test_noise_is_added_to_the_frame_box_and_scale_zero_is_it():
    m = next(_shapes())
    for kind in ("noisy-box", "box-shift", "box-scale"):
        zero = make_setting(kind, {"scale": 0, "box_frame": "hq-sam-1024"}, None, "t")
        assert make_prompt(zero, m, keyed_rng(1)).box == Prompt(box=hq_sam_box(m)).box
    noisy = make_setting("noisy-box", {"scale": 0.5, "box_frame": "hq-sam-1024"}, None, "t")
    plain = make_setting("noisy-box", {"scale": 0.5}, None, "t")
    # same draws of u, different starting box: the frame changes the box, not the noise
    a, b = make_prompt(noisy, m, keyed_rng(7)).box, make_prompt(plain, m, keyed_rng(7)).box
    assert a != b and max(abs(p - q) for p, q in zip(a, b)) < 3.0


def test_card_field_validation_and_defaults(tmp_path):
    base = {"name": "t", "version": 1}
    card = parse_protocol_card({**base, "kind": "noisy-box", "levels": [0, 0.2], "box_frame": "hq-sam-1024"}, tmp_path / "t.yaml")
    assert all(dict(s.params)["box_frame"] == "hq-sam-1024" for s in card.settings)
    # --levels keeps the card's frame
    assert dict(with_overrides(card, levels=["0.7"]).settings[0].params)["box_frame"] == "hq-sam-1024"
    # a suite: the card's frame reaches box settings only; a setting may give its own
    suite = parse_protocol_card({**base, "box_frame": "hq-sam-1024", "settings": [
        {"kind": "gt-box"}, {"kind": "points", "k": 1}, {"level": "orig", "kind": "gt-box", "box_frame": "label"}]},
        tmp_path / "s.yaml")
    assert [s.to_dict() for s in suite.settings] == [
        {"level": "gt-box", "kind": "gt-box", "box_frame": "hq-sam-1024"},
        {"level": "1", "kind": "points", "k": 1, "negatives": 0},
        {"level": "orig", "kind": "gt-box"}]
    # the default frame stays out of identities: a shipped card's identity is what it was
    assert load_protocol_card("gt-box").identity()["settings"] == [{"level": "gt-box", "kind": "gt-box"}]
    explicit = parse_protocol_card({**base, "kind": "gt-box", "box_frame": "label"}, tmp_path / "l.yaml")
    assert explicit.settings == load_protocol_card("gt-box").settings
    for data, msg in (({"kind": "points", "levels": [1], "box_frame": "hq-sam-1024"}, "only applies to box settings"),
                      ({"kind": "gt-box", "box_frame": "1024"}, "box_frame must be one of label, hq-sam-1024"),
                      ({"kind": "clicks", "box_frame": "hq-sam-1024"}, "not to a 'clicks' protocol")):
        with pytest.raises(SambenchError, match=msg):
            parse_protocol_card({**base, **data}, tmp_path / "bad.yaml")
