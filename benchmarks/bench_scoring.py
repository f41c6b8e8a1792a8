"""Harness throughput at high resolution: rows/s with a zero-cost adapter, and a per-stage profile.

Not a test. Data: images and masks of the shipped GrabCut sample (``sambench/data/grabcut_sample``),
upscaled to each target size (image: bilinear; mask: bilinear on 0/1 floats, then ``> 0.5``, so the
boundary stays smooth as in a real high-resolution annotation). Prompts: the ``stable-sam-paper``
protocol (61 prompts per object).

* **harness**: ``sambench.execution.image.evaluate_images`` + ``Store.write`` with a zero-cost adapter whose
  ``predict`` returns views into a bank of ``chunk`` realistic predicted masks (the GT warped by a small
  random affine: shifted, scaled, rotated; built before the clock starts). So the time is the harness's
  alone: scoring, serialisation and SQLite. Printed as rows/s, twice, interleaved on the same image:
  ``reference`` scores every mask with sambench.metrics in the calling thread (the per-prompt path before
  issue 14), ``fast`` with the runner's default (sambench.metrics.fast on a thread pool). The rows of both are
  compared: the ratio is only printed when they are identical.
* **stages**: per mask, the time of each stage, measured in isolation on the same masks: decode to host
  (a bool torch tensor copied into a numpy array, as the SAM adapter does), IoU, boundary IoU, RLE (with its
  JSON), prompt serialisation (JSON + sha256), SQLite write (per row of one image's transaction). The
  ``reference`` column is sambench.metrics on the full-resolution mask (the definitions, and the per-prompt path
  before issue 14); ``fast`` is sambench.metrics.fast (per-object GT cache, bounding-box crops, bit-packed
  erosion), when present.
* **sam-tiny** (``--sam-tiny MP``): the random-init ``sam-tiny`` model on one image of that size through
  ``evaluate_images``; prints the adapter's share and the harness's share of the wall time.

    python benchmarks/bench_scoring.py --sizes 0.3,1,4,12,24 --images 2
    python benchmarks/bench_scoring.py --sizes 12 --images 1 --sam-tiny 12
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from sambench.adapters.base import Adapter
from sambench.config import load_protocol_card
from sambench.datasets import open_dataset
from sambench.metrics import boundary_iou, encode_rle, iou
from sambench.inputs.prompts import Protocol
from sambench.store import Row, Store
from sambench.types import Object, Prediction, Prompt, Sample, canonical_json

try:  # the fast path (issue 14); absent on the baseline commit
    from sambench.metrics import fast as fast_scoring
    from sambench.execution.image import evaluate_images
    from sambench.execution.scoring import ScoringPool, default_threads
    from sambench.execution.timing import StageTimer
except ImportError:  # pragma: no cover - baseline
    fast_scoring = None


if fast_scoring is not None:
    class _ReferenceObject:
        """Scores with sambench.metrics on the full masks: what the runner did per prompt before issue 14."""

        def __init__(self, gt: np.ndarray) -> None:
            self.gt = gt
            self.shape = gt.shape
            self.area = int(np.count_nonzero(gt))

        def score(self, mask, timer=None):
            return fast_scoring.reference_score(mask, self.gt)

    class _ReferenceImageScorer:
        def __init__(self, objects) -> None:
            self.objects = {k: _ReferenceObject(v) for k, v in objects.items()}

        def object(self, object_id):
            return self.objects[object_id]

    class ReferencePool(ScoringPool):
        """Reference scoring in the calling thread (no overlap)."""

        def __init__(self) -> None:
            super().__init__(threads=0)

        def image_scorer(self, objects, ignores=None):
            return _ReferenceImageScorer(objects)


def upscaled_sample(ds, image_id: str, megapixels: float) -> Sample:
    """A GrabCut sample resized (aspect kept) to about ``megapixels`` million pixels."""
    s = ds.load(image_id)
    h, w = s.size
    f = math.sqrt(megapixels * 1e6 / (h * w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    image = cv2.resize(s.image, size, interpolation=cv2.INTER_LINEAR)
    objects = [Object(o.id, cv2.resize(o.mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.5)
               for o in s.objects]
    return Sample(s.dataset, s.image_id, image, objects)


def mask_bank(gt: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` realistic predictions of ``gt``: random small affine warps (±4% shift, ±8% scale, ±5°)."""
    rng = np.random.default_rng(seed)
    h, w = gt.shape
    src = gt.astype(np.float32)
    out = np.empty((n, h, w), dtype=bool)
    for i in range(n):
        a = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-5, 5), rng.uniform(0.92, 1.08))
        a[:, 2] += rng.uniform(-0.04, 0.04, size=2) * (w, h)
        out[i] = cv2.warpAffine(src, a, (w, h), flags=cv2.INTER_LINEAR) > 0.5
    return out


