"""Video propagation: every frame encoded once per video, vs re-encoding every frame for every prompt.

On random-init SAM 2.1 Hiera-T (card ``sam2.1-hiera-tiny-random``, the official ``SAM2VideoPredictor`` through
sambench's ``sam2-video`` adapter), propagates ``--prompts`` box prompts (keyed jitter of one box) through
``--frames`` synthetic frames (a textured object moving over noise, ``--height`` × ``--width``, DAVIS's
480 × 854 by default) twice:

* **encode-once**: one session for the video; every propagation reuses the session's frame features (what
  sambench's execution does for all the tracks × levels × draws of a video);
* **naive**: a new session per prompt, so every propagation encodes every frame again (what the official
  predictor's one-frame cache amounts to when propagations follow each other).

Checks that both give identical masks and prints seconds, encoder calls and the ratio naive / encode-once.
``--image-size 256`` (model input side; 1024 is the model's own) makes a quick run. Not a test::

    OMP_NUM_THREADS=2 python benchmarks/bench_video.py --prompts 5 --frames 4
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sambench.adapters.video import ListFrames
from sambench.types import Prompt, keyed_rng


def frames_of(n: int, h: int, w: int) -> list[np.ndarray]:
    rng = keyed_rng("bench-video", "frames", n, h, w)
    out = []
    for t in range(n):
        im = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
        y, x = h // 4 + 3 * t, w // 4 + 5 * t
        im[y:y + h // 3, x:x + w // 3] = rng.integers(120, 255, (h // 3, w // 3, 3), dtype=np.uint8)
        out.append(im)
    return out


def prompts_of(k: int, h: int, w: int) -> list[Prompt]:
    rng = keyed_rng("bench-video", "prompts", k)
    x0, y0, x1, y1 = w / 4, h / 4, w / 4 + w / 3, h / 4 + h / 3
    out = []
    for _ in range(k):
        dx0, dy0, dx1, dy1 = rng.normal(0, 0.1 * (x1 - x0), 4)
        out.append(Prompt(box=(max(0.0, x0 + dx0), max(0.0, y0 + dy0), min(w - 1.0, x1 + dx1), min(h - 1.0, y1 + dy1))))
    return out


def build(image_size: int):
    """The adapter of card sam2.1-hiera-tiny-random, at ``image_size`` (1024: the card itself)."""
    from sambench.adapters.video import build_video_adapter
    from sambench.adapters.video.sam2_video import Sam2VideoAdapter, build_video_predictor

    adapter = build_video_adapter("sam2.1-hiera-tiny-random", device="cpu")
    if image_size != 1024:
        small = build_video_predictor("hiera-tiny", overrides=[f"++model.image_size={image_size}"])
        small.load_state_dict(adapter.predictor.state_dict())
        adapter = Sam2VideoAdapter(small, name=adapter.name, options=adapter.options, device="cpu",
                                   weights_id=adapter.weights_id)
    return adapter


def run(adapter, frames, prompts, naive: bool) -> tuple[float, int, list]:
    before = adapter.encoder_calls
    t0 = time.perf_counter()
    masks = []
    session = None if naive else adapter.open(ListFrames(frames))
    for p in prompts:
        s = adapter.open(ListFrames(frames)) if naive else session
        masks.append([m for _, m, _ in adapter.propagate(s, 0, prompt=p)])
        if naive:
            adapter.close(s)
    if session is not None:
        adapter.close(session)
    return time.perf_counter() - t0, adapter.encoder_calls - before, masks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=5)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--image-size", type=int, default=1024)
    args = ap.parse_args()
    adapter = build(args.image_size)
    frames = frames_of(args.frames, args.height, args.width)
    prompts = prompts_of(args.prompts, args.height, args.width)
    t_once, n_once, m_once = run(adapter, frames, prompts, naive=False)
    t_naive, n_naive, m_naive = run(adapter, frames, prompts, naive=True)
    same = all(np.array_equal(a, b) for pa, pb in zip(m_once, m_naive) for a, b in zip(pa, pb))
    print(f"SAM 2.1 Hiera-T (random), input {args.image_size}px, {args.prompts} prompts x {args.frames} frames "
          f"of {args.height}x{args.width}")
    print(f"  encode-once: {t_once:7.2f} s, {n_once} encoder calls")
    print(f"  naive:       {t_naive:7.2f} s, {n_naive} encoder calls")
    print(f"  ratio naive / encode-once: {t_naive / t_once:.2f}x time, {n_naive / max(n_once, 1):.1f}x encoder calls; "
          f"masks identical: {same}")


if __name__ == "__main__":
    main()
