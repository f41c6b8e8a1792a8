"""The fast scorer stores exactly what sambench.metrics' definitions give, on numpy and on torch tensors."""

import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from scipy import ndimage

from sambench.metrics import boundary_dilation, encode_rle, mask_boundary
from sambench.execution.timing import StageTimer
from sambench.metrics.fast import (ImageScorer, MaskScore, ObjectScorer, counts_from_changes, erode_packed,
                              erode_torch, pack, reference_score)


def _blobs(rng, h, w, k=None):
    """1-3 ellipses anywhere (often cut by the image edge), sometimes with salt noise."""
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), bool)
    for _ in range(k or rng.integers(1, 4)):
        cy, cx = rng.uniform(-0.2 * h, 1.2 * h), rng.uniform(-0.2 * w, 1.2 * w)
        r = rng.uniform(0.5, max(h, w) / 1.5 + 1)
        m |= (yy - cy) ** 2 + ((xx - cx) * rng.uniform(0.5, 2)) ** 2 < r ** 2
    if rng.random() < 0.3:
        m |= rng.random((h, w)) < 0.02
    return m


def _cases(seed, n, max_side=160):
    """(gt, [preds]) pairs: random shapes, empty and full GT and predictions, thin images."""
    rng = np.random.default_rng(seed)
    for trial in range(n):
        h, w = (int(v) for v in rng.integers(1, max_side, size=2))
        if trial % 7 == 0:
            h = 1 if trial % 2 else h
            w = 1 if not trial % 2 else w
        gt = _blobs(rng, h, w)
        gt[:] = {0: False, 1: True}.get(trial % 10, gt)
        preds = [_blobs(rng, h, w) for _ in range(3)] + [np.zeros((h, w), bool), np.ones((h, w), bool), gt.copy()]
        yield gt, preds


def _scipy_boundary(mask, d):
    """boundary-iou-api's mask_to_boundary, written independently with scipy.ndimage."""
    padded = np.pad(mask, 1, constant_values=False)
    er = ndimage.binary_erosion(padded, structure=np.ones((3, 3), bool), iterations=d, border_value=0)
    return mask & ~er[1:-1, 1:-1]


def _api_biou(gt, dt, ratio=0.02):
    """boundary-iou-api style, with sambench's convention for two empty boundaries (1.0)."""
    d = max(1, int(round(ratio * math.sqrt(gt.shape[0] ** 2 + gt.shape[1] ** 2))))
    g, p = _scipy_boundary(gt, d), _scipy_boundary(dt, d)
    union = int((g | p).sum())
    return 1.0 if union == 0 else int((g & p).sum()) / union


def test_every_stored_value_equals_the_reference_functions():
    n = 0
    for gt, preds in _cases(0, 120):
        scorer = ObjectScorer(gt)
        for pred in preds:
            fast, ref = scorer.score(pred), reference_score(pred, gt)
            assert fast == ref, (gt.shape, fast, ref)
            assert fast.biou == _api_biou(gt, pred)
            n += 1
    assert n == 720


@pytest.mark.parametrize("ratio", [0.02, 0.1, 0.35, 0.8])
def test_large_dilations_cross_64_pixel_words(ratio):
    # d from 0.35 and 0.8 of a ~200 px diagonal is > 64: the shifts span whole uint64 words
    for gt, preds in _cases(int(ratio * 100), 25, max_side=200):
        scorer = ObjectScorer(gt, dilation_ratio=ratio)
        for pred in preds:
            assert scorer.score(pred) == reference_score(pred, gt, dilation_ratio=ratio)


def test_packed_erosion_and_gt_boundary_equal_the_definition():
    rng = np.random.default_rng(3)
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(2, 300, size=2))
        m = _blobs(rng, h, w)
        d = boundary_dilation(h, w)
        scorer = ObjectScorer(m)
        full = np.zeros((h, w), bool)
        if scorer.packed is not None:
            p = scorer.packed
            bits = np.unpackbits(np.ascontiguousarray(scorer.boundary.T).view(np.uint8), axis=1, bitorder="little")
            c0 = 64 * p.w0
            cols = min(w, c0 + bits.shape[1]) - c0
            full[p.r0:p.r0 + bits.shape[0], c0:c0 + cols] = bits[:, :cols]
        np.testing.assert_array_equal(full, mask_boundary(m))
        np.testing.assert_array_equal(full, _scipy_boundary(m, d))
        assert scorer.boundary_area == int(full.sum()) and scorer.area == int(m.sum())


