"""Measure how far sambench's box (GT box of the original label, scaled to the 1024² frame) is from
HQ-SAM's evaluation box (``masks_to_boxes`` of the label resized to 1024² by its dataloader), per edge,
on the shipped GrabCut sample. Prints one row per image and the extremes; docs/models.md quotes them.

    python benchmarks/hq_sam_box_frame.py
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sambench.datasets import open_dataset
from sambench.prompts import gt_box


def hq_sam_box(mask: np.ndarray, size: int = 1024) -> np.ndarray:
    """HQ-SAM's evaluation: the 0/255 label resized with ``F.interpolate(bilinear)`` (its dataloader's
    ``Resize``), then its ``misc.masks_to_boxes``: min/max pixel index where the resized label is > 128."""
    t = torch.from_numpy(mask.astype(np.float32) * 255.0)[None, None]
    r = F.interpolate(t, (size, size), mode="bilinear", align_corners=False)[0, 0] > 128
    ys, xs = np.nonzero(r.numpy())
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def sambench_box(mask: np.ndarray, size: int = 1024) -> np.ndarray:
    """The protocol's GT box (original pixels) scaled as the hq-sam-1024 mode scales prompts."""
    h, w = mask.shape
    x0, y0, x1, y1 = gt_box(mask)
    return np.array([x0 * size / w, y0 * size / h, x1 * size / w, y1 * size / h])


def main() -> None:
    ds = open_dataset("grabcut-sample")
    diffs = []
    print(f"{'image':10s} {'H×W':>9s}  hq-sam − sambench (x0, y0, x1, y1) in 1024-frame px")
    for i in ds.ids():
        s = ds.load(i)
        for o in s.objects:
            d = hq_sam_box(o.mask) - sambench_box(o.mask)
            diffs.append(d)
            print(f"{i:10s} {s.size[0]:>4d}×{s.size[1]:<4d}  " + "  ".join(f"{v:+6.2f}" for v in d))
    a = np.array(diffs)
    for k, name in enumerate(("x0", "y0", "x1", "y1")):
        print(f"{name}: min {a[:, k].min():+.2f}  max {a[:, k].max():+.2f}  mean {a[:, k].mean():+.2f}")
    print(f"largest |difference| of any edge: {np.abs(a).max():.2f} px of the 1024 frame")


if __name__ == "__main__":
    main()
