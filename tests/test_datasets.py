"""Tests of sambench.datasets: shipped GrabCut sample, folder loader, COCO loader, bad input, content hash.

Expected values come from the source data (GrabCut BMP counts and digests computed from
/work/shared/... once, by hand, when the PNGs were made), from pycocotools / OpenCV as reference
implementations, or from arrays the tests build themselves.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sambench.datasets import CocoDataset, Dataset, FolderDataset, list_datasets, open_dataset
from sambench.types import SambenchError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FIX = Path(__file__).parent / "fixtures"
VOC_JSON = FIX / "coco_voc" / "annotations.json"
C128_JSON = FIX / "coco128" / "annotations" / "instances_subset.json"

# name: (H, W, foreground pixels, sha256(np.packbits(bmp == 255))[:16]) — computed from the hand-out's
# seg_GT/<name>.bmp with PIL when the shipped PNGs were made.
GRABCUT_GT = {
    "banana1": (480, 640, 78705, "3c99abff0e1d6ea1"),
    "banana2": (480, 640, 72509, "82c68d2d605b97ba"),
    "book": (480, 640, 113583, "fd4766d778c25bd8"),
    "bush": (600, 450, 45362, "c2d0aa9c10d33781"),
    "cross": (600, 450, 99812, "a85565029aad1c73"),
    "flower": (450, 600, 52289, "b5f3758721dc8d28"),
    "fullmoon": (350, 442, 9328, "591a1b2d02820f78"),
    "grave": (600, 450, 32326, "e3ce79fbf7b278ab"),
    "llama": (371, 513, 33455, "c4c36efafa947325"),
    "memorial": (600, 450, 49885, "58bf0d0b8882631f"),
    "sheep": (600, 450, 14034, "02152da93f439fc7"),
    "stone2": (480, 640, 74480, "b79b2b01164ccea8"),
    "teddy": (398, 284, 24163, "80c97867b8070f16"),
}


# --------------------------------------------------------------------------------------------------
# helpers
def save_gray(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8), "L").save(path)
    return path


def save_rgb(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8), "RGB").save(path, quality=95)
    return path


def rect_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int, value: int = 255) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = value
    return m


def solid(h: int, w: int, rgb=(200, 30, 60)) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (h, w, 3)).copy()


def make_pair(root: Path, im_dir: str, gt_dir: str, stem: str = "a", size=(20, 30), ext: str = ".jpg") -> None:
    h, w = size
    save_rgb(root / im_dir / f"{stem}{ext}", solid(h, w))
    save_gray(root / gt_dir / f"{stem}.png", rect_mask(h, w, 2, 10, 3, 12))


def one_line_error(excinfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


# --------------------------------------------------------------------------------------------------
# grabcut-sample
def test_grabcut_sample_masks_match_source_bmps_pixel_for_pixel():
    ds = open_dataset("grabcut-sample")
    assert isinstance(ds, Dataset) and ds.name == "grabcut-sample"
    assert ds.ids() == sorted(GRABCUT_GT)
    for image_id, (h, w, count, digest) in GRABCUT_GT.items():
        s = ds.load(image_id)
        assert s.dataset == "grabcut-sample" and s.image_id == image_id
        assert s.image.shape == (h, w, 3) and s.image.dtype == np.uint8
        assert [o.id for o in s.objects] == ["0"]
        m = s.objects[0].mask
        assert m.dtype == np.bool_ and m.shape == (h, w)
        assert int(m.sum()) == count
        assert hashlib.sha256(np.packbits(m)).hexdigest()[:16] == digest
        # the shipped PNG itself is {0, 255} with the same 255 count (read independently with PIL)
        raw = np.asarray(Image.open(s.meta["mask_paths"][0]))
        assert set(np.unique(raw).tolist()) <= {0, 255} and int((raw == 255).sum()) == count
        # RGB order: same channels as PIL's decoder (catches a BGR/RGB swap)
        pil = np.asarray(Image.open(s.meta["image_path"]).convert("RGB")).astype(np.int16)
        assert np.abs(pil - s.image).mean() < 1.0


def test_grabcut_sample_reference_boxes():
    ds = open_dataset("grabcut-sample")
    assert ds.load("banana1").meta["reference_box"] == [16.0, 20.0, 620.0, 436.0]
    cross = ds.load("cross")
    # cross's box reaches the image border: x2 == width and y2 == height (exclusive corners)
    assert cross.meta["reference_box"] == [1.0, 5.0, 450.0, 600.0]
    assert cross.size == (600, 450)
    for image_id in ds.ids():
        s = ds.load(image_id)
        x1, y1, x2, y2 = s.meta["reference_box"]
        ys, xs = np.nonzero(s.objects[0].mask)
        h, w = s.size
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        # the box encloses the mask up to 1 px (cross starts at x = 0 with x1 = 1; llama 1 px at the bottom)
        assert xs.min() >= x1 - 1 and ys.min() >= y1 - 1 and xs.max() <= x2 and ys.max() <= y2


def test_list_datasets_names():
    names = list_datasets()
    assert {"grabcut-sample", "dis5k-vd", "coift", "hrsod", "thinobject5k"} <= set(names)
    assert all(isinstance(v, str) and v and "\n" not in v for v in names.values())


# --------------------------------------------------------------------------------------------------
# folder loader
def test_folder_matches_at_depth(tmp_path):
    h, w = 24, 32
    masks = {}
    for seq, frame, (y0, y1, x0, x1) in [("bear", "00000", (2, 9, 3, 20)), ("bear", "00001", (5, 20, 1, 4)),
                                         ("car", "00000", (0, 24, 30, 32))]:
        save_rgb(tmp_path / "JPEGImages" / "480p" / seq / f"{frame}.jpg", solid(h, w, (250, 10, 10)))
        masks[f"480p/{seq}/{frame}"] = rect_mask(h, w, y0, y1, x0, x1) > 0
        save_gray(tmp_path / "Annotations" / "480p" / seq / f"{frame}.png", masks[f"480p/{seq}/{frame}"] * 255)
    save_rgb(tmp_path / "JPEGImages" / "480p" / "car" / "00001.jpg", solid(h, w))          # no mask
    save_gray(tmp_path / "Annotations" / "480p" / "dog" / "00000.png", rect_mask(h, w, 1, 3, 1, 3))  # no image
    save_rgb(tmp_path / "JPEGImages" / "480p" / "bear" / "._00000.jpg", solid(h, w))       # hidden: ignored

    ds = open_dataset(str(tmp_path))
    assert isinstance(ds, FolderDataset) and ds.name == tmp_path.name
    assert ds.ids() == sorted(masks)
    for image_id, expected in masks.items():
        s = ds.load(image_id)
        assert s.image.shape == (h, w, 3) and s.image.dtype == np.uint8
        assert s.image[..., 0].mean() > 230 and s.image[..., 2].mean() < 30  # red stays in channel 0
        assert [o.id for o in s.objects] == ["0"]
        assert np.array_equal(s.objects[0].mask, expected)
        assert s.meta["mask_paths"][0].endswith(image_id + ".png")
    d = ds.describe()
    json.dumps(d)
    assert d["n_images"] == 3 and d["images_without_mask"] == 1 and d["masks_without_image"] == 1
    assert d["examples_without_mask"] == ["480p/car/00001"] and d["examples_without_image"] == ["480p/dog/00000"]


@pytest.mark.parametrize("im_dir,gt_dir", [("im", "gt"), ("images", "masks"), ("images", "masks_max255"),
                                           ("images_test", "masks_test"), ("imgs", "seg_GT"),
                                           ("JPEGImages", "Annotations")])
def test_folder_autodetects_layouts(tmp_path, im_dir, gt_dir):
    root = tmp_path / "ds"
    make_pair(root, im_dir, gt_dir, "x1")
    make_pair(root, im_dir, gt_dir, "x2")
    ds = open_dataset(str(root), format="folder")
    assert ds.images_dir.name == im_dir and ds.masks_dir.name == gt_dir
    assert ds.ids() == ["x1", "x2"] and ds.name == "ds"


@pytest.mark.parametrize("preset,subpath,im_dir,gt_dir", [
    ("dis5k-vd", "data/DIS5K/DIS-VD", "im", "gt"),
    ("coift", "data/thin_object_detection/COIFT", "images", "masks"),
    ("hrsod", "data/thin_object_detection/HRSOD", "images", "masks_max255"),
    ("thinobject5k", "data/thin_object_detection/ThinObject5K", "images_test", "masks_test"),
])
def test_presets_find_hqseg44k_layouts(tmp_path, preset, subpath, im_dir, gt_dir):
    base = tmp_path / subpath
    make_pair(base, im_dir, gt_dir, "img_0001")
    # from the HQSeg-44K data root's parent, from the dataset folder itself, and with the "preset:PATH" form
    for ds in (open_dataset(preset, root=str(tmp_path)), open_dataset(preset, root=base),
               open_dataset(f"{preset}:{base}")):
        assert ds.name == preset and ds.ids() == ["img_0001"]
        assert ds.masks_dir == base / gt_dir and ds.describe()["preset"] == preset
    assert open_dataset(preset, root=base, name="mine").name == "mine"
    with pytest.raises(SambenchError) as e:
        open_dataset(preset)
    one_line_error(e, preset, "root")
    with pytest.raises(SambenchError) as e:
        open_dataset(preset, root=str(tmp_path / "nowhere"))
    one_line_error(e, "nowhere")


def test_hrsod_ambiguous_layout_needs_preset(tmp_path):
    root = tmp_path / "HRSOD"
    save_rgb(root / "images" / "p.jpg", solid(10, 10))
    save_gray(root / "masks" / "p.png", rect_mask(10, 10, 0, 10, 0, 10, value=1))  # 0/1 masks
    save_gray(root / "masks_max255" / "p.png", rect_mask(10, 10, 0, 5, 0, 10))
    with pytest.raises(SambenchError) as e:
        open_dataset(str(root))
    one_line_error(e, "masks_max255", "several")
    s = open_dataset("hrsod", root=root).load("p")
    assert int(s.objects[0].mask.sum()) == 50


def test_folder_explicit_dirs_and_extensions(tmp_path):
    save_rgb(tmp_path / "pics" / "a.jpg", solid(8, 8))
    save_gray(tmp_path / "pics" / "b.png", np.full((8, 8), 90))                 # a grayscale PNG image
    Image.fromarray(solid(8, 8)).save(tmp_path / "pics" / "c.JPG")              # upper-case extension
    for stem in "abc":
        save_gray(tmp_path / "gts" / f"{stem}.png", rect_mask(8, 8, 0, 4, 0, 4))
    save_gray(tmp_path / "gts" / "d.bmp", rect_mask(8, 8, 0, 4, 0, 4))

    ds = open_dataset(str(tmp_path), images="pics", masks="gts")  # relative to the root
    assert ds.ids() == ["a", "b", "c"] and ds.describe()["masks_without_image"] == 1
    gray = ds.load("b").image
    assert gray.shape == (8, 8, 3) and (gray == 90).all()

    only_jpg = open_dataset(str(tmp_path), images=str(tmp_path / "pics"), masks=str(tmp_path / "gts"),
                            image_exts=".jpg")
    assert only_jpg.ids() == ["a", "c"] and only_jpg.describe()["images_without_mask"] == 0
    assert only_jpg.describe()["masks_without_image"] == 2
    with pytest.raises(SambenchError) as e:  # d.bmp is the only .bmp mask and has no image: zero pairs
        FolderDataset(images=tmp_path / "pics", masks=tmp_path / "gts", mask_exts=["bmp"])
    one_line_error(e, "no image/mask pairs", ".bmp")
    save_rgb(tmp_path / "pics" / "d.jpg", solid(8, 8))
    only_bmp = FolderDataset(images=tmp_path / "pics", masks=tmp_path / "gts", mask_exts=["bmp"])
    assert only_bmp.ids() == ["d"] and only_bmp.describe()["images_without_mask"] == 3


def test_folder_zero_pairs_is_an_error_naming_both_dirs(tmp_path):
    save_rgb(tmp_path / "im" / "a.jpg", solid(4, 4))
    save_gray(tmp_path / "gt" / "b.png", rect_mask(4, 4, 0, 2, 0, 2))
    with pytest.raises(SambenchError) as e:
        open_dataset(str(tmp_path))
    one_line_error(e, str(tmp_path / "im"), str(tmp_path / "gt"), "no image/mask pairs")


def test_folder_same_directory_for_images_and_masks(tmp_path):
    save_rgb(tmp_path / "all" / "a.jpg", solid(6, 6))
    save_gray(tmp_path / "all" / "a.png", rect_mask(6, 6, 1, 3, 1, 3))
    ds = open_dataset(str(tmp_path / "all"), images=".", masks=".")
    assert ds.ids() == ["a"] and int(ds.load("a").objects[0].mask.sum()) == 4
    with pytest.raises(SambenchError) as e:
        open_dataset(str(tmp_path / "all"), images=".", masks=".", image_exts=".jpg,.png")
    one_line_error(e, ".png")


def test_folder_duplicate_stems_are_an_error(tmp_path):
    save_rgb(tmp_path / "im" / "a.jpg", solid(4, 4))
    save_rgb(tmp_path / "im" / "a.png", solid(4, 4))
    save_gray(tmp_path / "gt" / "a.png", rect_mask(4, 4, 0, 2, 0, 2))
    with pytest.raises(SambenchError) as e:
        open_dataset(str(tmp_path))
    one_line_error(e, "a.jpg", "a.png")
    assert open_dataset(str(tmp_path), image_exts=".jpg").ids() == ["a"]


def test_mask_threshold_is_strictly_above_128(tmp_path):
    values = np.array([[0, 127, 128, 129], [130, 200, 254, 255]], np.uint8)
    save_rgb(tmp_path / "im" / "t.png", solid(2, 4))
    save_gray(tmp_path / "gt" / "t.png", values)
    m = open_dataset(str(tmp_path)).load("t").objects[0].mask
    assert np.array_equal(m, np.array([[0, 0, 0, 1], [1, 1, 1, 1]], bool))
    # the option moves the cut: foreground is value > threshold
    m0 = open_dataset(str(tmp_path), threshold="0").load("t").objects[0].mask
    assert np.array_equal(m0, values > 0)
    with pytest.raises(SambenchError):
        open_dataset(str(tmp_path), threshold=300)


def test_mask_channel_bitdepth_and_palette_rules(tmp_path):
    h, w = 2, 3
    save_rgb(tmp_path / "im" / "rgb.png", solid(h, w))
    save_rgb(tmp_path / "im" / "u16.png", solid(h, w))
    save_rgb(tmp_path / "im" / "davis.png", solid(h, w))
    save_rgb(tmp_path / "im" / "graypal.png", solid(h, w))
    save_rgb(tmp_path / "im" / "bits.png", solid(h, w))
    # RGB mask: first channel (R) decides
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[0, 0] = (200, 0, 0)
    rgb[0, 1] = (0, 200, 200)
    rgb[1, 2] = (255, 255, 255)
    save_rgb(tmp_path / "gt" / "rgb.png", rgb)
    # 16-bit mask: 128*257 -> 128 (background), 129*257 -> 129 (foreground)
    u16 = np.array([[0, 128 * 257, 129 * 257], [65535, 0, 0]], np.uint16)
    cv2.imwrite(str(tmp_path / "gt" / "u16.png"), u16)
    # DAVIS-like colour palette: indices 1 and 2 are objects, 255 is void
    pal = Image.fromarray(np.array([[0, 1, 2], [255, 0, 1]], np.uint8), "P")
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192])
    pal.save(tmp_path / "gt" / "davis.png")
    # gray palette: the entry's gray value is thresholded
    gp = Image.fromarray(np.array([[0, 1, 2], [2, 1, 0]], np.uint8), "P")
    gp.putpalette([0, 0, 0, 128, 128, 128, 255, 255, 255])
    gp.save(tmp_path / "gt" / "graypal.png")
    Image.fromarray(np.array([[1, 0, 0], [0, 0, 1]], bool)).save(tmp_path / "gt" / "bits.png")

    ds = open_dataset(str(tmp_path))
    get = lambda k: ds.load(k).objects[0].mask  # noqa: E731
    assert np.array_equal(get("rgb"), np.array([[1, 0, 0], [0, 0, 1]], bool))
    assert np.array_equal(get("u16"), np.array([[0, 0, 1], [1, 0, 0]], bool))
    assert np.array_equal(get("davis"), np.array([[0, 1, 1], [0, 0, 1]], bool))
    assert np.array_equal(get("graypal"), np.array([[0, 0, 1], [1, 0, 0]], bool))
    assert np.array_equal(get("bits"), np.array([[1, 0, 0], [0, 0, 1]], bool))


def test_image_conversions_to_rgb_uint8(tmp_path):
    h, w = 3, 4
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0  # fully transparent: alpha dropped
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    pal = Image.fromarray(np.array([[0, 1, 1, 0]] * h, np.uint8), "P")
    pal.putpalette([5, 6, 7, 250, 100, 0])
    pal.save(tmp_path / "pal.png")
    cv2.imwrite(str(tmp_path / "u16.png"), np.full((h, w, 3), 65535, np.uint16))  # 16-bit white
    Image.fromarray(np.full((h, w), 77, np.uint8), "L").save(tmp_path / "gray.png")
    from sambench.datasets import read_image
    a = read_image(tmp_path / "rgba.png")
    assert a.shape == (h, w, 3) and a.dtype == np.uint8 and (a == [10, 20, 30]).all()
    p = read_image(tmp_path / "pal.png")
    assert (p[:, 1] == [250, 100, 0]).all() and (p[:, 0] == [5, 6, 7]).all()
    assert (read_image(tmp_path / "u16.png") == 255).all()
    g = read_image(tmp_path / "gray.png")
    assert g.shape == (h, w, 3) and (g == 77).all()


# --------------------------------------------------------------------------------------------------
# folder bad input
def test_folder_bad_inputs_fail_per_image(tmp_path):
    h, w = 16, 20
    good = rect_mask(h, w, 2, 8, 2, 8)
    save_rgb(tmp_path / "im" / "good.jpg", solid(h, w))
    save_gray(tmp_path / "gt" / "good.png", good)
    (tmp_path / "im" / "garbage.jpg").write_bytes(b"this is not a jpeg" * 20)
    save_gray(tmp_path / "gt" / "garbage.png", good)
    jpg = cv2.imencode(".jpg", np.full((h, w, 3), 128, np.uint8))[1].tobytes()
    (tmp_path / "im" / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    save_gray(tmp_path / "gt" / "truncated.png", good)
    (tmp_path / "im" / "zero.jpg").write_bytes(b"")
    save_gray(tmp_path / "gt" / "zero.png", good)
    save_rgb(tmp_path / "im" / "wrongsize.jpg", solid(h, w))
    save_gray(tmp_path / "gt" / "wrongsize.png", rect_mask(h + 1, w, 2, 8, 2, 8))
    save_rgb(tmp_path / "im" / "empty.jpg", solid(h, w))
    save_gray(tmp_path / "gt" / "empty.png", np.full((h, w), 128))  # nothing > 128
    save_rgb(tmp_path / "im" / "badmask.jpg", solid(h, w))
    (tmp_path / "gt" / "badmask.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")

    ds = open_dataset(str(tmp_path))
    assert ds.ids() == sorted(["good", "garbage", "truncated", "zero", "wrongsize", "empty", "badmask"])
    cases = {"garbage": ("garbage.jpg", "decode"), "truncated": ("truncated.jpg", "decode"),
             "zero": ("zero.jpg", "empty image file"), "wrongsize": ("wrongsize.png", "20x17", "20x16"),
             "empty": ("empty.png", "empty mask", "128"), "badmask": ("badmask.png", "mask")}
    for image_id in ds.ids():
        if image_id == "good":
            continue
        with pytest.raises(SambenchError) as e:
            ds.load(image_id)
        one_line_error(e, *cases[image_id])
    # a bad image does not spoil the others
    assert np.array_equal(ds.load("good").objects[0].mask, good > 0)
    with pytest.raises(SambenchError) as e:
        ds.load("nope")
    one_line_error(e, "nope")


def test_bad_box_file(tmp_path):
    save_rgb(tmp_path / "im" / "a.jpg", solid(10, 10))
    save_gray(tmp_path / "gt" / "a.png", rect_mask(10, 10, 2, 4, 2, 4))
    (tmp_path / "bx").mkdir()
    (tmp_path / "bx" / "a.txt").write_text("1 2 11 5")  # x2 > width
    ds = open_dataset(str(tmp_path), boxes="bx")
    with pytest.raises(SambenchError) as e:
        ds.load("a")
    one_line_error(e, "a.txt", "outside")
    (tmp_path / "bx" / "a.txt").write_text("1, 2, 10, 5\n")
    assert open_dataset(str(tmp_path), boxes="bx").load("a").meta["reference_box"] == [1.0, 2.0, 10.0, 5.0]


def test_open_dataset_errors(tmp_path):
    with pytest.raises(SambenchError) as e:
        open_dataset("no-such-dataset")
    one_line_error(e, "no-such-dataset", "grabcut-sample", "dis5k-vd")
    with pytest.raises(SambenchError) as e:
        open_dataset(str(tmp_path / "missing" / "dir"))
    one_line_error(e, "missing")
    make_pair(tmp_path / "ds", "im", "gt")
    with pytest.raises(SambenchError) as e:
        open_dataset(str(tmp_path / "ds"), images="im", masks="nomasks")
    one_line_error(e, "nomasks", "not found")
    with pytest.raises(SambenchError) as e:
        open_dataset(str(tmp_path / "ds"), images="im")
    one_line_error(e, "masks")
    with pytest.raises(SambenchError) as e:
        open_dataset(str(tmp_path / "ds"), colour="blue")
    one_line_error(e, "colour")
    with pytest.raises(SambenchError) as e:
        open_dataset(str(tmp_path / "ds"), format="coco")
    one_line_error(e, ".json")
    with pytest.raises(SambenchError) as e:
        open_dataset(str(tmp_path / "ds"), format="voc")
    one_line_error(e, "voc")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SambenchError) as e:
        open_dataset(str(empty))
    one_line_error(e, str(empty), "im/gt")


# --------------------------------------------------------------------------------------------------
# COCO loader
def _polygon_raster(polys, h, w) -> np.ndarray:
    ref = np.zeros((h, w), np.uint8)
    for p in polys:
        cv2.fillPoly(ref, [np.round(np.asarray(p).reshape(-1, 2) * 256).astype(np.int32)], 1, shift=8)
    return ref > 0


def _shoelace(polys) -> float:
    total = 0.0
    for p in polys:
        xy = np.asarray(p, float).reshape(-1, 2)
        x, y = xy[:, 0], xy[:, 1]
        total += 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    return total


@pytest.mark.parametrize("json_path,n_images,n_objects", [(VOC_JSON, 3, 12), (C128_JSON, 3, 14)])
def test_coco_fixtures_against_independent_rasters(json_path, n_images, n_objects):
    data = json.loads(json_path.read_text())
    ref = COCO()
    ref.dataset = copy.deepcopy(data)
    ref.createIndex()
    ds = open_dataset(str(json_path))
    assert isinstance(ds, CocoDataset)
    assert len(ds.ids()) == n_images and ds.describe()["n_objects"] == n_objects
    by_id = {str(a["id"]): a for a in data["annotations"]}
    images = {im["id"]: im for im in data["images"]}
    seen = set()
    for image_id in ds.ids():
        s = ds.load(image_id)
        im = images[s.meta["coco_image_id"]]
        assert Path(im["file_name"]).stem == image_id
        assert s.size == (im["height"], im["width"]) and s.image.dtype == np.uint8 and s.image.shape[2] == 3
        assert [o.id for o in s.objects] == sorted((str(a["id"]) for a in data["annotations"]
                                                   if a["image_id"] == im["id"]), key=int)
        for o in s.objects:
            ann = by_id[o.id]
            seen.add(o.id)
            assert o.meta["category_id"] == ann["category_id"]
            assert o.meta["category"] == ref.cats[ann["category_id"]]["name"]
            # reference implementation: pycocotools' own annToMask
            assert np.array_equal(o.mask, ref.annToMask(ann).astype(bool))
            # independent geometry: shoelace area and OpenCV's polygon fill
            area = int(o.mask.sum())
            if area > 500:
                assert abs(area / _shoelace(ann["segmentation"]) - 1) < 0.03
                r = _polygon_raster(ann["segmentation"], *s.size)
                assert (o.mask & r).sum() / (o.mask | r).sum() > 0.88
    assert seen == set(by_id)


def test_coco128_grayscale_image_skipped_image_and_image_dir():
    ds = open_dataset(str(C128_JSON))
    assert ds.ids() == ["000000000086", "000000000260", "000000000359"]  # 250 has no annotation
    d = ds.describe()
    json.dumps(d)
    assert d["images_in_json"] == 4 and d["images_without_kept_annotation"] == 1 and d["image_files_missing"] == 0
    assert Path(d["root"]) == (FIX / "coco128" / "images").resolve()  # file_name is relative to images/
    g = ds.load("000000000086").image  # a grayscale JPEG
    assert g.shape == (640, 512, 3)
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])
    assert np.array_equal(g[..., 0], np.asarray(Image.open(FIX / "coco128/images/train2017/000000000086.jpg")))


def test_coco_category_and_area_filters():
    all_ds = open_dataset(str(C128_JSON))
    tl = open_dataset(str(C128_JSON), categories="traffic light")
    assert tl.ids() == ["000000000359"]
    assert [o.meta["category"] for o in tl.load("000000000359").objects] == ["traffic light"] * 3
    cars = open_dataset(str(C128_JSON), categories=[3, "bus"])  # id 3 = car
    assert cars.ids() == ["000000000260", "000000000359"]
    assert {o.meta["category"] for i in cars.ids() for o in cars.load(i).objects} == {"car", "bus"}
    assert open_dataset(str(C128_JSON), categories="3").ids() == cars.ids()  # CLI-style string id
    assert cars.describe()["filtered_by_category"] == 14 - 3
    with pytest.raises(SambenchError) as e:
        open_dataset(str(C128_JSON), categories="unicorn")
    one_line_error(e, "unicorn", "person")

    areas = {o.id: int(o.mask.sum()) for i in all_ds.ids() for o in all_ds.load(i).objects}
    smallest = min(areas, key=areas.get)
    keep_all = open_dataset(str(C128_JSON), min_area=areas[smallest])
    assert keep_all.describe()["n_objects"] == 14 and keep_all.describe()["filtered_by_area"] == 0
    cut = open_dataset(str(C128_JSON), min_area=areas[smallest] + 1)
    kept = {o.id for i in cut.ids() for o in cut.load(i).objects}
    assert kept == {k for k, a in areas.items() if a >= areas[smallest] + 1} and smallest not in kept
    big = open_dataset(str(C128_JSON), min_area="20000")
    assert {o.id for i in big.ids() for o in big.load(i).objects} == {k for k, a in areas.items() if a >= 20000}
    assert big.ids() == ["000000000086"]


def _voc_variant(tmp_path: Path, edit) -> Path:
    data = json.loads(VOC_JSON.read_text())
    edit(data)
    out = tmp_path / "variant.json"
    out.write_text(json.dumps(data))
    return out


def test_coco_crowd_and_rle_annotations(tmp_path):
    h, w = 338, 500  # 2011_000003
    yy, xx = np.mgrid[:h, :w]
    disk = (yy - 100) ** 2 + (xx - 300) ** 2 < 40 ** 2
    ring = disk & ~((yy - 100) ** 2 + (xx - 300) ** 2 < 20 ** 2)
    rle = mask_utils.encode(np.asfortranarray(ring.astype(np.uint8)))
    rle_json = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}

    def edit(data):
        anns = {a["id"]: a for a in data["annotations"]}
        anns[1].update(iscrowd=1, segmentation=copy.deepcopy(rle_json))   # crowd RLE
        anns[2].update(segmentation=copy.deepcopy(rle_json))              # ordinary compressed RLE

    path = _voc_variant(tmp_path, edit)
    ds = open_dataset(str(path), images=str(FIX / "coco_voc"))
    s = ds.load("2011_000003")
    assert [o.id for o in s.objects] == ["0", "2"] and ds.describe()["crowd_skipped"] == 1
    assert np.array_equal(s.objects[1].mask, ring)
    with_crowd = open_dataset(str(path), images=str(FIX / "coco_voc"), include_crowd="true")
    s2 = with_crowd.load("2011_000003")
    assert [o.id for o in s2.objects] == ["0", "1", "2"] and s2.objects[1].meta["iscrowd"] == 1
    assert np.array_equal(s2.objects[1].mask, ring)
    assert with_crowd.content_hash() != ds.content_hash()


def test_coco_uncompressed_rle_hand_computed(tmp_path):
    save_rgb(tmp_path / "tiny.png", solid(4, 5))
    # rows 1-2, columns 1-3 of a 4x5 image; column-major runs: 5 zeros, then (2 ones, 2 zeros) x3 minus the last
    expected = np.zeros((4, 5), bool)
    expected[1:3, 1:4] = True
    data = {"images": [{"id": 7, "file_name": "tiny.png", "height": 4, "width": 5}],
            "annotations": [{"id": 70, "image_id": 7, "category_id": 1, "iscrowd": 0,
                             "segmentation": {"size": [4, 5], "counts": [5, 2, 2, 2, 2, 2, 5]}},
                            {"id": 71, "image_id": 7, "category_id": 1, "iscrowd": 0,
                             "segmentation": {"size": [4, 5], "counts": "5220003"}},
                            {"id": 72, "image_id": 7, "category_id": 1, "iscrowd": 0,  # 4-number part dropped
                             "segmentation": [[0, 0, 4, 3], [1, 1, 4, 1, 4, 3, 1, 3]]}],
            "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "tiny.json").write_text(json.dumps(data))
    s = open_dataset(str(tmp_path / "tiny.json")).load("tiny")
    assert [o.id for o in s.objects] == ["70", "71", "72"]
    assert np.array_equal(s.objects[0].mask, expected)
    assert np.array_equal(s.objects[1].mask, expected)
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[1, 1, 4, 1, 4, 3, 1, 3]], 4, 5))).astype(bool)
    assert np.array_equal(s.objects[2].mask, ref) and ref.any()


def test_coco_bad_inputs(tmp_path):
    voc_imgs = str(FIX / "coco_voc")
    # malformed JSON text
    bad = tmp_path / "broken.json"
    bad.write_text(VOC_JSON.read_text()[:500])
    with pytest.raises(SambenchError) as e:
        open_dataset(str(bad))
    one_line_error(e, "broken.json", "malformed JSON", "line")
    # structurally malformed COCO
    for edit, needle in [(lambda d: d.pop("images"), "'images'"),
                         (lambda d: d["annotations"][3].pop("segmentation"), "annotations[3]"),
                         (lambda d: d["annotations"][0].update(image_id=999), "999"),
                         (lambda d: d["images"][1].update(width="wide"), "width"),
                         (lambda d: d["annotations"][4].update(id=0), "repeats")]:
        p = _voc_variant(tmp_path, edit)
        with pytest.raises(SambenchError) as e:
            open_dataset(str(p), images=voc_imgs)
        one_line_error(e, "variant.json", needle)

    # per-image problems are raised by load(), naming the file, and leave the other images loadable
    def per_image(d):
        anns = {a["id"]: a for a in d["annotations"]}
        anns[0]["segmentation"] = [[10, 10, 10, 10, 10, 10]]                # image 0: decodes to nothing
        anns[3]["segmentation"] = {"size": [375, 500], "counts": [5, 5]}    # image 1: counts do not sum to H*W
        d["images"][2]["width"] = 400                                       # image 2: size mismatch
    p = _voc_variant(tmp_path, per_image)
    ds = open_dataset(str(p), images=voc_imgs)
    # a bad annotation fails alone (Sample.failed_objects), the image's other objects load (issue 11)
    for image_id, (ann, needle) in {"2011_000003": ("0", "empty"), "2011_000025": ("3", "sum")}.items():
        sample = ds.load(image_id)
        assert ann in sample.failed_objects and ann not in [o.id for o in sample.objects]
        msg = sample.failed_objects[ann]
        assert f"annotation {ann}" in msg and needle in msg and "\n" not in msg
    with pytest.raises(SambenchError) as e:
        ds.load("2011_000006")
    one_line_error(e, "2011_000006.jpg", "500x375", "400x375")
    odd = _voc_variant(tmp_path, lambda d: d["annotations"][5]["segmentation"][0].pop())
    assert "odd" in open_dataset(str(odd), images=voc_imgs).load("2011_000025").failed_objects["5"]
    assert len(open_dataset(str(odd), images=voc_imgs).load("2011_000006").objects) == 6

    # missing image files: a missing first image is an open error, a later one a load error
    copy_dir = tmp_path / "copy"
    shutil.copytree(FIX / "coco_voc", copy_dir)
    (copy_dir / "JPEGImages" / "2011_000025.jpg").unlink()
    ds = open_dataset(str(copy_dir / "annotations.json"))
    assert ds.describe()["image_files_missing"] == 1
    with pytest.raises(SambenchError) as e:
        ds.load("2011_000025")
    one_line_error(e, "2011_000025.jpg")
    (copy_dir / "JPEGImages" / "2011_000003.jpg").unlink()
    with pytest.raises(SambenchError) as e:
        open_dataset(str(copy_dir / "annotations.json"))
    one_line_error(e, "2011_000003.jpg", "images=")
    with pytest.raises(SambenchError) as e:
        open_dataset(str(VOC_JSON), images=str(tmp_path / "nope"))
    one_line_error(e, "nope")
    with pytest.raises(SambenchError) as e:
        open_dataset(str(VOC_JSON), format="folder")
    one_line_error(e, "directory")
    with pytest.raises(SambenchError) as e:
        open_dataset(str(VOC_JSON), threshold=3)
    one_line_error(e, "threshold")


# --------------------------------------------------------------------------------------------------
# content hash
_HASH_SNIPPET = ("import sys; from sambench.datasets import open_dataset; "
                 "print(open_dataset(sys.argv[1]).content_hash()); print(open_dataset(sys.argv[2]).content_hash())")


def test_content_hash_stable_across_processes(tmp_path):
    make_pair(tmp_path / "ds", "im", "gt", "a")
    here = (open_dataset(str(tmp_path / "ds")).content_hash(), open_dataset(str(VOC_JSON)).content_hash())
    out = subprocess.run([sys.executable, "-c", _HASH_SNIPPET, str(tmp_path / "ds"), str(VOC_JSON)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert tuple(out) == here
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in here)
    g = open_dataset("grabcut-sample")
    assert g.content_hash() == open_dataset("grabcut-sample").content_hash()


def _rewrite(path: Path, data: bytes) -> None:
    st = path.stat()
    path.write_bytes(data)
    # make sure the in-memory (path, size, mtime) cache sees a new file even on coarse-mtime filesystems
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_content_hash_sensitivity(tmp_path):
    root = tmp_path / "ds"
    make_pair(root, "im", "gt", "a")
    make_pair(root, "im", "gt", "b")
    h0 = open_dataset(str(root)).content_hash()
    assert open_dataset(str(root)).content_hash() == h0
    assert open_dataset(str(root), name="other").content_hash() == h0   # the name is not content
    assert open_dataset(str(root), threshold=100).content_hash() != h0  # options are

    mask = root / "gt" / "a.png"
    original = mask.read_bytes()
    arr = np.asarray(Image.open(mask)).copy()
    arr[0, 0] = 255
    save_gray(mask, arr)
    _rewrite(mask, mask.read_bytes())
    h1 = open_dataset(str(root)).content_hash()
    assert h1 != h0
    _rewrite(mask, original)
    assert open_dataset(str(root)).content_hash() == h0

    img = root / "im" / "b.jpg"
    original_img = img.read_bytes()
    raw = bytearray(original_img)
    raw[-3] ^= 0x01  # one byte of entropy-coded data
    _rewrite(img, bytes(raw))
    h2 = open_dataset(str(root)).content_hash()
    assert h2 not in (h0, h1)

    moved = tmp_path / "elsewhere" / "ds"
    shutil.copytree(root, moved)
    assert open_dataset(str(moved)).content_hash() == h2                # location-independent
    _rewrite(img, original_img)
    assert open_dataset(str(root)).content_hash() == h0                 # back to the original bytes
    assert open_dataset(str(moved)).content_hash() == h2                # the copy still has the flipped byte

    # a new pair changes the hash; an unpaired file does not (it determines no sample)
    save_rgb(root / "im" / "lonely.jpg", solid(4, 4))
    assert open_dataset(str(root)).content_hash() == h0
    make_pair(root, "im", "gt", "c")
    assert open_dataset(str(root)).content_hash() != h0


def test_coco_content_hash_sensitivity(tmp_path):
    h0 = open_dataset(str(C128_JSON)).content_hash()
    assert open_dataset(str(C128_JSON), categories="car").content_hash() != h0
    assert open_dataset(str(C128_JSON), min_area=10).content_hash() != h0
    assert open_dataset(str(C128_JSON), include_crowd=True).content_hash() != h0
    copy_dir = tmp_path / "c128"
    shutil.copytree(FIX / "coco128", copy_dir)
    cp = copy_dir / "annotations" / "instances_subset.json"
    assert open_dataset(str(cp)).content_hash() == h0  # location-independent
    data = json.loads(cp.read_text())
    data["annotations"][0]["segmentation"][0][0] += 1.0
    _rewrite(cp, json.dumps(data).encode())
    assert open_dataset(str(cp)).content_hash() != h0
