"""Measure how far the default GT box (``box_frame: label``: the original label's box, scaled to the 1024²
frame) is from HQ-SAM's evaluation box (``box_frame: hq-sam-1024``: ``masks_to_boxes`` of the label resized
to 1024², tests/test_box_frame.py checks it against HQ-SAM's definition), per edge, on the shipped GrabCut
sample. Prints one row per image and the extremes; docs/models.md quotes them.

    python benchmarks/hq_sam_box_frame.py
"""

from __future__ import annotations

import numpy as np

from sambench.datasets import open_dataset
from sambench.inputs.prompts import HQ_SAM_FRAME, gt_box, hq_sam_box


def in_1024_frame(box, shape: tuple[int, int]) -> np.ndarray:
    """An original-frame box as a model under hq-sam-1024 preprocessing receives it (x·1024/W, y·1024/H)."""
    h, w = shape
    return np.asarray(box, dtype=np.float64) * [HQ_SAM_FRAME / w, HQ_SAM_FRAME / h, HQ_SAM_FRAME / w, HQ_SAM_FRAME / h]


def main() -> None:
    ds = open_dataset("grabcut-sample")
    diffs = []
    print(f"{'image':10s} {'H×W':>9s}  hq-sam-1024 − label frame (x0, y0, x1, y1) in 1024-frame px")
    for i in ds.ids():
        s = ds.load(i)
        for o in s.objects:
            d = in_1024_frame(hq_sam_box(o.mask), o.mask.shape) - in_1024_frame(gt_box(o.mask), o.mask.shape)
            diffs.append(d)
            print(f"{i:10s} {s.size[0]:>4d}×{s.size[1]:<4d}  " + "  ".join(f"{v:+6.2f}" for v in d))
    a = np.array(diffs)
    for k, name in enumerate(("x0", "y0", "x1", "y1")):
        print(f"{name}: min {a[:, k].min():+.2f}  max {a[:, k].max():+.2f}  mean {a[:, k].mean():+.2f}")
    print(f"largest |difference| of any edge: {np.abs(a).max():.2f} px of the 1024 frame")


if __name__ == "__main__":
    main()
