"""Corruptions: time per image and the severity measure of docs/corruptions.md, plus a contact sheet.

For every corruption and severity, on the GrabCut sample: milliseconds per corrupted image (mean over
``--images`` images at their own size) and, on the 224² ``llama`` reference image with one random stream
for all severities, the documented distance from the clean image (sharpness loss for blurs, else
1 − Pearson correlation). ``--sheet PATH`` writes a PNG with one row per corruption (clean, 1 … 5).
Not a test: run ``python benchmarks/bench_corruptions.py [--images N] [--sheet sheet.png]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image

from sambench.inputs import corruptions as C
from sambench.inputs import imagenet_c
from sambench.datasets import open_dataset


def sharpness_loss(a: np.ndarray, b: np.ndarray) -> float:
    g = lambda z: np.abs(np.diff(z.astype(np.float64), axis=0)).mean() + np.abs(np.diff(z.astype(np.float64), axis=1)).mean()
    return 1.0 - g(a) / g(b)


def one_minus_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 - float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--sheet", default=None)
    ap.add_argument("--tile", type=int, default=112)
    args = ap.parse_args()
    ds = open_dataset("grabcut-sample")
    samples = [ds.load(i) for i in ds.ids()[:args.images]]
    ref = np.asarray(Image.fromarray(ds.load("llama").image).resize((224, 224), Image.Resampling.BILINEAR))
    names = [n for n in C.CORRUPTIONS if n != "frost" or _frost_available()]
    print("| corruption | ms/image 1..5 | measure | 1 | 2 | 3 | 4 | 5 |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name in names:
        ms = []
        for sev in C.SEVERITIES:
            t = time.perf_counter()
            for s in samples:
                C.corrupt_keyed(s.image, name, sev, 0, s.dataset, s.image_id)
            ms.append(1000 * (time.perf_counter() - t) / len(samples))
        blur = C.get(name).family == "blur"
        measure = sharpness_loss if blur else one_minus_correlation
        d = [measure(C.corrupt(ref, name, sev, np.random.default_rng(11)), ref) for sev in C.SEVERITIES]
        print(f"| `{name}` | {'/'.join(f'{m:.0f}' for m in ms)} | {'sharpness loss' if blur else '1 − corr'} | "
              + " | ".join(f"{v:.3f}" for v in d) + " |")
        if args.sheet:
            tiles = [samples[0].image] + [C.corrupt_keyed(samples[0].image, name, s, 0, samples[0].dataset,
                                                          samples[0].image_id) for s in C.SEVERITIES]
            rows.append(np.concatenate([_tile(t, args.tile) for t in tiles], axis=1))
    if args.sheet:
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.sheet, optimize=True)
        print(f"wrote {args.sheet}: rows {', '.join(names)}; columns clean, 1 … 5")


def _tile(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((side, int(round(side * h / w))), Image.Resampling.BILINEAR))


def _frost_available() -> bool:
    try:
        imagenet_c.frost_textures()
        return True
    except Exception:
        return False


if __name__ == "__main__":
    main()