def test_erosion_by_doubling_on_a_hand_made_square():
    m = np.zeros((12, 70), bool)
    m[1:10, 2:69] = True            # 9 x 67; d = 2 leaves 5 x 63 (rows 3..7, cols 4..66)
    eroded = np.unpackbits(np.ascontiguousarray(erode_packed(pack(m), 2).T).view(np.uint8), axis=1, bitorder="little")
    want = np.zeros((9, 128), np.uint8)
    want[2:7, 4:67] = 1             # frame rows start at 1, columns at 0
    np.testing.assert_array_equal(eroded, want)
    np.testing.assert_array_equal(erode_torch(torch.from_numpy(m), 2).numpy()[1:10], want[:, :70].astype(bool))


def test_rle_equals_pycocotools_encode_on_the_full_mask():
    rng = np.random.default_rng(4)
    h, w = 9, 7
    masks = [np.zeros((h, w), bool), np.ones((h, w), bool)]
    runs = np.zeros((h, w), bool)   # 1 from the bottom of column 2 into the top of column 3: one run
    runs[5:, 2] = True
    runs[:4, 3] = True
    runs[0, 0] = runs[-1, -1] = True    # the first and the last pixel
    masks.append(runs)
    masks += [rng.random((h, w)) < p for p in (0.1, 0.5, 0.9)]
    masks += [_blobs(rng, 64, 200) for _ in range(20)]
    for m in masks:
        got = ObjectScorer(np.zeros_like(m)).score(m).rle
        assert got == encode_rle(m)
        coco = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert got["counts"].encode() == coco["counts"]
        np.testing.assert_array_equal(mask_utils.decode({"size": got["size"], "counts": got["counts"].encode()}), m)


def test_counts_from_changes_cancels_a_run_crossing_columns():
    # 3x2 mask, column-major pixels 0..5; ones at 2 (bottom of column 0) and 3 (top of column 1):
    # column 0 changes at 2 and ends (1) at 3, column 1 starts (1) at 3 and changes at 4
    assert counts_from_changes(np.array([2, 3, 3, 4]), 6).tolist() == [2, 2, 2]
    assert counts_from_changes(np.array([0, 6]), 6).tolist() == [0, 6]      # full mask
    assert counts_from_changes(np.array([], dtype=np.int64), 6).tolist() == [6]


def test_torch_path_equals_numpy_on_cpu_tensors():
    for gt, preds in _cases(5, 40, max_side=120):
        scorer = ObjectScorer(gt)
        for pred in preds:
            assert scorer.score(torch.from_numpy(pred)) == scorer.score(pred)


def test_gt_work_is_done_once_per_object_and_shapes_are_checked():
    rng = np.random.default_rng(6)
    objs = {"a": _blobs(rng, 40, 50), "b": _blobs(rng, 40, 50)}
    scorer = ImageScorer(objs)
    timer = StageTimer()
    first = scorer.object("a")
    for _ in range(3):
        s = scorer.score(_blobs(rng, 40, 50), "a", timer)
        assert isinstance(s, MaskScore)
    assert scorer.object("a") is first and set(timer.seconds) >= {"bbox+pack", "IoU", "boundary IoU", "RLE"}
    with pytest.raises(ValueError, match="mask shapes differ"):
        scorer.score(np.zeros((41, 50), bool), "b")


def test_scoring_pool_keeps_order_and_bounds_chunks_in_flight():
    import threading
    import time

    from sambench.execution.scoring import ScoringPool

    finished, lock = [0], threading.Lock()

    def work(i):
        time.sleep(0.01)
        with lock:
            finished[0] += 1
        return i

    pool = ScoringPool(threads=2)
    futures = []
    for i in range(12):
        futures.append(pool.submit(work, i))
        with lock:
            in_flight = len(futures) - finished[0]
        assert in_flight <= 2   # memory stays bounded: submit waits for the oldest chunk
    assert [f.result() for f in futures] == list(range(12))
    pool.close()
    inline = ScoringPool(threads=0)
    fut = inline.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        fut.result()


class _TorchMasks:
    """Wraps an adapter so that its predictions hold torch bool tensors (as a CUDA adapter's would)."""

    def __init__(self, inner):
        self.inner = inner
        self.capabilities = inner.capabilities
        self.masks_on_device = False

    def encode(self, image, preprocessing="sam"):
        return self.inner.encode(image, preprocessing)

    def predict(self, state, prompts, mask_selection="single"):
        from sambench.types import Prediction

        p = self.inner.predict(state, prompts, mask_selection)
        return Prediction(masks=torch.from_numpy(p.masks), scores=p.scores, extras=p.extras)


