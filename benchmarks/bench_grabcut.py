"""GrabCut baseline: speed and accuracy cost of downscaling / fewer iterations.

Runs the noisy-box protocol (a few levels and draws) on the shipped GrabCut sample with several
(max_side, iterations) settings through ``sambench.run`` — each setting is a GrabCut adapter object —
and compares each with full-resolution 5-iteration GrabCut. It prints seconds per prompt (the wall time
of the run, one worker, divided by its prompts), the speed-up ratio, mIoU as the summary table computes
it (per object: mean over draws; then mean over objects; printed here as the mean over the levels of the
summary's mIoU), and the mean IoU of each setting's masks against the reference setting's own masks.
Not a test: run `python benchmarks/bench_grabcut.py [--images N]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import sambench
from sambench.adapters.baselines import GrabCutAdapter
from sambench.metrics import decode_rle, iou
from sambench.store import KEY_COLUMNS

SETTINGS = [(0, 5), (512, 5), (320, 3), (256, 5), (256, 3), (192, 3), (128, 3)]


def evaluate(setting: tuple[int, int], args: argparse.Namespace, out: Path) -> tuple[float, sambench.Run]:
    """Seconds and the run of one (max_side, iterations) setting."""
    side, iters = setting
    adapter = GrabCutAdapter(f"grabcut-{side or 'full'}-{iters}", max_side=side, iterations=iters)
    t0 = time.perf_counter()
    run = sambench.run(adapter, "noisy-box", "grabcut-sample", out=out, levels=args.levels.split(","),
                       draws=args.draws, limit=args.images, workers=1)
    return time.perf_counter() - t0, run


def agreement(run: sambench.Run, reference: sambench.Run) -> float:
    """Mean IoU between the masks of two runs, prompt by prompt."""
    key = [c for c in KEY_COLUMNS if c != "model"]
    pairs = run.rows()[key + ["mask_rle"]].merge(reference.rows()[key + ["mask_rle"]], on=key, suffixes=("", "_ref"))
    return float(np.mean([iou(decode_rle(json.loads(x)), decode_rle(json.loads(y)))
                          for x, y in zip(pairs["mask_rle"], pairs["mask_rle_ref"])]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=13)
    ap.add_argument("--levels", default="0,0.4,0.8")
    ap.add_argument("--draws", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {s: evaluate(s, args, Path(tmp) / f"{s[0]}-{s[1]}") for s in SETTINGS}
        ref_s, ref_run = results[SETTINGS[0]]
        n = len(ref_run.rows())
        print(f"{'max_side':>8} {'iters':>5} {'s/prompt':>9} {'speed-up':>8} {'mIoU vs GT':>10} {'IoU vs full-res':>15}")
        for (side, iters), (seconds, run) in results.items():
            miou = run.summary()["miou"].mean()
            print(f"{side or 'full':>8} {iters:>5} {seconds / n:9.3f} {ref_s / seconds:7.1f}x {100 * miou:10.1f} "
                  f"{100 * agreement(run, ref_run):15.1f}")
    print(f"({n} prompts per setting: {args.images} images, levels {args.levels}, {args.draws} draws; "
          f"mIoU: mean over levels of the summary table's mIoU)")


if __name__ == "__main__":
    main()
