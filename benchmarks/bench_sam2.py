"""SAM 2.1 adapter: encode-once batched decoding vs the naive one-``set_image``-per-prompt loop.

A random-init SAM 2.1 Hiera-T (official ``sam2`` package; speed does not depend on the weights) on the
first GrabCut images with the ``stable-sam-paper`` prompt suite:

* **batched**: sambench's ``Sam2Adapter`` — one ``encode`` per image, all prompts through ``predict``;
* **naive**: the official ``SAM2ImagePredictor`` — ``set_image`` + ``predict`` per prompt, timed on
  ``--naive-prompts`` prompts per image and extrapolated to all of them (said so in the output).

Prints seconds, prompts/s, encoder calls, the ratio, and the smallest mask IoU between the two paths on
the prompts both ran. Not a test::

    python benchmarks/bench_sam2.py --images 2 --draws 5 --naive-prompts 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--naive-prompts", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from sambench.adapters import build_adapter
    from sambench.config import load_protocol_card, with_overrides
    from sambench.datasets import open_dataset
    from sambench.inputs.prompts import Protocol

    torch.set_num_threads(args.threads)
    ds = open_dataset("grabcut-sample")
    proto = Protocol(with_overrides(load_protocol_card("stable-sam-paper"), draws=args.draws))
    ad = build_adapter("sam2.1-hiera-tiny-random", device="cpu")
    predictor = SAM2ImagePredictor(ad.model)
    warm = ds.load(ds.ids()[0]).image  # first-call costs (TorchScript transforms, allocator) out of the timing
    ad.encode(warm)
    predictor.set_image(warm)
    ad.encoder_calls = 0
    n_prompts = batched_s = naive_s = 0.0
    naive_done = 0
    worst = 1.0
    for image_id in ds.ids()[:args.images]:
        s = ds.load(image_id)
        prompts = [t.prompt for t in proto.tasks(s.dataset, s.image_id, s.objects) if t.prompt is not None]
        t0 = time.perf_counter()
        pred = ad.predict(ad.encode(s.image), prompts, "single")
        batched_s += time.perf_counter() - t0
        n_prompts += len(prompts)
        sub = prompts[:args.naive_prompts]
        t0 = time.perf_counter()
        for i, p in enumerate(sub):
            predictor.set_image(s.image)
            kw = {}
            if p.points:
                kw.update(point_coords=np.asarray(p.points), point_labels=np.asarray(p.labels))
            if p.box is not None:
                kw["box"] = np.asarray(p.box)
            masks, scores, _ = predictor.predict(multimask_output=False, **kw)
            m = masks[int(np.argmax(scores))] > 0
            union = np.logical_or(m, pred.masks[i]).sum()
            worst = min(worst, 1.0 if union == 0 else np.logical_and(m, pred.masks[i]).sum() / union)
        elapsed = time.perf_counter() - t0
        naive_s += elapsed / max(len(sub), 1) * len(prompts)  # extrapolated to every prompt of the image
        naive_done += len(sub)
    print(f"SAM 2.1 Hiera-T (random init), {args.images} GrabCut image(s), {int(n_prompts)} prompts "
          f"(stable-sam-paper, {args.draws} draws), torch threads {args.threads}")
    print(f"batched (sambench):  {batched_s:8.1f} s  {n_prompts / batched_s:7.2f} prompts/s  encoder calls {ad.encoder_calls}")
    print(f"naive (set_image per prompt, {naive_done} prompts timed, extrapolated): {naive_s:8.1f} s  "
          f"{n_prompts / naive_s:7.2f} prompts/s  encoder calls {int(n_prompts)}")
    print(f"ratio naive / batched: {naive_s / batched_s:.1f}x; smallest mask IoU between the paths: {worst:.4f}")


if __name__ == "__main__":
    main()
