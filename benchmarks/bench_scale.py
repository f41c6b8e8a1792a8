"""Scale: naive loop vs encode-once vs warm embedding cache, local vs Ray — and a paper-suite estimate.

The ``stable-sam-paper`` suite (GT box, noisy box, 1 point, 3 points; 20 draws → 61 prompts per object)
on the first ``--images`` GrabCut images with a **random-init ViT-B SAM** (``sam-vit-b --option
random_init=true``: the speed does not depend on the weights) on the CPU. Every configuration is a
separate ``sambench run`` process (so malloc tuning, imports, the model build and the run-directory lock
are all in the timings, as for a user) and its whole process tree is sampled for RSS every 0.2 s:

* **naive**: the official ``SamPredictor``, ``set_image`` + ``predict`` per prompt (what a hand-written
  evaluation loop does) — timed on ``--naive-prompts`` prompts per image by ``bench_sam.py``'s worker and
  extrapolated to the suite (said so in the output);
* **encode-once**: ``sambench run --no-cache`` (one encoder call per image, every prompt decoded against it);
* **cold cache**: the same with an empty ``--cache`` (encode-once + writing the entries);
* **warm cache**: the same command again into a new run directory: 0 encoder calls;
* **fp16 cache**: a warm run from an fp16 cache (``--cache-dtype fp16``): mask IoU against fp32;
* **ray ×2**: ``--engine ray --workers 2 --no-cache`` on a local 2-CPU Ray instance (each actor one
  torch thread, as Ray sets ``OMP_NUM_THREADS`` to the actor's 1 CPU; the local run uses 2 threads).

It prints wall times, ratios, encoder calls and peak RSS, and an *estimate* of the Stable-SAM paper
suite's wall time on 1 and 8 GPUs (see ``estimate()`` for every assumption). Not a test. The figures in
results/benchmarks.md come from::

    python benchmarks/bench_scale.py --images 2 --json results/bench_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from sambench.execution.lifetime import descendants

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _tree(pid: int) -> set[int]:
    """``pid`` and its live descendants (Linux /proc)."""
    return {pid} | descendants(pid)


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def timed(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; wall time, CPU time of its process tree (every descendant that was waited for), peak
    RSS of its largest process and of its whole tree (sampled every 0.2 s)."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"one": 0.0, "tree": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss = [_rss_mb(p) for p in _tree(proc.pid)]
            peak["one"] = max(peak["one"], max(rss, default=0.0))
            peak["tree"] = max(peak["tree"], sum(rss))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    stop.set()
    th.join()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak["one"], "peak_tree_rss_mb": peak["tree"],
            "stdout": out, "stderr": err}


def _masks(run_dir: Path) -> dict:
    from sambench.metrics import decode_rle

    con = sqlite3.connect(str(run_dir / "results.sqlite"))
    rows = con.execute("SELECT image_id, object_id, protocol, level, draw, mask_rle FROM results "
                       "WHERE status='ok'").fetchall()
    con.close()
    return {tuple(r[:5]): decode_rle(json.loads(r[5])) for r in rows}


def _agreement(a: dict, b: dict) -> dict:
    """How far two runs' masks are apart, key by key."""
    ious, diff_px = [], []
    for k, x in a.items():
        y = b[k]
        u = np.count_nonzero(x | y)
        ious.append(1.0 if u == 0 else np.count_nonzero(x & y) / u)
        diff_px.append(int(np.count_nonzero(x ^ y)))
    return {"n": len(ious), "identical": int(sum(d == 0 for d in diff_px)), "min_iou": float(min(ious)),
            "mean_iou": float(np.mean(ious)), "max_diff_px": int(max(diff_px)),
            "median_diff_px": float(np.median(diff_px))}


def _rows(run_dir: Path) -> list:
    con = sqlite3.connect(str(run_dir / "results.sqlite"))
    rows = con.execute("SELECT model, image_id, object_id, protocol, level, draw, iou, score, mask_rle FROM results "
                       "ORDER BY 1, 2, 3, 4, 5, 6").fetchall()
    con.close()
    return rows


