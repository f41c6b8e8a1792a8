"""GrabCut baseline: speed and accuracy cost of downscaling / fewer iterations.

Runs the noisy-box protocol (a few levels and draws) on the shipped GrabCut sample with several
(max_side, iterations) settings and compares each with full-resolution 5-iteration GrabCut:
prints seconds per prompt, the speed-up ratio, mean IoU against the GT, and mean IoU against the
reference setting's own masks. Not a test: run `python benchmarks/bench_grabcut.py [--images N]`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sambench.adapters.baselines import GrabCutAdapter
from sambench.cards import load_protocol_card, with_overrides
from sambench.datasets import open_dataset
from sambench.metrics import batch_iou
from sambench.prompts import Protocol


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=13)
    ap.add_argument("--levels", default="0,0.4,0.8")
    ap.add_argument("--draws", type=int, default=2)
    args = ap.parse_args()
    ds = open_dataset("grabcut-sample")
    proto = Protocol(with_overrides(load_protocol_card("noisy-box"), levels=args.levels.split(","), draws=args.draws))
    settings = [(0, 5), (512, 5), (320, 3), (256, 5), (256, 3), (192, 3), (128, 3)]
    results = {s: {"t": 0.0, "n": 0, "iou_gt": [], "masks": []} for s in settings}
    for image_id in ds.ids()[: args.images]:
        sample = ds.load(image_id)
        tasks = [t for t in proto.tasks(sample.dataset, sample.image_id, sample.objects) if t.prompt]
        gts = {o.id: o.mask for o in sample.objects}
        for s in settings:
            ad = GrabCutAdapter(max_side=s[0], iterations=s[1])
            t0 = time.perf_counter()
            st = ad.encode(sample.image)
            pred = ad.predict(st, [t.prompt for t in tasks])
            results[s]["t"] += time.perf_counter() - t0
            results[s]["n"] += len(tasks)
            for t, m in zip(tasks, pred.masks):
                results[s]["iou_gt"].append(batch_iou(m[None], gts[t.object_id])[0])
            results[s]["masks"].append(pred.masks)
    ref = settings[0]
    ref_t = results[ref]["t"] / results[ref]["n"]
    print(f"{'max_side':>8} {'iters':>5} {'s/prompt':>9} {'speed-up':>8} {'mIoU vs GT':>10} {'IoU vs full-res':>15}")
    for s in settings:
        r = results[s]
        per = r["t"] / r["n"]
        agree = np.mean([batch_iou(m[None], rm)[0] for ms, rms in zip(r["masks"], results[ref]["masks"])
                         for m, rm in zip(ms, rms)])
        print(f"{s[0] or 'full':>8} {s[1]:>5} {per:9.3f} {ref_t / per:7.1f}x {100 * np.mean(r['iou_gt']):10.1f} {100 * agree:15.1f}")
    print(f"({results[ref]['n']} prompts per setting: {args.images} images, levels {args.levels}, {args.draws} draws)")


if __name__ == "__main__":
    main()
