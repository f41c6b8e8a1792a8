"""SAM adapter: encode-once batched decoding vs the naive one-``set_image``-per-prompt loop.

For random-init SAM models on the CPU (``tiny`` and the ViT-B architecture; speed does not depend on
the weights) and the ``stable-sam-paper`` prompt suite on a few GrabCut images, this script runs

* **batched**: sambench's ``SamAdapter`` — one ``encode`` per image, every prompt of the image through
  ``predict`` (chunked inside the adapter);
* **naive**: the official ``segment_anything.SamPredictor`` — ``set_image`` + ``predict`` per prompt;

checks that both give the same masks and prints seconds, prompts/s, encoder calls, the speed ratio and
peak RSS (``resource.getrusage``; each configuration runs in its own process). For ViT-B the naive loop
is timed on a subset of prompts per image and extrapolated (said so in the output).

glibc's malloc returns large freed blocks to the OS and maps them again on the next call, which makes
every ViT encoder pass pay page faults. ``--malloc both`` runs each configuration with and without
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` set above 2 GiB (they must be set before the
process starts, hence the subprocesses).

Not a test. The figures in results/benchmarks.md come from (≈ 10 min on 2 cores)::

    python benchmarks/bench_sam.py --variants vit_b --images 2 --draws 20 --naive-prompts 3 --malloc both
    python benchmarks/bench_sam.py --variants tiny --images 2 --draws 20 --naive-prompts 0 --malloc tuned
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sambench.cli.perf import TUNED_MALLOC  # noqa: E402  (the thresholds the CLI applies)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _samples(n: int):
    """The first n images of the GrabCut sample shipped in the package (sambench/data/grabcut_sample)."""
    from sambench.datasets import open_dataset

    ds = open_dataset("grabcut-sample")
    return [ds.load(i) for i in ds.ids()[:n]]


def _prompts(sample, draws: int):
    from sambench.config import load_protocol_card, with_overrides
    from sambench.inputs.prompts import Protocol

    proto = Protocol(with_overrides(load_protocol_card("stable-sam-paper"), draws=draws))
    return [t.prompt for t in proto.tasks(sample.dataset, sample.image_id, sample.objects) if t.prompt is not None]


def _subset(n: int, k: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)}) if k < n else list(range(n))


def worker(args: argparse.Namespace) -> None:
    """One configuration in this process: prints a JSON line, writes masks to ``args.out``."""
    import torch

    from sambench.adapters.sam.adapter import SamAdapter, SamOptions
    from sambench.adapters.sam.nets import build_sam_model

    t0 = time.perf_counter()
    model = build_sam_model(args.variant, hq=False, seed=0)
    build_s = time.perf_counter() - t0
    samples = _samples(args.images)
    model_rss = _rss_mb()
    masks, n_prompts, encoder_calls, enc_s, encoded_rss = [], 0, 0, 0.0, 0.0
    t0 = time.perf_counter()
    if args.path == "batched":
        ad = SamAdapter(model, name=f"sam-{args.variant}", device="cpu",
                        options=SamOptions(variant=args.variant, chunk_size=args.chunk_size))
        for s in samples:
            prompts = _prompts(s, args.draws)
            te = time.perf_counter()
            state = ad.encode(s.image, "sam")
            enc_s += time.perf_counter() - te
            encoded_rss = encoded_rss or _rss_mb()  # peak after the first encoder pass, before any decoding
            pred = ad.predict(state, prompts, "single")
            masks.extend(np.packbits(m) for m in pred.masks)
            n_prompts += len(prompts)
        encoder_calls = ad.counters()["encoder_calls"]
    else:
        from segment_anything import SamPredictor

        predictor = SamPredictor(model)
        for s in samples:
            prompts = _prompts(s, args.draws)
            idx = _subset(len(prompts), args.naive_prompts) if args.naive_prompts else range(len(prompts))
            for i in idx:
                p = prompts[i]
                te = time.perf_counter()
                predictor.set_image(s.image)
                enc_s += time.perf_counter() - te
                encoder_calls += 1
                kw = {}
                if p.points:
                    kw["point_coords"] = np.asarray(p.points, dtype=np.float64)
                    kw["point_labels"] = np.asarray(p.labels)
                if p.box is not None:
                    kw["box"] = np.asarray(p.box, dtype=np.float64)
                with torch.no_grad():
                    m, _, _ = predictor.predict(**kw, multimask_output=False)
                masks.append(np.packbits(m[0]))
                n_prompts += 1
    total_s = time.perf_counter() - t0
    np.savez(args.out, *masks)
    print(json.dumps({"variant": args.variant, "path": args.path, "malloc": args.malloc, "build_s": build_s,
                      "total_s": total_s, "encode_s": enc_s, "prompts": n_prompts, "encoder_calls": encoder_calls,
                      "model_rss_mb": model_rss, "encoded_rss_mb": encoded_rss, "peak_rss_mb": _rss_mb(), "threads": torch.get_num_threads()}))


def _run(variant: str, path: str, malloc: str, a: argparse.Namespace, tmp: Path) -> tuple[dict, list]:
    out = tmp / f"{variant}-{path}-{malloc}.npz"
    env = dict(os.environ)
    for k in TUNED_MALLOC:
        env.pop(k, None)
    if malloc == "tuned":
        env.update(TUNED_MALLOC)
    cmd = [sys.executable, __file__, "--worker", "--variant", variant, "--path", path, "--malloc", malloc,
           "--images", str(a.images), "--draws", str(a.draws), "--chunk-size", str(a.chunk_size),
           "--naive-prompts", str(a.naive_prompts if path == "naive" else 0), "--out", str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"worker failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    with np.load(out) as z:
        masks = [z[f"arr_{i}"] for i in range(len(z.files))]
    return stats, masks


def _subset_positions(a: argparse.Namespace) -> list[int]:
    """Positions, in the batched output, of the prompts the naive run decoded."""
    if not a.naive_prompts:
        return []
    pos, offset = [], 0
    for s in _samples(a.images):
        n = len(_prompts(s, a.draws))
        pos += [offset + i for i in _subset(n, a.naive_prompts)]
        offset += n
    return pos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="tiny,vit_b", help="comma-separated: tiny, vit_b (vit_l, vit_h work too)")
    ap.add_argument("--images", type=int, default=2, help="GrabCut images (1 object each)")
    ap.add_argument("--draws", type=int, default=20, help="draws per random level of stable-sam-paper (card: 20)")
    ap.add_argument("--naive-prompts", type=int, default=3,
                    help="prompts per image timed in the naive loop, evenly spread over the suite (0 = all)")
    ap.add_argument("--chunk-size", type=int, default=8, help="adapter chunk size")
    ap.add_argument("--malloc", default="both", choices=["default", "tuned", "both"])
    ap.add_argument("--json", type=Path, default=None, help="also write all figures to this JSON file")
    # worker mode
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a)
        return

    mallocs = ["default", "tuned"] if a.malloc == "both" else [a.malloc]
    report = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for variant in a.variants.split(","):
            for malloc in mallocs:
                b, bmasks = _run(variant, "batched", malloc, a, tmp)
                n, nmasks = _run(variant, "naive", malloc, a, tmp)
                pos = _subset_positions(a) or list(range(len(bmasks)))
                assert len(pos) == len(nmasks), (len(pos), len(nmasks))
                equal = sum(np.array_equal(bmasks[p], nm) for p, nm in zip(pos, nmasks))
                ious = []
                for p, nm in zip(pos, nmasks):
                    x, y = np.unpackbits(bmasks[p]).astype(bool), np.unpackbits(nm).astype(bool)
                    u = np.count_nonzero(x | y)
                    ious.append(1.0 if u == 0 else np.count_nonzero(x & y) / u)
                naive_per_prompt = n["total_s"] / n["prompts"]
                naive_total = naive_per_prompt * b["prompts"]
                extrapolated = n["prompts"] < b["prompts"]
                row = {"variant": variant, "malloc": malloc, "images": a.images, "prompts": b["prompts"],
                       "batched_s": b["total_s"], "batched_encode_s": b["encode_s"],
                       "batched_encoder_calls": b["encoder_calls"], "batched_prompts_per_s": b["prompts"] / b["total_s"],
                       "naive_s": naive_total, "naive_measured_prompts": n["prompts"],
                       "naive_extrapolated": extrapolated, "naive_encode_s_per_call": n["encode_s"] / n["encoder_calls"],
                       "naive_encoder_calls": b["prompts"] if extrapolated else n["encoder_calls"],
                       "naive_prompts_per_s": 1.0 / naive_per_prompt, "speed_ratio": naive_total / b["total_s"],
                       "masks_compared": len(pos), "masks_identical": equal, "min_iou": min(ious),
                       "model_rss_mb": b["model_rss_mb"], "after_first_encode_rss_mb": b["encoded_rss_mb"],
                       "batched_peak_rss_mb": b["peak_rss_mb"],
                       "naive_peak_rss_mb": n["peak_rss_mb"], "chunk_size": a.chunk_size, "threads": b["threads"]}
                report.append(row)
                print(f"\n== {variant}  malloc={malloc}  {a.images} image(s), {b['prompts']} prompts "
                      f"(stable-sam-paper, {a.draws} draws), chunk {a.chunk_size}, {b['threads']} threads")
                print(f"  batched : {b['total_s']:8.1f} s  ({b['encode_s']:.1f} s in {b['encoder_calls']} encoder calls)"
                      f"  {row['batched_prompts_per_s']:.2f} prompts/s  peak RSS {b['peak_rss_mb']:.0f} MB "
                      f"(model loaded: {b['model_rss_mb']:.0f} MB; after 1st encode, before decoding: "
                      f"{b['encoded_rss_mb']:.0f} MB; decoding added {b['peak_rss_mb'] - b['encoded_rss_mb']:.0f} MB)")
                how = (f"extrapolated from {n['prompts']} timed prompts" if extrapolated else "all prompts timed")
                print(f"  naive   : {naive_total:8.1f} s  ({how}; {row['naive_encode_s_per_call']:.1f} s per set_image)"
                      f"  {row['naive_prompts_per_s']:.3f} prompts/s  peak RSS {n['peak_rss_mb']:.0f} MB")
                print(f"  speed ratio naive/batched: {row['speed_ratio']:.1f}x   masks identical: {equal}/{len(pos)} "
                      f"(min IoU {min(ious):.5f})")
    if a.json:
        a.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