class BankAdapter(Adapter):
    """Zero-cost adapter: ``predict`` returns views into a prebuilt bank of masks."""

    name = "bank"

    def __init__(self, bank: np.ndarray) -> None:
        super().__init__()
        self.bank = bank

    def signature(self) -> dict:
        return {"model": "bank", "adapter_version": "1", "weights_sha256": None}

    def encode(self, image: np.ndarray, preprocessing: str = "sam") -> Any:
        self.encoder_calls += 1
        return None

    def predict(self, state: Any, prompts: Sequence[Prompt], mask_selection: str = "single") -> Prediction:
        n = len(prompts)
        self.decoded_prompts += n
        return Prediction(masks=self.bank[:n], scores=np.zeros(n, dtype=np.float32))


def _evaluate(adapter: Adapter, model: str, sample: Sample, protocols: list, chunk: int, pool=None) -> list[Row]:
    return evaluate_images(adapter, model, [sample], [set()], protocols, chunk, scoring=pool)[0]


def harness(sample: Sample, bank: np.ndarray, protocols: list, chunk: int, tmp: Path, pool=None) -> tuple[list, float]:
    """(rows, seconds) of evaluate_images + one Store.write for one image."""
    store = Store(tmp / f"h{time.perf_counter_ns()}")
    t0 = time.perf_counter()
    rows = _evaluate(BankAdapter(bank), "bank", sample, protocols, chunk, pool)
    store.write(rows)
    dt = time.perf_counter() - t0
    store.close()
    assert all(r.status == "ok" for r in rows), [r.error for r in rows if r.status != "ok"][:1]
    return rows, dt