def scoring_cpu_s(h: int = 1536, w: int = 2048, n: int = 10) -> float:
    """CPU seconds to score one mask at an HQ-dataset size (IoU, boundary IoU, RLE), measured here."""
    from sambench.metrics import boundary_iou, encode_rle, iou
    from sambench.types import canonical_json

    yy, xx = np.mgrid[0:h, 0:w]
    gt = ((yy - h / 2) ** 2 / (h / 3) ** 2 + (xx - w / 2) ** 2 / (w / 3) ** 2) < 1
    pr = ((yy - h / 2 - 7) ** 2 / (h / 3.1) ** 2 + (xx - w / 2 + 5) ** 2 / (w / 3) ** 2) < 1
    t = time.process_time()
    for _ in range(n):
        iou(pr, gt), boundary_iou(pr, gt), canonical_json(encode_rle(pr))
    return (time.process_time() - t) / n


def estimate(enc_b_cpu_s: float, dec_cpu_s: float, score_s: float, cores: int = 2) -> dict:
    """Wall time of the Stable-SAM paper suite — an ESTIMATE, not a measurement.

    Work: 4 HQ datasets (DIS5K-VD 470, COIFT 280, HRSOD 400, ThinObject5K-TE 500 = 1650 images, one
    object each) × ``stable-sam-paper`` (61 prompts per object) × SAM, HQ-SAM, Stable-SAM with ViT-L.
    Encoder calls with the cache: 2 per image (Stable-SAM reuses its base SAM's entries; HQ-SAM's weights
    differ) = 3300. Decodes: 3 × 1650 × 61 = 301,950, each scored at full resolution on the CPU.

    Measured here (CPU seconds, robust to a shared machine): the ViT-B encoder and the decoder per prompt
    (``enc_b_cpu_s``, ``dec_cpu_s``; wall on ``cores`` idle cores = CPU / cores), and scoring one mask at
    2048×1536 (``score_s``). ViT-L ≈ 3.3× the ViT-B encoder's FLOPs at 1024²; the decoder is the same.
    Assumed, not measured (no GPU here): ViT-L encoder 0.10 s per image on one A100-class GPU in fp32
    (the SAM paper gives ~0.15 s for ViT-H) and 2 ms per decoded prompt with its upsampling; the scoring
    stays on the CPU (one core per GPU worker). 8 GPUs = 8 Ray actors, images spread evenly, + 60 s
    start-up (Ray, 8 model loads).
    """
    images, prompts = 1650, 61
    enc_calls, decodes = 2 * images, 3 * images * prompts
    cpu_h = (enc_calls * 3.3 * enc_b_cpu_s + decodes * (dec_cpu_s + score_s)) / cores / 3600
    gpu_enc, gpu_dec = 0.10, 0.002
    one = enc_calls * gpu_enc + decodes * (gpu_dec + score_s)
    naive = decodes * (gpu_enc + gpu_dec + score_s)  # one encoder pass per prompt
    return {"images": images, "prompts_per_image": prompts, "encoder_calls": enc_calls, "decodes": decodes,
            "cpu_h": cpu_h, "cores": cores, "gpu1_h": one / 3600, "gpu8_h": (one / 8 + 60) / 3600,
            "gpu1_naive_h": naive / 3600, "assumed_gpu_encoder_s": gpu_enc, "assumed_gpu_decode_s": gpu_dec,
            "measured_vit_b_encoder_cpu_s": enc_b_cpu_s, "measured_decode_cpu_s": dec_cpu_s,
            "measured_score_cpu_s_2048x1536": score_s}