def test_runner_rows_do_not_depend_on_threads_or_where_masks_live():
    import json

    from sambench.adapters.baselines import BoxFillAdapter
    from sambench.config import load_protocol_card, with_overrides
    from sambench.datasets import open_dataset
    from sambench.metrics import decode_rle
    from sambench.inputs.prompts import Protocol
    from sambench.execution.image import evaluate_images
    from sambench.execution.scoring import ScoringPool
    from sambench.store import COLUMNS

    sample = open_dataset("grabcut-sample").load("banana1")
    protocols = [Protocol(with_overrides(load_protocol_card("stable-sam-paper"), draws=3))]
    runs = []
    for adapter, threads in ((BoxFillAdapter(), 0), (BoxFillAdapter(), 2), (_TorchMasks(BoxFillAdapter()), 2)):
        pool = ScoringPool(threads)
        (rows,) = evaluate_images(adapter, "box-fill", [sample], [set()], protocols, 4, scoring=pool)
        runs.append([r.values() for r in rows])
        pool.close()
    assert runs[0] == runs[1] == runs[2] and len(runs[0]) == 1 + 3 * 3
    gt = sample.objects[0].mask
    for row in (dict(zip(COLUMNS, v)) for v in runs[0]):
        assert row["status"] == "ok"    # box-fill gives point prompts an empty mask
        want = reference_score(decode_rle(json.loads(row["mask_rle"])), gt)
        assert (row["iou"], row["biou"], row["pred_area"], row["gt_area"]) == (want.iou, want.biou, want.pred_area,
                                                                                 int(gt.sum()))


def test_manifest_records_where_and_how_long_scoring_ran(tmp_path):
    import json

    from sambench.datasets import DatasetSpec
    from sambench.execution import RunConfig, run
    from sambench.store import sum_scoring

    run(RunConfig(models=["box-fill"], protocols=["noisy-box"], datasets=[DatasetSpec("grabcut-sample")],
                  out=tmp_path / "r", levels=["0", "0.5"], draws=2, limit=2, workers=1, progress=False,
                  scoring_threads=2))
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    (inv,) = m["invocations"]
    assert inv["scoring"]["threads"] == 2 and inv["scoring"]["models"]["box-fill"]["places"] == {"host": 6}
    total = m["scoring"]["models"]["box-fill"]
    assert m["scoring"]["threads"] == 2 and total["places"] == {"host": 6} and m["scoring"]["store_write_s"] > 0
    stages = {"encode", "decode", "bbox+pack", "IoU", "boundary IoU", "RLE", "rows", "wait for scoring"}
    assert set(total["seconds"]) == stages and all(v >= 0 for v in total["seconds"].values())
    # a resumed run's invocation adds to the totals
    twice = sum_scoring([inv, inv])["models"]["box-fill"]
    assert twice["places"] == {"host": 12}
    assert twice["seconds"]["RLE"] == pytest.approx(2 * total["seconds"]["RLE"], abs=2e-3)


@pytest.mark.slow
def test_sam_adapter_writes_the_same_masks_into_a_device_tensor():
    # SAM on CUDA with masks_on_device thresholds into a bool tensor on its device instead of a numpy
    # array (SAM 2.1 and transformers: tests/test_sam2_adapter.py, tests/test_hf_adapter.py)
    from sam_fixtures import device_write_matches_host, synthetic_image

    from sambench.adapters import build_adapter

    adapter = build_adapter("sam-tiny", device="cpu")
    device_write_matches_host(adapter, adapter.encode(synthetic_image(60, 80, seed=0)))


def test_an_ignore_band_gives_the_reference_values():
    # GrabCut/VOC ignore bands: iou/biou leave ignored pixels out (sambench.metrics); area and RLE do not
    rng = np.random.default_rng(9)
    for _ in range(10):
        gt = _blobs(rng, 70, 90)
        ignore = _scipy_boundary(gt, 2) & (rng.random(gt.shape) < 0.8)
        scorer = ObjectScorer(gt, ignore=ignore)
        for pred in (_blobs(rng, 70, 90), np.zeros_like(gt), gt):
            want = reference_score(pred, gt, ignore=ignore)
            assert scorer.score(pred) == want == scorer.score(torch.from_numpy(pred))