def _time(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def stages(sample: Sample, bank: np.ndarray, protocols: list, tmp: Path, reps: int) -> dict:
    """Seconds per mask of each stage (reference and, when present, fast)."""
    import torch

    gt = sample.objects[0].mask
    k = len(bank)
    out: dict[str, dict] = {"reference": {}, "fast": {}}
    t_bank = torch.from_numpy(bank)
    host = np.empty_like(bank)

    def to_host():
        host[:] = t_bank.cpu().numpy()
    out["reference"]["decode to host"] = _time(to_host, reps) / k
    out["reference"]["IoU"] = _time(lambda: [iou(m, gt) for m in bank], reps) / k
    out["reference"]["boundary IoU"] = _time(lambda: [boundary_iou(m, gt) for m in bank], reps) / k
    out["reference"]["RLE"] = _time(lambda: [canonical_json(encode_rle(m)) for m in bank], reps) / k
    tasks = [t for p in protocols for t in p.tasks(sample.dataset, sample.image_id, sample.objects) if t.prompt]
    out["reference"]["prompt serialisation"] = _time(
        lambda: [(t.prompt.to_json(), t.prompt.hash()) for t in tasks], reps) / len(tasks)
    rle = canonical_json(encode_rle(bank[0]))
    rows = [Row(model="bank", dataset=sample.dataset, image_id=sample.image_id, object_id=t.object_id,
                protocol=t.protocol, level=t.level, draw=t.draw, protocol_version=t.version,
                level_value=t.level_value, prompt=t.prompt.to_json(), prompt_hash=t.prompt.hash(), iou=0.5,
                biou=0.5, score=0.5, gt_area=1, pred_area=1, mask_rle=rle, status="ok") for t in tasks]
    st = Store(tmp / "stages")
    out["reference"]["SQLite write"] = _time(lambda: (st.conn.execute("DELETE FROM results"), st.write(rows)),
                                             reps) / len(rows)
    st.close()
    if fast_scoring is not None:
        for name in ("decode to host", "prompt serialisation", "SQLite write"):
            out["fast"][name] = out["reference"][name]
        scorer = fast_scoring.ObjectScorer(gt)  # the GT work, once per object, is not per mask
        timer = StageTimer()
        t0 = time.perf_counter()
        for _ in range(reps):
            for m in bank:
                scorer.score(m, timer)
        out["fast"]["(scoring, 1 thread)"] = (time.perf_counter() - t0) / (reps * k)
        out["fast"].update({s: v / (reps * k) for s, v in timer.seconds.items()})
    return out


def sam_tiny_share(ds, image_id: str, megapixels: float, protocols: list, chunk: int, variants: list) -> None:
    """Wall time of sam-tiny on one image through evaluate_images, and the share the adapter did not fill."""
    from sambench.adapters import build_adapter

    sample = upscaled_sample(ds, image_id, megapixels)
    h, w = sample.size
    adapter = build_adapter("sam-tiny", device="cpu")
    inner = {"t": 0.0}
    enc, pred = adapter.encode, adapter.predict

    def timed(fn):
        def wrap(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                inner["t"] += time.perf_counter() - t0
        return wrap
    adapter.encode, adapter.predict = timed(enc), timed(pred)
    print(f"\nsam-tiny on {image_id} at {w}x{h} ({h * w / 1e6:.1f} MP)")
    print("| scoring | rows | wall s | adapter (encode+predict) s | harness s | harness share of wall |")
    print("|---|---|---|---|---|---|")
    for v in variants:
        pool = ReferencePool() if v == "reference" else (
            ScoringPool(default_threads()) if v == "fast" else None)
        inner["t"] = 0.0
        t0 = time.perf_counter()
        rows = _evaluate(adapter, "sam-tiny", sample, protocols, chunk, pool)
        wall = time.perf_counter() - t0
        if pool is not None:
            pool.close()
        print(f"| {v} | {len(rows)} | {wall:.1f} | {inner['t']:.1f} | {wall - inner['t']:.1f} | "
              f"{100 * (wall - inner['t']) / wall:.0f}% |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0.3,1,4,12,24", help="megapixels, comma-separated")
    ap.add_argument("--images", type=int, default=2, help="GrabCut images per size")
    ap.add_argument("--chunk", type=int, default=16, help="prompts per predict call (and masks in the bank)")
    ap.add_argument("--reps", type=int, default=1, help="repetitions of each stage timing")
    ap.add_argument("--sam-tiny", type=float, default=None, metavar="MP", help="also time sam-tiny at this size")
    args = ap.parse_args()
    ds = open_dataset("grabcut-sample")
    protocols = [Protocol(load_protocol_card("stable-sam-paper"))]
    ids = ds.ids()[: args.images]
    variants = ["reference", "fast"] if fast_scoring is not None else ["today"]
    cols = ["decode to host", "IoU", "boundary IoU", "RLE", "prompt serialisation", "SQLite write"]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        print("| MP | image | rows | " + " | ".join(f"{v} s | {v} rows/s" for v in variants) + " | ratio |")
        print("|---|---|---|" + "---|---|" * len(variants) + "---|")
        profiles = []
        for mp in (float(s) for s in args.sizes.split(",")):
            tot = {v: [0, 0.0] for v in variants}
            for image_id in ids:
                sample = upscaled_sample(ds, image_id, mp)
                bank = mask_bank(sample.objects[0].mask, args.chunk)
                got = {}
                for v in variants:
                    pool = ReferencePool() if v == "reference" else (
                        ScoringPool(default_threads()) if v == "fast" else None)
                    rows, dt = harness(sample, bank, protocols, args.chunk, tmp, pool)
                    if pool is not None:
                        pool.close()
                    got[v] = (rows, dt)
                    tot[v][0] += len(rows)
                    tot[v][1] += dt
                same = len({tuple(tuple(r.values()) for r in rows) for rows, _ in got.values()}) == 1
                ratio = f"{got['reference'][1] / got['fast'][1]:.1f}x" if len(variants) == 2 else ""
                if not same:
                    ratio = "ROWS DIFFER"
                h, w = sample.size
                print(f"| {mp:g} | {image_id} {w}x{h} | {len(rows)} | "
                      + " | ".join(f"{got[v][1]:.2f} | {len(got[v][0]) / got[v][1]:.1f}" for v in variants)
                      + f" | {ratio} |", flush=True)
                if image_id == ids[0]:
                    profiles.append((mp, f"{w}x{h}", stages(sample, bank, protocols, tmp, args.reps)))
            ratio = f"**{tot['reference'][1] / tot['fast'][1]:.1f}x**" if len(variants) == 2 else ""
            print(f"| {mp:g} | **all** | {tot[variants[0]][0]} | "
                  + " | ".join(f"{tot[v][1]:.2f} | **{tot[v][0] / tot[v][1]:.1f}**" for v in variants)
                  + f" | {ratio} |", flush=True)
        for variant in ("reference", "fast"):
            if not profiles[0][2][variant]:
                continue
            extra = sorted({k for _, _, p in profiles for k in p[variant]} - set(cols))
            print(f"\nper-stage ms per mask ({variant})")
            print("| MP | size | " + " | ".join(cols + extra) + " |")
            print("|---|---|" + "---|" * len(cols + extra))
            for mp, size, p in profiles:
                print(f"| {mp:g} | {size} | " + " | ".join(f"{1e3 * p[variant].get(c, float('nan')):.2f}"
                                                           for c in cols + extra) + " |")
    if args.sam_tiny:
        sam_tiny_share(ds, ids[0], args.sam_tiny, protocols, args.chunk, variants)


if __name__ == "__main__":
    main()