def fp16_effect(model: str, n_images: int, draws: int = 20) -> dict:
    """In one process: encode each image once, decode the whole suite from the fp32 state and from the
    same state after an fp16 cache round trip, and compare the masks and scores."""
    from sambench.adapters import build_adapter
    from sambench.execution.cache import EmbeddingCache, image_hash
    from sambench.config import load_protocol_card, with_overrides
    from sambench.datasets import open_dataset
    from sambench.inputs.prompts import Protocol

    ad = build_adapter(model, device="cpu", options={"random_init": True})
    proto = Protocol(with_overrides(load_protocol_card("stable-sam-paper"), draws=draws))
    ds = open_dataset("grabcut-sample")
    a, b, sa, sb = {}, {}, [], []
    with tempfile.TemporaryDirectory() as td:
        cache = EmbeddingCache(td, storage="fp16")
        for image_id in ds.ids()[:n_images]:
            s = ds.load(image_id)
            prompts = [t for t in proto.tasks(s.dataset, s.image_id, s.objects) if t.prompt is not None]
            state = ad.encode(s.image, "sam")
            cache.put(ad, image_hash(s.image), "sam", state)
            half = cache.get(ad, image_hash(s.image), "sam")
            p32 = ad.predict(state, [t.prompt for t in prompts])
            p16 = ad.predict(half, [t.prompt for t in prompts])
            for i, t in enumerate(prompts):
                a[(image_id, t.level, t.draw)], b[(image_id, t.level, t.draw)] = p32.masks[i], p16.masks[i]
            sa += list(p32.scores)
            sb += list(p16.scores)
            emb = float((state.features - half.features).abs().max())
    out = _agreement(a, b)
    out["max_abs_score_diff"] = float(np.max(np.abs(np.array(sa) - np.array(sb))))
    out["max_abs_embedding_diff_last_image"] = emb
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--model", default="sam-vit-b", help="SAM card (sam-tiny for a quick smoke run)")
    ap.add_argument("--naive-prompts", type=int, default=2, help="prompts per image timed in the naive loop")
    ap.add_argument("--skip", default="", help="comma-separated configurations to skip (naive, ray, fp16)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--from-json", type=Path, default=None, help="recompute ratios and the estimate from a --json")
    ap.add_argument("--fp16-only", action="store_true", help="only the in-process fp16-storage mask comparison")
    a = ap.parse_args()
    if a.from_json:
        res = json.loads(a.from_json.read_text())
        report(res, res["images"])
        if a.json:
            a.json.write_text(json.dumps(res, indent=1) + "\n")
        return
    if a.fp16_only:
        r = fp16_effect(a.model, a.images)
        print(f"fp16 storage vs fp32, {a.model}, {a.images} image(s): {r}")
        if a.json:
            a.json.write_text(json.dumps(r, indent=1) + "\n")
        return
    skip = set(filter(None, a.skip.split(",")))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    base = [sys.executable, "-m", "sambench", "run", "-m", a.model, "--option", "random_init=true",
            "-p", "stable-sam-paper", "--limit", str(a.images), "--device", "cpu", "--no-report", "-q"]
    res: dict = {"images": a.images}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as td:
        tmp = Path(td)

        def go(name: str, *extra: str) -> dict:
            out = tmp / name
            r = timed([*base, *extra, "--out", str(out)], env)
            m = json.loads((out / "manifest.json").read_text())
            r["counters"] = m["counters"][a.model]
            r["run_s"] = m["invocations"][-1]["wall_time_s"]
            r["rows"] = sum(m["rows"].values())
            r.pop("stdout"), r.pop("stderr")
            res[name] = r
            c = r["counters"]
            print(f"{name:12s} wall {r['wall_s']:7.1f} s  CPU {r['cpu_s']:7.1f} s  encoder calls {c['encoder_calls']:3d}  "
                  f"decoded {c['decoded_prompts']:4d}  cache hits {c.get('cache_hits', '-')}  "
                  f"peak RSS {r['peak_rss_mb']:6.0f} MB (tree {r['peak_tree_rss_mb']:6.0f} MB)", flush=True)
            return r

        cache = tmp / "cache"
        once = go("encode-once", "--no-cache")
        go("cold-cache", "--cache", str(cache))
        go("warm-cache", "--cache", str(cache))
        assert _rows(tmp / "warm-cache") == _rows(tmp / "encode-once"), "warm cache changed the rows"
        if "fp16" not in skip:
            c16 = tmp / "cache16"
            go("fp16-cold", "--cache", str(c16), "--cache-dtype", "fp16")
            go("fp16-warm", "--cache", str(c16), "--cache-dtype", "fp16")
            res["fp16_masks"] = _agreement(_masks(tmp / "encode-once"), _masks(tmp / "fp16-warm"))
            sizes = [sum(p.stat().st_size for p in d.rglob("*.safetensors")) for d in (cache, c16)]
            res["fp16_masks"]["bytes_fp32"], res["fp16_masks"]["bytes_fp16"] = sizes
            print(f"fp16 cache: {res['fp16_masks']}", flush=True)
        if "ray" not in skip:
            go("ray-2", "--no-cache", "--engine", "ray", "--workers", "2")
            # Ray's 1-CPU actors compute with 1 torch thread, the local run with 2: CPU float reductions
            # differ in the last bits, so compare the masks instead of asserting equal rows
            res["ray_vs_local_masks"] = _agreement(_masks(tmp / "encode-once"), _masks(tmp / "ray-2"))
            print(f"ray vs local masks: {res['ray_vs_local_masks']}", flush=True)
        if "naive" not in skip:
            from sambench.config import load_model_card

            variant = load_model_card(a.model).options["variant"]
            npz = tmp / "naive.npz"
            cmd = [sys.executable, str(HERE / "bench_sam.py"), "--worker", "--variant", variant, "--path", "naive",
                   "--malloc", "tuned", "--images", str(a.images), "--draws", "20", "--chunk-size", "8",
                   "--naive-prompts", str(a.naive_prompts), "--out", str(npz)]
            from sambench.cli.perf import TUNED_MALLOC

            r = timed(cmd, {**env, **TUNED_MALLOC})
            n = json.loads(r["stdout"].strip().splitlines()[-1])
            prompts = once["counters"]["decoded_prompts"]
            per_prompt = n["total_s"] / n["prompts"]
            res["naive"] = {"measured_prompts": n["prompts"], "s_per_prompt": per_prompt,
                            "encode_s_per_call": n["encode_s"] / n["encoder_calls"], "build_s": n["build_s"],
                            "extrapolated_wall_s": n["build_s"] + per_prompt * prompts, "encoder_calls": prompts,
                            "peak_rss_mb": r["peak_rss_mb"]}
            print(f"naive        {res['naive']['extrapolated_wall_s']:7.1f} s  (extrapolated from {n['prompts']} "
                  f"timed prompts: {per_prompt:.1f} s per prompt; {prompts} encoder calls)  "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)

    report(res, a.images)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")


