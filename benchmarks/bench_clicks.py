"""Interactive protocol: one encode per image for every click of every object, vs re-encoding per click.

For a model (default ``sam-tiny``; ``--option variant=vit_b --option random_init=true`` on ``sam-vit-b``
gives the real encoder cost without weights) and the first ``--images`` GrabCut sample images, runs
``--clicks`` corrective clicks per object twice:

* **shared**: sambench's interactive path (``sambench.execution.sequences.sequence_predictor``) — the image is
  encoded once and every step of the sequence decodes against that state;
* **naive**: the same sequence, but the image is encoded again before every step (what a
  ``set_image`` + ``predict`` loop per click does).

Checks that both give the same IoUs step by step and prints seconds, encoder calls and the speed ratio.
Not a test::

    python benchmarks/bench_clicks.py --model sam-tiny --images 2 --clicks 5
"""

from __future__ import annotations

import argparse
import time

from sambench.adapters import build_adapter
from sambench.inputs.clicks import run_sequence
from sambench.datasets import open_dataset
from sambench.execution.sequences import sequence_predictor
from sambench.metrics import iou


def _run(adapter, samples, clicks: int, naive: bool) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    ious = []
    for sample in samples:
        state = adapter.encode(sample.image, "sam")
        for obj in sample.objects:
            shared = sequence_predictor(adapter, state, "single", feed_logits=True)

            def predict(prompt, mask_input, sample=sample):
                if not naive:
                    return shared(prompt, mask_input)
                fresh = adapter.encode(sample.image, "sam")  # re-encode for every click
                return sequence_predictor(adapter, fresh, "single", feed_logits=True)(prompt, mask_input)

            steps = run_sequence(obj.mask, predict, clicks, ignore=obj.ignore, feed_logits=True)
            ious += [iou(s.mask, obj.mask, obj.ignore) for s in steps]
    return time.perf_counter() - t0, ious


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam-tiny")
    ap.add_argument("--option", action="append", default=[], help="MODEL option key=value (as sambench run --option)")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--clicks", type=int, default=5)
    args = ap.parse_args()
    import yaml

    options = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.option)}
    adapter = build_adapter(args.model, device="cpu", options=options or None)
    ds = open_dataset("grabcut-sample")
    samples = [ds.load(i) for i in ds.ids()[:args.images]]
    results = {}
    for mode in ("shared", "naive"):
        before = adapter.encoder_calls
        seconds, ious = _run(adapter, samples, args.clicks, naive=mode == "naive")
        results[mode] = (seconds, adapter.encoder_calls - before, ious)
        print(f"{mode:>6}: {seconds:7.2f} s, {results[mode][1]:3d} encoder calls, "
              f"{len(ious)} steps, mean IoU {sum(ious) / len(ious):.4f}")
    same = all(abs(a - b) < 1e-9 for a, b in zip(results["shared"][2], results["naive"][2]))
    print(f"identical IoUs step by step: {same}; naive / shared time = {results['naive'][0] / results['shared'][0]:.2f}x, "
          f"encoder calls {results['naive'][1]} vs {results['shared'][1]}")


if __name__ == "__main__":
    main()
