"""Video dataset readers (DAVIS 2016/2017, YouTube-VOS/MOSE, SA-V) on tiny directories written here in each
documented layout, the real DAVIS 2016 sample (skipped when ../shared/data is absent), and the shipped
synthetic grabcut-video-sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sambench.datasets.video import (SyntheticVideoDataset, Track, VideoDataset, list_video_datasets,
                                     open_video_dataset)
from sambench.datasets.video_synth import FRAMES, HEIGHT, OCCLUDER_GRAY, WIDTH, _occluder_x
from sambench.types import SambenchError

DAVIS_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016-video-sample"
H, W = 12, 16


def _frame(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), value, np.uint8)).save(path)


def _palette_png(path: Path, idx: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(idx.astype(np.uint8), mode="P")
    pal = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (3 * 251) + [224, 224, 192]
    im.putpalette(pal)
    im.save(path)


def _idx(*objects) -> np.ndarray:
    """An index map with object k filling the rectangle given as (k, y0, y1, x0, x1)."""
    a = np.zeros((H, W), np.uint8)
    for k, y0, y1, x0, x1 in objects:
        a[y0:y1, x0:x1] = k
    return a


# -- DAVIS 2016 ----------------------------------------------------------------------------------------------
def _davis2016(root: Path) -> Path:
    for video in ("bear", "car"):
        for t in range(3):
            _frame(root / "JPEGImages" / "480p" / video / f"{t:05d}.jpg", 40 * t)
            m = np.zeros((H, W), np.uint8)
            m[2:6, 2 + t:8 + t] = 255
            d = root / "Annotations" / "480p" / video
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(m, mode="L").save(d / f"{t:05d}.png")
    sets = root / "ImageSets" / "480p"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("".join(f"/JPEGImages/480p/car/{t:05d}.jpg /Annotations/480p/car/{t:05d}.png\n"
                                          for t in range(3)))
    return root


def test_davis2016_reads_binary_masks_as_object_one_and_split_from_frame_pair_list(tmp_path):
    root = _davis2016(tmp_path / "DAVIS")
    ds = open_video_dataset(f"davis2016:{root}")
    assert ds.videos() == ["bear", "car"] and ds.name == "davis2016"
    assert ds.frame_ids("bear") == ["00000", "00001", "00002"] and ds.frame_count("bear") == 3
    assert ds.annotated("bear") == [0, 1, 2]
    m = ds.masks("bear", 1)
    assert list(m) == ["1"] and m["1"].dtype == bool and m["1"].sum() == 4 * 6
    assert m["1"][2, 3] and not m["1"][2, 2]
    assert ds.frame("bear", 2).shape == (H, W, 3) and ds.frame("bear", 2)[0, 0, 0] == pytest.approx(80, abs=2)
    assert ds.tracks("bear") == [Track("davis2016", "bear", "1", 0)]
    assert open_video_dataset(f"davis2016:{root}", split="val").videos() == ["car"]


def test_davis_frames_are_read_one_file_at_a_time(tmp_path):
    root = _davis2016(tmp_path / "DAVIS")
    ds = open_video_dataset(f"davis2016:{root}")
    frames = ds.frames("bear")
    (root / "JPEGImages" / "480p" / "bear" / "00002.jpg").unlink()   # a frame never asked for
    assert len(frames) == 3 and frames[0].shape == (H, W, 3) and frames.key == ("davis2016", "bear", "none", 0)
    with pytest.raises(SambenchError, match="00002.jpg"):
        frames[2]


def test_davis_errors_name_the_file(tmp_path):
    root = _davis2016(tmp_path / "DAVIS")
    with pytest.raises(SambenchError, match="test.txt.*not found"):
        open_video_dataset(f"davis2016:{root}", split="test")
    Image.fromarray(np.zeros((5, 5), np.uint8), mode="L").save(root / "Annotations" / "480p" / "bear" / "00001.png")
    ds = open_video_dataset(f"davis2016:{root}")
    with pytest.raises(SambenchError, match=r"00001\.png: mask is 5x5, the video's frames are 16x12"):
        ds.masks("bear", 1)
    with pytest.raises(SambenchError, match="DAVIS root directory not found"):
        open_video_dataset(f"davis2016:{tmp_path / 'nope'}")


# -- DAVIS 2017 ----------------------------------------------------------------------------------------------
def _davis2017(root: Path) -> Path:
    maps = [_idx((1, 0, 4, 0, 4)),
            _idx((1, 0, 4, 1, 5), (2, 6, 10, 6, 12)),
            _idx((2, 6, 10, 7, 13), (255, 0, 2, 14, 16))]      # object 1 gone, a void patch
    for t, a in enumerate(maps):
        _frame(root / "JPEGImages" / "480p" / "dogs" / f"{t:05d}.jpg", 10 * t)
        _palette_png(root / "Annotations" / "480p" / "dogs" / f"{t:05d}.png", a)
    _frame(root / "JPEGImages" / "480p" / "cats" / "00000.jpg", 0)
    _palette_png(root / "Annotations" / "480p" / "cats" / "00000.png", _idx((1, 1, 3, 1, 3)))
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "train.txt").write_text("dogs\n")
    return root


def test_davis2017_objects_are_palette_indices_with_late_objects_absent_objects_and_void(tmp_path):
    root = _davis2017(tmp_path / "DAVIS")
    ds = open_video_dataset(f"davis2017:{root}", split="train")
    assert ds.videos() == ["dogs"]
    assert ds.object_ids("dogs") == ["1", "2"]
    assert ds.tracks("dogs") == [Track("davis2017", "dogs", "1", 0), Track("davis2017", "dogs", "2", 1)]
    m0 = ds.masks("dogs", 0)
    assert set(m0) == {"1", "2"} and m0["1"].sum() == 16 and not m0["2"].any()   # absent: all-False
    m2 = ds.masks("dogs", 2)
    assert not m2["1"].any() and m2["2"].sum() == 24
    assert ds.void("dogs", 2).sum() == 4 and not ds.void("dogs", 0).any()
    assert open_video_dataset(f"davis2017:{root}").videos() == ["cats", "dogs"]


def test_davis2017_refuses_a_binary_mask_and_detects_formats(tmp_path):
    root2017 = _davis2017(tmp_path / "d17")
    root2016 = _davis2016(tmp_path / "d16")
    assert open_video_dataset(str(root2017)).format == "davis2017"
    assert open_video_dataset(str(root2016)).format == "davis2016"
    ds = open_video_dataset(f"davis2017:{root2016}")
    with pytest.raises(SambenchError, match=r"00000\.png: a binary .*davis2016:PATH"):
        ds.masks("bear", 0)


# -- YouTube-VOS / MOSE --------------------------------------------------------------------------------------
def _ytvos(root: Path, meta_at_root: bool = False) -> Path:
    maps = {0: _idx((1, 0, 4, 0, 4)), 2: _idx((1, 0, 4, 2, 6), (2, 5, 9, 5, 9)), 4: _idx((2, 5, 9, 6, 10))}
    for split in ("train", "valid"):
        base = root / split
        for t in range(6):
            _frame(base / "JPEGImages" / "v1" / f"{5 * t:05d}.jpg", 20 * t)
        for t, a in maps.items():
            if split == "valid" and t == 4:
                continue           # valid: a PNG only where an object first appears
            if split == "valid" and t == 2:
                a = np.where(a == 1, 0, a)
            _palette_png(base / "Annotations" / "v1" / f"{5 * t:05d}.png", a)
        meta = {"videos": {"v1": {"objects": {"1": {"category": "cat", "frames": ["00000", "00010"]},
                                              "2": {"category": "dog", "frames": ["00010", "00020"]}}}}}
        (root / f"meta_{split}.json" if meta_at_root else base / "meta.json").write_text(json.dumps(meta))
    return root


def test_ytvos_dense_split_has_unannotated_frames_and_late_objects(tmp_path):
    root = _ytvos(tmp_path / "ytvos")
    ds = open_video_dataset(f"ytvos:{root}")
    assert ds.split == "train" and not ds.sparse
    assert ds.frame_ids("v1") == ["00000", "00005", "00010", "00015", "00020", "00025"]
    assert ds.annotated("v1") == [0, 2, 4]
    assert ds.masks("v1", 1) is None
    assert ds.tracks("v1") == [Track("ytvos", "v1", "1", 0), Track("ytvos", "v1", "2", 2)]
    m4 = ds.masks("v1", 4)
    assert set(m4) == {"1", "2"} and not m4["1"].any() and m4["2"].sum() == 16


def test_ytvos_valid_is_sparse_a_png_annotates_only_the_objects_in_it(tmp_path):
    root = _ytvos(tmp_path / "ytvos")
    ds = open_video_dataset(f"ytvos:{root}", split="valid")
    assert ds.sparse and ds.annotated("v1") == [0, 2]
    assert set(ds.masks("v1", 2)) == {"2"}          # object 1 is not annotated in frame 2, not absent
    assert [t.first_frame for t in ds.tracks("v1")] == [0, 2]
    assert open_video_dataset(str(root / "valid")).format == "ytvos"


def test_mose_reads_meta_next_to_the_split_folder(tmp_path):
    root = _ytvos(tmp_path / "mose", meta_at_root=True)
    ds = open_video_dataset(f"mose:{root}", split="train")
    assert ds.name == "mose" and ds.meta_file == root / "meta_train.json"
    assert [t.object_id for t in ds.tracks("v1")] == ["1", "2"]


# -- SA-V ----------------------------------------------------------------------------------------------------
def _rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")}


def test_sav_masklet_json_maps_entry_k_to_frame_k_times_rate(tmp_path):
    root = tmp_path / "sav"
    for n in range(0, 9):
        _frame(root / "JPEGImages_24fps" / "sav_000001" / f"{n:05d}.jpg", 10 * n)
    a = _idx((1, 0, 4, 0, 4)) == 1
    b = _idx((1, 5, 9, 5, 9)) == 1
    empty = np.zeros((H, W), bool)
    data = {"video_id": "sav_000001", "video_height": H, "video_width": W, "masklet_id": [0, 3],
            "masklet": [[_rle(a), _rle(empty)], [_rle(a), _rle(b)], [_rle(empty), _rle(b)]]}
    (root / "sav_000001_manual.json").write_text(json.dumps(data))
    ds = open_video_dataset(str(root))
    assert ds.format == "sav" and ds.videos() == ["sav_000001"]
    assert ds.frame_count("sav_000001") == 9 and ds.annotated("sav_000001") == [0, 4, 8]
    assert ds.masks("sav_000001", 1) is None
    m = ds.masks("sav_000001", 4)
    assert set(m) == {"0", "3"} and np.array_equal(m["0"], a) and np.array_equal(m["3"], b)
    assert ds.tracks("sav_000001") == [Track("sav", "sav_000001", "0", 0), Track("sav", "sav_000001", "3", 4)]


def test_sav_png_layout_and_split_file(tmp_path):
    root = tmp_path / "sav_val"
    for v in ("sav_1", "sav_2"):
        for n in range(0, 5):
            _frame(root / "JPEGImages_24fps" / v / f"{n:05d}.jpg", 5 * n)
        for n in (0, 4):
            d = root / "Annotations_6fps" / v / "000"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray((_idx((1, 0, 4, n, n + 4)) * 255).astype(np.uint8), mode="L").save(d / f"{n:05d}.png")
    (root / "sav_val.txt").write_text("sav_2\n")
    ds = open_video_dataset(f"sav:{root}", split="val")
    assert ds.videos() == ["sav_2"] and ds.annotated("sav_2") == [0, 4]
    assert ds.masks("sav_2", 2) is None and ds.masks("sav_2", 4)["000"].sum() == 16


def test_sav_bad_json_is_one_line_naming_the_file(tmp_path):
    root = tmp_path / "sav"
    _frame(root / "sav_9" / "00000.jpg", 0)
    (root / "sav_9_manual.json").write_text("{not json")
    ds = open_video_dataset(f"sav:{root}")
    with pytest.raises(SambenchError, match=r"sav_9_manual\.json: cannot read JSON") as err:
        ds.masks("sav_9", 0)
    assert "\n" not in str(err.value)


# -- dispatch ------------------------------------------------------------------------------------------------
def test_open_video_dataset_errors_are_one_line(tmp_path):
    with pytest.raises(SambenchError, match="unknown video dataset 'grabcut-video-sampel'.*did you mean"):
        open_video_dataset("grabcut-video-sampel")
    with pytest.raises(SambenchError, match="give the dataset's root"):
        open_video_dataset("davis2017:")
    (tmp_path / "x").mkdir()
    with pytest.raises(SambenchError, match="not a known video layout"):
        open_video_dataset(str(tmp_path / "x"))
    assert "grabcut-video-sample" in list_video_datasets() and "davis2017:PATH" in list_video_datasets()


# -- the real DAVIS 2016 sample ------------------------------------------------------------------------------
@pytest.mark.skipif(not DAVIS_SAMPLE.is_dir(), reason="../shared/data/davis2016-video-sample not available")
def test_real_davis2016_sample_reads_every_frame_and_mask():
    ds = open_video_dataset(str(DAVIS_SAMPLE))
    assert ds.format == "davis2016" and ds.videos() == ["car-shadow", "motocross-jump"]
    for v in ds.videos():
        assert ds.frame_count(v) == 40 and ds.annotated(v) == list(range(40))
        assert ds.tracks(v) == [Track("davis2016", v, "1", 0)]
        m = ds.masks(v, 39)["1"]
        assert m.shape == (480, 854) and m.dtype == bool and 0 < m.mean() < 0.5
        assert ds.frame(v, 39).shape == (480, 854, 3)


# -- grabcut-video-sample ------------------------------------------------------------------------------------
def test_grabcut_video_sample_is_deterministic_and_small():
    a, b = open_video_dataset("grabcut-video-sample"), SyntheticVideoDataset()
    assert isinstance(a, VideoDataset) and len(a.videos()) == 5
    v = "v3-llama"
    assert a.frame_count(v) == FRAMES and a.frame(v, 5).shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(a.frame(v, 5), b.frame(v, 5))
    assert a.content_hash() == b.content_hash()
    assert a.video_hash(v) != a.video_hash("v1-banana")


def test_grabcut_video_sample_masks_are_exactly_the_pasted_pixels():
    ds = SyntheticVideoDataset()
    for v in ds.videos():
        bg = ds.background(v)
        for t in (0, 4, 9):
            frame, masks = ds.frame(v, t), ds.masks(v, t)
            union = np.logical_or.reduce(list(masks.values()))
            x = _occluder_x(v, t)
            bar = np.zeros(union.shape, bool)
            bar[:, max(0, x):max(0, x + 36)] = True
            outside = ~union & ~bar
            assert np.array_equal(frame[outside], bg[outside])          # nothing pasted outside the masks
            assert np.all(frame[bar] == OCCLUDER_GRAY) and not (union & bar).any()
            changed = np.any(frame != bg, axis=2)
            assert changed[union].mean() > 0.9                           # the masks' pixels were painted
            if len(masks) == 2:
                assert not (masks["1"] & masks["2"]).any()               # the later object hides the earlier


def test_grabcut_video_sample_has_motion_scale_change_occlusion_and_a_late_object():
    ds = SyntheticVideoDataset()
    for v in ds.videos():
        areas = [ds.masks(v, t)["1"].sum() for t in range(FRAMES)]
        assert max(areas) > 1.5 * min(areas) > 0
        cy = [np.argwhere(ds.masks(v, t)["1"]).mean(0) for t in (0, FRAMES - 1)]
        assert np.abs(cy[1] - cy[0]).max() > 20                           # the object moved
    late = ds.tracks("v5-two-objects")[1]
    assert late.object_id == "2" and late.first_frame > 0
    assert not ds.masks("v5-two-objects", 0)["2"].any()
