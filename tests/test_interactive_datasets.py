"""Dataset formats of the interactive benchmarks: the 128 ignore band, instance-id masks, presets."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from sambench.datasets import open_dataset
from sambench.metrics import iou
from sambench.types import SambenchError

FIXTURES = Path(__file__).parent / "fixtures"


def _image(path, h=12, w=16):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 1] = 90
    cv2.imwrite(str(path), img)


def _gray(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)


def _grabcut_mask(h=12, w=16):
    m = np.zeros((h, w), np.uint8)
    m[2:10, 3:13] = 128  # unlabelled band around the object
    m[4:8, 5:11] = 255   # the object
    return m


def test_grabcut_band_is_ignored_only_when_asked(tmp_path):
    _image(tmp_path / "images" / "a.jpg")
    _gray(tmp_path / "masks" / "a.png", _grabcut_mask())
    plain = open_dataset(str(tmp_path)).load("a").objects[0]
    assert plain.ignore is None and plain.mask.sum() == 24  # 128 is not > 128: background, as before
    ds = open_dataset(str(tmp_path), ignore=128)
    obj = ds.load("a").objects[0]
    assert obj.mask.sum() == 24 and obj.ignore.sum() == 80 - 24
    assert not (obj.mask & obj.ignore).any()
    # a prediction spilling over the band loses nothing once the band is ignored
    spill = np.zeros_like(obj.mask)
    spill[2:10, 3:13] = True
    assert iou(spill, obj.mask) == pytest.approx(24 / 80) and iou(spill, obj.mask, obj.ignore) == 1.0
    assert ds.content_hash() != open_dataset(str(tmp_path)).content_hash()
    assert ds.describe()["options"]["ignore"] == 128
    with pytest.raises(SambenchError, match="ignore: expected a mask value"):
        open_dataset(str(tmp_path), ignore=300)


def test_grabcut_berkeley_and_davis_presets(tmp_path):
    gc = tmp_path / "GrabCut"
    _image(gc / "data_GT" / "x.bmp")
    (gc / "boundary_GT").mkdir()
    cv2.imwrite(str(gc / "boundary_GT" / "x.bmp"), _grabcut_mask())  # RITM's GrabCut masks are BMPs
    ds = open_dataset(f"grabcut:{tmp_path}")
    obj = ds.load("x").objects[0]
    assert ds.name == "grabcut" and obj.mask.sum() == 24 and obj.ignore.sum() == 56

    bk = tmp_path / "Berkeley"
    _image(bk / "images" / "y.jpg")
    _gray(bk / "masks" / "y.png", _grabcut_mask())
    obj = open_dataset("berkeley", root=str(tmp_path)).load("y").objects[0]
    assert obj.ignore.sum() == 56

    dv = tmp_path / "DAVIS"
    _image(dv / "img" / "z.jpg")
    m = np.zeros((12, 16), np.uint8)
    m[3:6, 3:6] = 40  # any value > 0 is foreground in RITM's DAVIS loader
    _gray(dv / "gt" / "z.png", m)
    obj = open_dataset(f"davis-345:{tmp_path}").load("z").objects[0]
    assert obj.mask.sum() == 9 and obj.ignore is None


def test_small_integer_mask_is_refused_with_the_diagnosis_or_split(tmp_path):
    ids = np.zeros((12, 16), np.uint8)
    ids[1:4, 1:4] = 1
    ids[6:9, 2:12] = 2
    ids[0, :] = 255  # void
    _image(tmp_path / "images" / "a.jpg")
    _gray(tmp_path / "masks" / "a.png", ids)
    with pytest.raises(SambenchError, match=r"values \{0, 1, 2, 255\} are instance ids .*instances=true") as e:
        open_dataset(str(tmp_path)).load("a")
    assert "\n" not in str(e.value) and "a.png" in str(e.value)
    objs = open_dataset(str(tmp_path), instances="true").load("a").objects
    assert [o.id for o in objs] == ["1", "2"]
    assert objs[0].mask.sum() == 9 and objs[1].mask.sum() == 30
    assert all(o.ignore.sum() == 16 and o.ignore[0].all() for o in objs)
    # a 0/1 mask gets the same diagnosis (threshold=0 makes it one object)
    _gray(tmp_path / "masks" / "a.png", (ids == 1).astype(np.uint8))
    with pytest.raises(SambenchError, match=r"value 1 \(a 0/1 mask\?\).*threshold=0"):
        open_dataset(str(tmp_path)).load("a")
    assert open_dataset(str(tmp_path), threshold=0).load("a").objects[0].mask.sum() == 9


def test_voc_instance_pngs_split_into_the_labelme_objects():
    ds = open_dataset(str(FIXTURES / "coco_voc"), images="JPEGImages",
                      masks=str(FIXTURES / "voc_instances" / "SegmentationObject"), instances=True)
    coco = open_dataset(str(FIXTURES / "coco_voc" / "annotations.json"))
    assert ds.ids() == coco.ids()
    n = 0
    for image_id in ds.ids():
        objs = ds.load(image_id).objects
        ref = coco.load(image_id).objects
        assert len(objs) == len(ref)  # one object per instance id, as many as labelme's annotations
        for o in objs:  # each instance is one of the COCO polygons (drawn from the same labelme shapes)
            assert max(iou(o.mask, r.mask) for r in ref) > 0.9
            n += 1
    assert n == 12
    assert [o.id for o in ds.load("2011_000006").objects] == ["1", "2", "3", "4", "5", "7"]


def test_sbd_preset_reads_mat_instances_and_the_val_list(tmp_path):
    root = tmp_path / "benchmark_RELEASE" / "dataset"
    seg = np.zeros((12, 16), np.uint8)
    seg[1:5, 1:5] = 1
    seg[6:10, 8:14] = 2
    for name in ("2008_000001", "2008_000002"):
        _image(root / "img" / f"{name}.jpg")
        (root / "inst").mkdir(exist_ok=True)
        savemat(str(root / "inst" / f"{name}.mat"),
                {"GTinst": {"Segmentation": seg, "Boundaries": np.zeros((2, 1), object), "Categories": np.array([[15], [7]])}})
    (root / "val.txt").write_text("2008_000002\n")
    (root / "train.txt").write_text("2008_000001\n")
    ds = open_dataset(f"sbd:{tmp_path}")
    assert ds.ids() == ["2008_000002"]
    objs = ds.load("2008_000002").objects
    assert [(o.id, int(o.mask.sum())) for o in objs] == [("1", 16), ("2", 24)] and objs[0].ignore is None
    (root / "inst" / "2008_000002.mat").write_bytes(b"not matlab")
    with pytest.raises(SambenchError, match="2008_000002.mat: cannot read MATLAB file"):
        ds.load("2008_000002")


def test_shipped_band_variant_has_the_same_objects_plus_the_original_ignore_band():
    plain, band = open_dataset("grabcut-sample"), open_dataset("grabcut-sample-band")
    assert plain.ids() == band.ids() and plain.content_hash() != band.content_hash()
    counts = {}
    for image_id in band.ids():
        a, b = plain.load(image_id).objects[0], band.load(image_id).objects[0]
        assert np.array_equal(a.mask, b.mask) and a.ignore is None
        counts[image_id] = 0 if b.ignore is None else int(b.ignore.sum())
        if b.ignore is not None:
            assert not (b.ignore & b.mask).any()
            assert iou(a.mask | b.ignore, b.mask) < 1.0 and iou(a.mask | b.ignore, b.mask, b.ignore) == 1.0
    assert counts["banana1"] == 2562 and counts["llama"] == 0 and counts["teddy"] == 0
    assert sum(v > 0 for v in counts.values()) == 11
