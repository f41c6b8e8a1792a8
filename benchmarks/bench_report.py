"""``sambench report`` seconds against stored rows: synthetic stores of 10⁴, 10⁵, 10⁶ rows and a COCO128-sized one.

Not a test. Each store is written directly through :class:`sambench.store.Store` (no model runs), shaped like
``sambench run -m box-fill -p noisy-box`` on COCO128 (the card's defaults: 11 noise scales 0, 0.1, …, 1,
20 draws, one at scale 0, so 201 rows per object):

* images of COCO's usual sizes (640×480, 480×640, 640×427, 500×375), about 7.4 objects each (COCO128:
  929 objects on 126 images);
* each object a GT box of COCO-like size; each row's prompt the noisy-box rule of ``protocols/noisy-box.yaml``
  (u ~ U[-1, 1) per coordinate, cx += u·(w/2)·s, …) from a keyed generator; the mask is box-fill's answer —
  the prompt box filled — stored as the same COCO RLE string a run stores (``pycocotools`` ``frPyObjects`` of the box);
  IoU against the GT box, a boundary IoU, areas, the prompt JSON and its hash, as a run writes them;
* with the rows, in the same :meth:`~sambench.store.Store.write`, each object's stability as a run stores it
  (:func:`sambench.execution.stability.object_stability` of the rows written, the ``objects`` table).

``--coco128`` adds the 186,729-row case of issue 19 (929 objects × 201 rows). It is a SYNTHETIC
equivalent: the test fixture holds 4 of COCO128's images (14 objects), too few for that many rows, and
the full COCO128 is not shipped. The report runs in a fresh process per store (``sambench report --format
png``), timed as wall and CPU seconds; it prints seconds per 10⁵ rows, which stays flat when the report
grows linearly. ::

    python benchmarks/bench_report.py                          # 10^4, 10^5 rows and the COCO128 case
    python benchmarks/bench_report.py --rows 10000,100000,1000000 --coco128

Measured on 2 shared CPU cores (report CPU seconds, process start included; b4fb5df → issue 19):

    rows          before    after     after, s per 10^5 rows
    10,050         3.4       2.7       27 (start-up: imports ~1.2 s)
    100,098       18.6       9.2       9.2
    186,729       31.0      16.4       8.8   (per-object stability 11.6 s of it: metrics.stability, once)
    999,975         -       89.4       8.9

Stability stored at write time (the ``objects`` table), on the same 2 cores, not idle (another job's
load average 0.6–1.0 throughout): report wall / CPU seconds of the same stores, read by the code before
(which ignores the table and computes every object's stability) and after:

    rows          before (wall / CPU)   stored (wall / CPU)   stored, CPU s per 10^5 rows
    10,050         2.7 /  3.0             2.0 /  2.3            23 (start-up)
    100,098        9.2 /  9.5             3.6 /  4.0            4.0
    186,729       17.1 / 17.1             5.9 /  6.2            3.3
    999,975       82.8 / 83.0            28.5 / 28.7            2.9

At 186,729 rows the report's per-object table takes 0.2 s instead of ~11.5 s; what remains is start-up
(~1.4 s of imports), reading the rows (~1.4 s), the ranked board and the figures. Building the stores
now includes computing stability (~1.2 ms per object and level, as a run's workers do).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from sambench.execution.stability import object_stability
from sambench.store import Row, Store, write_manifest
from sambench.types import keyed_rng, stable_hash

ROOT = Path(__file__).resolve().parent.parent
LEVELS = [round(0.1 * i, 1) for i in range(11)]
DRAWS = 20
ROWS_PER_OBJECT = 1 + (len(LEVELS) - 1) * DRAWS  # 201
SIZES = [(480, 640), (640, 480), (427, 640), (375, 500)]  # (height, width)
OBJECTS_PER_IMAGE = 929 / 126
COCO128_OBJECTS = 929
DATASET, MODEL, PROTOCOL = "coco128-synthetic", "box-fill", "noisy-box"


def _level_name(s: float) -> str:
    return f"{s:g}"


def _noisy(box: np.ndarray, s: float, u: np.ndarray, h: int, w: int) -> np.ndarray:
    """noisy-box: (n, 4) xyxy boxes from one GT box, noise scale ``s`` and u ~ U[-1, 1) of shape (n, 4)."""
    x0, y0, x1, y1 = box
    bw, bh, cx, cy = x1 - x0, y1 - y0, (x0 + x1) / 2, (y0 + y1) / 2
    cx = cx + u[:, 0] * bw / 2 * s
    cy = cy + u[:, 1] * bh / 2 * s
    nw = np.maximum(bw + u[:, 2] * bw * s, 1.0)
    nh = np.maximum(bh + u[:, 3] * bh * s, 1.0)
    out = np.stack([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], axis=1)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w - 1)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h - 1)
    out[:, 2] = np.maximum(out[:, 2], out[:, 0] + 1)
    out[:, 3] = np.maximum(out[:, 3], out[:, 1] + 1)
    return np.round(out, 4)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[:, 2], b[2]) - np.maximum(a[:, 0], b[0]), 0, None)
    iy = np.clip(np.minimum(a[:, 3], b[3]) - np.maximum(a[:, 1], b[1]), 0, None)
    inter = ix * iy
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
    return inter / (area(a) + area(b) - inter)


def _object_rows(image_id: str, object_id: str, h: int, w: int, gt: np.ndarray) -> list[Row]:
    """The 201 rows box-fill stores for one object under noisy-box."""
    rows = []
    gt_area = int(round((gt[2] - gt[0]) * (gt[3] - gt[1])))
    for s in LEVELS:
        n = 1 if s == 0 else DRAWS
        u = keyed_rng("bench-report", image_id, object_id, s).uniform(-1.0, 1.0, size=(n, 4))
        boxes = _noisy(gt, s, u, h, w)
        xywh = np.stack([np.floor(boxes[:, 0]), np.floor(boxes[:, 1]), np.ceil(boxes[:, 2]) - np.floor(boxes[:, 0]),
                         np.ceil(boxes[:, 3]) - np.floor(boxes[:, 1])], axis=1)
        rles = mask_utils.frPyObjects(xywh, h, w)  # boxes → RLEs (pycocotools frBbox)
        areas = mask_utils.area(rles)
        ious = _box_iou(boxes, gt)
        for d in range(n):
            prompt = json.dumps({"box": [float(v) for v in boxes[d]]}, separators=(",", ":"))
            rle = json.dumps({"counts": rles[d]["counts"].decode("ascii"), "size": [h, w]}, separators=(",", ":"))
            rows.append(Row(model=MODEL, dataset=DATASET, image_id=image_id, object_id=object_id, protocol=PROTOCOL,
                            level=_level_name(s), draw=d, protocol_version=1, level_value=float(s), prompt=prompt,
                            prompt_hash=stable_hash(prompt), iou=float(ious[d]), biou=float(0.3 * ious[d]),
                            gt_area=gt_area, pred_area=int(areas[d]), mask_rle=rle))
    return rows


def build_store(run_dir: Path, n_objects: int) -> int:
    """Write a synthetic box-fill × noisy-box store of ``n_objects`` objects (201 rows each); returns rows."""
    rng = np.random.default_rng(0)
    total, image, left = 0, 0, 0
    with Store(run_dir) as store:
        batch: list[Row] = []
        for obj in range(n_objects):
            if left == 0:
                image += 1
                h, w = SIZES[image % len(SIZES)]
                left = max(1, int(rng.poisson(OBJECTS_PER_IMAGE)))
            left -= 1
            bw, bh = rng.uniform(0.05, 0.7) * w, rng.uniform(0.05, 0.7) * h
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            batch += _object_rows(f"{image:012d}", str(obj), h, w, np.array([x0, y0, x0 + bw, y0 + bh]))
            if len(batch) >= 50_000:
                total += store.write(batch, objects=object_stability(batch))
                batch = []
        total += store.write(batch, objects=object_stability(batch))
    settings = [{"kind": "noisy-box", "level": _level_name(s), "scale": s} for s in LEVELS]
    write_manifest(run_dir, {
        "seed": 0, "sambench_version": "bench", "datasets": {DATASET: {"content_hash": "0" * 64}},
        "protocols": {PROTOCOL: {"version": 1, "identity": {"name": PROTOCOL, "version": 1, "draws": DRAWS, "seed": 0,
                                                             "mask_selection": "single", "preprocessing": "sam",
                                                             "settings": settings}}},
        "models": {MODEL: {"model": MODEL, "adapter": MODEL}}})
    return total


def time_report(run_dir: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``sambench report RUN --format png`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sambench", "report", str(run_dir), "--out", str(run_dir / "report"),
                    "--format", "png"], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="10000,100000", help="comma-separated row counts (rounded to whole objects)")
    ap.add_argument("--coco128", action=argparse.BooleanOptionalAction, default=True,
                    help="also the 186,729-row case (929 objects × 201 rows; synthetic)")
    ap.add_argument("--keep", type=Path, default=None, help="build the stores here and keep them")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args(argv)
    cases = [(f"{int(r):,} rows", max(1, round(int(r) / ROWS_PER_OBJECT))) for r in args.rows.split(",") if r]
    if args.coco128:
        cases.append(("COCO128 box-fill x noisy-box (synthetic)", COCO128_OBJECTS))
    cases.sort(key=lambda c: c[1])
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        print(f"{'case':<42} {'rows':>9} {'build s':>8} {'report wall s':>14} {'report CPU s':>13} {'CPU s per 1e5 rows':>19}")
        for name, n_objects in cases:
            run_dir = base / f"bench-report-{n_objects}"
            t0 = time.perf_counter()
            rows = build_store(run_dir, n_objects) if not (run_dir / "manifest.json").exists() else \
                n_objects * ROWS_PER_OBJECT
            build = time.perf_counter() - t0
            wall, cpu = time_report(run_dir)
            out.append({"case": name, "rows": rows, "objects": n_objects, "report_wall_s": wall, "report_cpu_s": cpu})
            print(f"{name:<42} {rows:>9,} {build:>8.1f} {wall:>14.2f} {cpu:>13.2f} {1e5 * cpu / rows:>19.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