def report(res: dict, images: int) -> None:
    """Ratios, per-call costs and the estimate from the measured configurations."""
    once, cold, warm = res["encode-once"], res["cold-cache"], res["warm-cache"]
    # CPU seconds: the encoder is the only difference between encode-once and warm; the warm run's CPU
    # minus the model build (naive worker's build_s, ~1 thread) is decoding + scoring + start-up (an upper bound)
    enc = (once["cpu_s"] - warm["cpu_s"]) / images
    build = res.get("naive", {}).get("build_s", 0.0)
    dec = (warm["cpu_s"] - build) / max(warm["counters"]["decoded_prompts"], 1)
    res["per_call_cpu_s"] = {"encoder": enc, "decode_and_score_upper_bound": dec}
    res["estimate"] = estimate(enc, dec, scoring_cpu_s())
    print("\n== ratios (wall time of each `sambench run` process, start-up included)")
    if "naive" in res:
        print(f"  naive / encode-once        {res['naive']['extrapolated_wall_s'] / once['wall_s']:6.1f}x  (naive extrapolated)")
    print(f"  encode-once / warm cache   {once['wall_s'] / warm['wall_s']:6.2f}x wall, "
          f"{once['cpu_s'] / warm['cpu_s']:6.2f}x CPU")
    print(f"  cold cache / encode-once   {cold['wall_s'] / once['wall_s']:6.2f}x wall, "
          f"{cold['cpu_s'] / once['cpu_s']:6.2f}x CPU  (cost of writing the cache)")
    if "ray-2" in res:
        # (no CPU ratio: Ray's actors are reaped by its raylet, not by the driver, so RUSAGE_CHILDREN misses them)
        print(f"  local / ray x2             {once['wall_s'] / res['ray-2']['wall_s']:6.2f}x wall;  peak RSS of the "
              f"whole Ray tree {res['ray-2']['peak_tree_rss_mb']:.0f} MB vs {once['peak_rss_mb']:.0f} MB local")
    print(f"  per call (CPU seconds): ViT-B encoder {enc:.1f}, decode + score <= {dec:.2f} per prompt")
    e = res["estimate"]
    print(f"\n== ESTIMATE (not a measurement) of the Stable-SAM paper suite, ViT-L, SAM + HQ-SAM + Stable-SAM, "
          f"{e['images']} images, {e['decodes']} decodes, {e['encoder_calls']} encoder calls:")
    print(f"  {e['cores']} CPU cores {e['cpu_h']:.0f} h;  1 GPU {e['gpu1_h']:.1f} h;  8 GPUs {e['gpu8_h']:.2f} h;  "
          f"1 GPU naive loop {e['gpu1_naive_h']:.0f} h  (GPU costs assumed: encoder {e['assumed_gpu_encoder_s']} s, "
          f"decode {e['assumed_gpu_decode_s'] * 1000:.0f} ms; scoring measured "
          f"{e['measured_score_cpu_s_2048x1536'] * 1000:.0f} ms per 2048x1536 mask)")


if __name__ == "__main__":
    main()
