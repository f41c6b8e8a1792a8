"""How often RITM's float32 click rule differs from sambench's exact one, on the click rows of a run.

sambench picks each corrective click with integer squared distances (``sambench.inputs.clicks``); RITM
uses ``cv2.distanceTransform`` in float32, whose values depend on the output buffer's alignment (and so
on the allocator and the thread count). For every stored step of every click sequence of a run, this
replays the float32 rule from the previous stored mask, with the output buffer 64-byte aligned and 16
bytes past that, and counts:

* **clicks**: steps where a float32 variant picks another pixel (or region) than the stored click;
* **sequences**: sequences with at least one such step (from there the float32 sequence would diverge);
* **time**: seconds spent choosing the clicks with the exact rule vs the float32 rule, and their ratio.

Not a test. Docs: docs/protocols.md ("Exact arithmetic, not RITM's float32")::

    sambench run -m grabcut -p clicks -p clicks-gt-box -d grabcut-sample --out runs/clicks
    python benchmarks/click_float32.py runs/clicks
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from sambench.api import open_run
from sambench.datasets import open_dataset
from sambench.inputs.clicks import next_click
from sambench.metrics import decode_rle


def _float32_depth(region: np.ndarray, offset: int) -> np.ndarray:
    """RITM's distance (cv2 DIST_MASK_PRECISE, float32, zero padding), output ``offset`` bytes past 64."""
    padded = np.pad(region.astype(np.uint8), 1)
    raw = np.zeros(padded.size * 4 + 128, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    dst = raw[start:start + padded.size * 4].view(np.float32).reshape(padded.shape)
    cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE, dst=dst)
    return dst[1:-1, 1:-1].copy()


def float32_click(gt, pred, ignore, clicked, offset: int):
    """RITM's rule as sambench applies it (no erosion, clicked pixels zeroed), in float32: (x, y, label)."""
    valid = ~ignore if ignore is not None else np.ones_like(gt)
    fn, fp = _float32_depth(gt & ~pred & valid, offset), _float32_depth(~gt & pred & valid, offset)
    fn[clicked], fp[clicked] = 0, 0
    positive = fn.max() > fp.max()
    r, c = divmod(int(np.argmax(fn if positive else fp)), gt.shape[1])
    return c, r, int(positive)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    args = ap.parse_args()
    rows = open_run(args.run_dir).rows()
    rows = rows[rows["extras"].fillna("").str.contains('"click"') | (rows["level"] == "0")]
    datasets, seqs, changed, steps, differ, t_exact, t_float = {}, 0, 0, 0, 0, 0.0, 0.0
    for (ds, image, obj, protocol, draw, corr, sev), seq in rows.groupby(
            ["dataset", "image_id", "object_id", "protocol", "draw", "corruption", "severity"]):
        if ds not in datasets:
            datasets[ds] = open_dataset(ds)
        sample = datasets[ds].load(image)
        o = next(o for o in sample.objects if o.id == obj)
        gt = o.mask.astype(bool)
        seq = seq.sort_values("level_value")
        pred, clicked = np.zeros_like(gt), np.zeros_like(gt)
        any_diff = False
        for _, r in seq.iterrows():
            extras = json.loads(r.extras) if isinstance(r.extras, str) else {}
            if "click" in extras:
                x, y, lab = extras["click"]
                steps += 1
                stored = (int(x), int(y), int(lab))
                t0 = time.perf_counter()
                exact = next_click(gt, pred, o.ignore, clicked)
                t1 = time.perf_counter()
                float32_click(gt, pred, o.ignore, clicked, 0)
                t_exact, t_float = t_exact + t1 - t0, t_float + time.perf_counter() - t1
                if (exact.x, exact.y, int(exact.positive)) != stored:
                    raise SystemExit(f"{image}/{obj} {protocol}: stored click {stored} is not the exact rule's {exact}")
                if any(float32_click(gt, pred, o.ignore, clicked, off) != stored for off in (0, 16)):
                    differ += 1
                    any_diff = True
                clicked[int(y), int(x)] = True
            if isinstance(r.mask_rle, str):
                pred = decode_rle(json.loads(r.mask_rle)).astype(bool)
        seqs += 1
        changed += any_diff
    print(f"OpenCV {cv2.__version__}: {differ} of {steps} clicks ({differ / max(steps, 1):.2%}) and {changed} of "
          f"{seqs} sequences ({changed / max(seqs, 1):.1%}) differ under a float32 variant")
    print(f"choosing the clicks: exact {t_exact:.2f} s, float32 {t_float:.2f} s, ratio {t_exact / max(t_float, 1e-9):.2f}")


if __name__ == "__main__":
    main()
