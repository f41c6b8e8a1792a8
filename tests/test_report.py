"""Tests of sambench.report: tables against hand-recomputed means, figures, HTML, leaderboard, CLI.

The store is synthetic: three models whose masks are deterministic transforms of rectangle/ellipse GT
masks (erosion, shift, dilation), real COCO RLE, IoU/BIoU from sambench.metrics. Expected values are
recomputed here from the stored rows with plain numpy, never with sambench.analysis.summary.
"""

from __future__ import annotations

import base64
import json
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from sambench.metrics import boundary_iou, encode_rle, iou
from sambench.store import Row, Store, write_manifest
from sambench.types import Prompt, Sample, Object

H, W = 48, 64
MODELS = ("alpha", "beta", "gamma")
# (protocol, level, level_value, draws, kind)
SETTINGS = [("noisy-box", "0", 0.0, 1, "noisy-box"), ("noisy-box", "0.5", 0.5, 3, "noisy-box"),
            ("noisy-box", "1", 1.0, 3, "noisy-box"), ("points", "1", 1.0, 3, "points"), ("points", "3", 3.0, 3, "points")]
DATASETS = {"dsA": {"img0": 2, "img/1": 2}, "dsB": {"im0": 3}}
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c"]


def gt_mask(dataset: str, image_id: str, k: int) -> np.ndarray:
    """Distinct rectangles/ellipses per object."""
    m = np.zeros((H, W), np.uint8)
    seed = sum(map(ord, dataset + image_id)) + 7 * k
    cx, cy = 14 + (seed * 5) % 36, 12 + (seed * 3) % 24
    if k % 2 == 0:
        cv2.rectangle(m, (cx - 9, cy - 7), (cx + 9, cy + 7), 1, -1)
    else:
        cv2.ellipse(m, (cx, cy), (10, 8), 0, 0, 360, 1, -1)
    return m.astype(bool)


def image_of(dataset: str, image_id: str) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([(xx * 4) % 256, (yy * 5) % 256, np.full_like(xx, 90)], axis=2).astype(np.uint8)
    for k in range(DATASETS[dataset][image_id]):
        img[gt_mask(dataset, image_id, k)] = (200, 60 + 40 * k, 40)
    return img


def predict(model: str, gt: np.ndarray, value, draw: int) -> np.ndarray:
    value = value or 0.0  # the gt-box level has no value
    m = gt.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    if model == "alpha":
        r = int(round(2 * value)) + draw % 2
        return cv2.erode(m, kernel, iterations=r).astype(bool) if r else gt.copy()
    if model == "beta":
        s = int(round(3 * value)) + draw
        return np.roll(gt, s, axis=1)
    r = int(round(2 * value)) + 1
    return cv2.dilate(m, kernel, iterations=r).astype(bool)


def prompt_for(gt: np.ndarray, kind: str, value: float, draw: int) -> Prompt:
    ys, xs = np.nonzero(gt)
    if kind == "points":
        idx = [(draw * 7 + 13 * i) % len(xs) for i in range(int(value))]
        return Prompt(points=tuple((float(xs[i]), float(ys[i])) for i in idx), labels=tuple([1] * len(idx)))
    box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    d = (value or 0.0) * (draw + 1)
    return Prompt(box=(max(0.0, box[0] - d), max(0.0, box[1] - d), box[2] + d, box[3]))


def build_store(run_dir, models=MODELS, failures=True, manifest=True, extras=True, settings=None) -> list[Row]:
    """Write the synthetic run; returns the rows written."""
    settings = SETTINGS if settings is None else settings
    rows = []
    for dataset, images in DATASETS.items():
        for image_id, n_obj in images.items():
            for model in models:
                for protocol, level, value, draws, kind in settings:
                    if failures and model == "beta" and dataset == "dsB" and protocol == "points":
                        if level == "1":  # one image-level failure row per model/protocol
                            rows.append(Row(model, dataset, image_id, "", protocol, "", -1, 1, status="failed",
                                            error="unreadable image"))
                        continue
                    for draw in range(draws):
                        for k in range(n_obj):
                            gt = gt_mask(dataset, image_id, k)
                            p = prompt_for(gt, kind, value, draw)
                            if failures and (model, dataset, image_id, k, protocol, level, draw) == \
                                    ("alpha", "dsA", "img0", 1, "points", "3", 2):
                                rows.append(Row(model, dataset, image_id, f"o{k}", protocol, level, draw, 1, value,
                                                p.to_json(), p.hash(), status="failed", error="decoder exploded"))
                                continue
                            pred = predict(model, gt, value, draw)
                            ex = None
                            if extras and model == "alpha":
                                ys, xs = np.nonzero(gt)
                                # the Stable-SAM adapter's introspection format: [x, y, grid x, grid y, weight]
                                ex = json.dumps({"stable_sam": {"alphas": [0.7, 0.3], "top": [
                                    [float(xs[0]), float(ys[0]), float(xs[0]) + 3, float(ys[0]) + 2, 0.2],
                                    [float(xs[-1]), float(ys[-1]), float(xs[-1]) - 4, float(ys[-1]), 0.05]]}})
                            rows.append(Row(model, dataset, image_id, f"o{k}", protocol, level, draw, 1, value,
                                            p.to_json(), p.hash(), iou(pred, gt), boundary_iou(pred, gt), 0.5,
                                            int(gt.sum()), int(pred.sum()), json.dumps(encode_rle(pred)), ex))
    with Store(run_dir) as st:
        st.write(rows)
    if manifest:
        write_manifest(run_dir, {
            "sambench_version": "0.1.0", "git_commit": "abc123def4567890", "created": "2025-01-01T00:00:00Z",
            "seed": 0, "libraries": {"numpy": np.__version__}, "counters": {"alpha": {"encoder_calls": 3}},
            "protocols": {p: {"version": 1, "prompt_hash": {"dsA": f"{p}-hash"}, "identity": {
                "name": p, "version": 1, "settings": [{"level": lv, "kind": kd} for pp, lv, _, _, kd in settings if pp == p]}}
                for p in dict.fromkeys(s[0] for s in settings)},
            "datasets": {"dsA": {"content_hash": "hashA", "n_images": 2, "spec": {"spec": "/nonexistent/dsA"}},
                         "dsB": {"content_hash": "hashB", "n_images": 1, "spec": {"spec": "/nonexistent/dsB"}}},
            "models": {m: {"model": m, "adapter_version": "1", "weights_sha256": None} for m in models},
        })
    return rows


# ------------------------------------------------------------------------------------------ expectations


def expected_means(rows: list[Row], metric: str = "iou") -> dict:
    """{(dataset, model, protocol, level): mean over objects of per-object mean over ok draws}, plus ALL."""
    per_obj: dict = {}
    for r in rows:
        if r.status != "ok":
            continue
        per_obj.setdefault((r.dataset, r.model, r.protocol, r.level, r.image_id, r.object_id), []).append(getattr(r, metric))
    groups: dict = {}
    for (d, m, p, l, _, _), v in per_obj.items():
        groups.setdefault((d, m, p, l), []).append(sum(v) / len(v))
    out = {k: sum(v) / len(v) for k, v in groups.items()}
    for (d, m, p, l) in list(out):
        dsets = [out[(dd, m, p, l)] for dd in DATASETS if (dd, m, p, l) in out]
        out[("ALL", m, p, l)] = sum(dsets) / len(dsets)
    return out


def expected_counts(rows: list[Row]) -> dict:
    n: dict = {}
    for r in rows:
        if r.status == "ok":
            n.setdefault((r.dataset, r.model, r.protocol, r.level), set()).add((r.image_id, r.object_id))
    return {k: len(v) for k, v in n.items()}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from sambench.report import write_report

    run = tmp_path_factory.mktemp("run")
    rows = build_store(run)
    calls = []

    def loader(dataset, image_id):
        calls.append((dataset, image_id))
        img = image_of(dataset, image_id)
        return Sample(dataset, image_id, img, [Object(f"o{k}", gt_mask(dataset, image_id, k))
                                               for k in range(DATASETS[dataset][image_id])])

    written = write_report([run], image_loader=loader, n_boot=200)
    return {"run": run, "rows": rows, "written": written, "out": run / "report", "loader_calls": calls}


def _pct(v: float) -> float:
    return round(100 * v, 1)


# ------------------------------------------------------------------------------------------ tables


@pytest.mark.slow
def test_every_artefact_is_written(report):
    names = set(report["written"])
    expected = {"summary.csv", "summary.md", "summary.tex", "paper.csv", "paper.md", "paper.tex", "comparison.png",
                "comparison.pdf", "degradation_noisy-box.png", "degradation_noisy-box.pdf", "degradation_points.png",
                "degradation_points.pdf", "grid.png", "grid.pdf", "leaderboard.json", "index.html"}
    assert expected <= names
    for name in expected:
        path = report["written"][name]
        assert path.parent == report["out"] and path.stat().st_size > 100, name
    for name in ("comparison.pdf", "grid.pdf"):
        assert report["written"][name].read_bytes()[:5] == b"%PDF-"


def test_summary_csv_matches_rows(report):
    import pandas as pd

    table = pd.read_csv(report["written"]["summary.csv"], keep_default_na=False, dtype={"level": str})
    miou, mbiou = expected_means(report["rows"], "iou"), expected_means(report["rows"], "biou")
    counts = expected_counts(report["rows"])
    # every (dataset, model, protocol, level) with rows, plus beta/dsB/points whose only image failed:
    # it keeps a row (n = 0) at each points level the other models have, so its failure stays visible
    blocked = table[(table.dataset == "dsB") & (table.model == "beta") & (table.protocol == "points")]
    assert len(table) == len(miou) + len(blocked) and len(blocked) >= 1
    assert (blocked["n"] == 0).all() and (blocked["failed"] == 1).all() and (blocked["miou_pct"] == "").all()
    rest = table.drop(index=blocked.index)
    rest = rest.astype({c: float for c in rest.columns if c.endswith("_pct")})
    for _, r in rest.iterrows():
        key = (r["dataset"], r["model"], r["protocol"], str(r["level"]))
        assert r["miou_pct"] == pytest.approx(_pct(miou[key]), abs=1e-9), key
        assert r["mbiou_pct"] == pytest.approx(_pct(mbiou[key]), abs=1e-9), key
        assert r["miou_lo_pct"] <= r["miou_pct"] + 0.05 and r["miou_pct"] <= r["miou_hi_pct"] + 0.05
        if r["dataset"] != "ALL":
            assert r["n"] == counts[key]
    # the failed draw and the image-level failure are counted where they belong
    f = table.set_index(["dataset", "model", "protocol", "level"])["failed"]
    assert f[("dsA", "alpha", "points", "3")] == 1
    assert f[("dsA", "alpha", "points", "1")] == 0
    assert f[("dsB", "beta", "points", "1")] == 1  # its only image failed: counted, n = 0


def test_bold_is_the_best_model_per_group(report):
    import pandas as pd

    table = pd.read_csv(report["written"]["summary.csv"], keep_default_na=False, dtype={"level": str})
    miou = expected_means(report["rows"], "iou")
    md = report["written"]["summary.md"].read_text()
    tex = report["written"]["summary.tex"].read_text()
    groups: dict = {}
    for (d, m, p, l), v in miou.items():
        groups.setdefault((d, p, l), {})[m] = _pct(v)
    for (d, p, l), by_model in groups.items():
        best = max(by_model.values())
        for m, v in by_model.items():
            row = table[(table.dataset == d) & (table.protocol == p) & (table.level.astype(str) == l) & (table.model == m)]
            flagged = "miou" in row["best"].iloc[0].split(";")
            assert flagged == (v == best and len(by_model) > 1), (d, p, l, m)
    # one concrete line, hand-checked: dsA / noisy-box 0 → alpha (identical mask, IoU 100) is bold
    line = next(s for s in md.splitlines() if s.startswith("| dsA | noisy-box | 0 ") and "| alpha |" in s)
    assert "**100.0**" in line
    assert re.search(r"dsA & noisy-box & 0.*alpha.*\\textbf\{100.0\}", tex)
    assert "\\toprule" in tex and "\\bottomrule" in tex and tex.count("\\begin{tabular}") == 1


def test_paper_table(report):
    import pandas as pd

    paper = pd.read_csv(report["written"]["paper.csv"], keep_default_na=False).set_index("model")
    miou = expected_means(report["rows"], "iou")
    cols = [f"{p}/{l}" for p, l, *_ in SETTINGS]
    assert list(paper.columns[:len(cols)]) == cols
    for m in MODELS:
        for p, l, *_ in SETTINGS:
            assert paper.loc[m, f"{p}/{l}"] == pytest.approx(_pct(miou[("ALL", m, p, l)]), abs=1e-9)
    # beta's points average covers only dsA: flagged
    assert paper.loc["beta", "partial_settings"] == "points/1;points/3"
    md = report["written"]["paper.md"].read_text()
    assert "\u2020" in md and "fewer datasets" in md
    tex = report["written"]["paper.tex"].read_text()
    assert "\\multicolumn{3}{c}{noisy-box}" in tex and "\\cmidrule" in tex
    # best per column bold: for noisy-box/0, alpha is exact (100.0)
    alpha_line = next(s for s in md.splitlines() if s.startswith("| alpha |"))
    assert alpha_line.split("|")[2].strip() == "**100.0**"


# ------------------------------------------------------------------------------------------ figures


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _color_pixels(img: np.ndarray, hex_color: str, tol: int = 6) -> int:
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img.astype(int) - rgb).max(axis=2) <= tol).sum())


def test_figures_are_nontrivial_pngs(report):
    for name in ("comparison.png", "degradation_noisy-box.png", "degradation_points.png", "grid.png"):
        img = _png(report["written"][name])
        assert img.shape[0] > 250 and img.shape[1] > 500, name
        packed = (img[..., 0].astype(np.int64) << 16) | (img[..., 1].astype(np.int64) << 8) | img[..., 2]
        assert len(np.unique(packed)) > 50, name  # not a blank or single-colour image
    # every model's colour is visibly used in the bars and in the curves
    comp = _png(report["written"]["comparison.png"])
    for c in TAB10:
        assert _color_pixels(comp, c) > 500
    deg = _png(report["written"]["degradation_points.png"])
    for c in TAB10:
        assert _color_pixels(deg, c) > 100


def test_comparison_figure_bars_and_reference(report):
    from matplotlib.container import BarContainer

    from sambench.report import figures as F
    from sambench.analysis.settings import settings_info
    from sambench.report.common import model_colors
    from sambench.store import load_runs
    from sambench.analysis.summary import summarize

    df, mans = load_runs([report["run"]])
    summary = summarize(df, n_boot=50)
    settings = settings_info(df, mans)
    ref, why = F.find_reference(summary, settings, "beta")
    assert why == "" and ref.setting.level == "0" and ref.model == "beta"
    fig = F.comparison_figure(summary, settings, model_colors(MODELS), ref, "x")
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [c.get_label() for c in bars] == list(MODELS)
    miou = expected_means(report["rows"])
    # 4 non-GT settings per model, heights = headline mIoU
    non_gt = [(p, l) for p, l, v, *_ in SETTINGS if not (p == "noisy-box" and v == 0)]
    for c, m in zip(bars, MODELS):
        assert [round(b.get_height(), 6) for b in c.patches] == [round(100 * miou[("ALL", m, p, l)], 6) for p, l in non_gt]
    line = [l for l in ax.get_lines() if l.get_gid() == "reference"][0]
    assert line.get_linestyle() == "--"
    assert line.get_ydata()[0] == pytest.approx(100 * miou[("ALL", "beta", "noisy-box", "0")])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["noisy box s=0.5", "noisy box s=1", "1 point", "3 points"]
    # an unknown reference model: no line and a reason
    ref, why = F.find_reference(summary, settings, "nobody")
    assert ref is None and "nobody" in why


def test_degradation_lines_and_bands(report):
    from matplotlib.collections import PolyCollection

    from sambench.report import figures as F
    from sambench.analysis.settings import settings_info
    from sambench.report.common import model_colors
    from sambench.store import load_runs
    from sambench.analysis.summary import summarize

    df, mans = load_runs([report["run"]], with_masks=False)
    summary = summarize(df, n_boot=50)
    fig = F.degradation_figure(summary, "noisy-box", settings_info(df, mans), model_colors(MODELS), "x")
    assert len(fig.axes) == 2
    mbiou = expected_means(report["rows"], "biou")
    ax = fig.axes[1]
    lines = [l for l in ax.get_lines() if (l.get_gid() or "").startswith("line:")]
    assert [l.get_label() for l in lines] == list(MODELS)
    for l, m in zip(lines, MODELS):
        assert list(l.get_xdata()) == [0.0, 0.5, 1.0]
        assert np.allclose(l.get_ydata(), [100 * mbiou[("ALL", m, "noisy-box", lv)] for lv in ("0", "0.5", "1")])
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3


def test_grid_shows_prompt_masks_and_sampling(report):
    from sambench.report import figures as F
    from sambench.report.grid import Images, build_grid_items, pick_grid_keys
    from sambench.report.common import model_colors
    from sambench.store import load_runs

    df, mans = load_runs([report["run"]])
    keys = pick_grid_keys(df, n=3)
    assert len(keys) == 3 and len({(k["dataset"], k["image_id"], k["object_id"]) for k in keys}) == 3
    # largest spread first: recompute from the rows
    by_key: dict = {}
    for r in report["rows"]:
        if r.status == "ok":
            by_key.setdefault((r.dataset, r.image_id, r.object_id, r.protocol, r.level, r.draw), {})[r.model] = r.iou
    spreads = sorted((max(v.values()) - min(v.values()) for v in by_key.values() if len(v) == 3), reverse=True)
    first = keys[0]
    got = by_key[(first["dataset"], first["image_id"], first["object_id"], first["protocol"], first["level"], first["draw"])]
    assert max(got.values()) - min(got.values()) == pytest.approx(spreads[0])
    # a named object (image id with a slash) and its rendering with photo, GT, sampling circles
    keys = pick_grid_keys(df, ["dsA/img/1/o0@noisy-box:1:2"])
    assert keys == [{"dataset": "dsA", "image_id": "img/1", "object_id": "o0", "protocol": "noisy-box", "level": "1", "draw": 2,
                     "corruption": "none", "severity": 0}]
    images = Images(mans, lambda d, i: image_of(d, i))  # array only: GT from the (unopenable) dataset → note
    items = build_grid_items(df, keys, images)
    it = items[0]
    assert it.image is not None and it.gt is None and set(it.masks) == set(MODELS)
    assert np.array_equal(it.masks["beta"], predict("beta", gt_mask("dsA", "img/1", 0), 1.0, 2))
    assert any("dsA" in n and "could not be reopened" in n for n in images.notes)
    fig = F.grid_figure(items, list(MODELS), model_colors(MODELS))
    axes = fig.axes
    assert len(axes) == 5
    assert any(c.get_gid() == "prompt-box" for c in axes[0].patches)
    samp = {c.get_gid(): c for c in axes[2].collections}  # alpha records Stable-SAM sampling locations
    g = gt_mask("dsA", "img/1", 0)
    ys, xs = np.nonzero(g)
    assert np.array_equal(samp["sampling"].get_offsets(), [[xs[0], ys[0]], [xs[-1], ys[-1]]])
    assert np.allclose(samp["sampling-offsets"].get_segments()[0], [[xs[0] + 3, ys[0] + 2], [xs[0], ys[0]]])
    assert not any(c.get_gid() == "sampling" for c in axes[3].collections)
    assert "GT unavailable" in [t.get_text() for t in axes[1].texts]
    with pytest.raises(Exception, match="no successful result"):
        pick_grid_keys(df, ["dsA/img0/o9"])


def test_grid_points_prompt_markers(report):
    from sambench.report import figures as F
    from sambench.report.common import model_colors

    gt = gt_mask("dsA", "img0", 0)
    extras = {"sampling": {"xy": [[10, 12], [30, 20], [40, 5]], "weight": [0.5, 1.0, 0.25]}}
    item = F.GridItem("dsA", "img0", "o0", "points", "3", 0, {"points": [[20, 20], [5, 5]], "labels": [1, 0]},
                      (H, W), masks={"alpha": gt}, ious={"alpha": 1.0}, extras={"alpha": extras}, image=None, gt=gt)
    fig = F.grid_figure([item], ["alpha"], model_colors(["alpha"]))
    cols = {c.get_gid(): c for c in fig.axes[0].collections}
    assert np.array_equal(cols["prompt-pos"].get_offsets(), [[20, 20]])
    assert np.array_equal(cols["prompt-neg"].get_offsets(), [[5, 5]])
    assert "no photo" in [t.get_text() for t in fig.axes[0].texts]
    samp = {c.get_gid(): c for c in fig.axes[2].collections}
    assert np.array_equal(samp["sampling"].get_offsets(), [[10, 12], [30, 20], [40, 5]])
    sizes = samp["sampling"].get_sizes()
    assert sizes[1] > sizes[0] > sizes[2]  # area grows with the weight
    assert "sampling-offsets" not in samp  # no grid cells in this format
    assert F.sampling_points({"other": 1}) is None and F.sampling_points(None) is None


# ------------------------------------------------------------------------------------------ html, leaderboard


def test_html_embeds_every_figure(report):
    page = report["written"]["index.html"].read_text()
    assert page.startswith("<!DOCTYPE html>")
    for stem in ("comparison", "degradation_noisy-box", "degradation_points", "grid"):
        m = re.search(rf'<figure id="fig-{re.escape(stem)}"[^>]*><img alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
        assert m, stem
        assert base64.b64decode(m.group(1)) == report["written"][f"{stem}.png"].read_bytes()
        assert f'href="{stem}.pdf"' in page
    assert "<table" in page and "<b>100.0</b>" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert "Failures" in page and "decoder exploded" in page
    assert "beta w/ GT box" not in page  # reference chosen automatically: alpha (first by name)
    assert "alpha with GT boxes" in page and "chosen automatically" in page
    assert report["loader_calls"]  # photos came from the loader


def test_leaderboard(report):
    board = json.loads(report["written"]["leaderboard.json"].read_text())
    miou = expected_means(report["rows"])
    assert board["results"]["gamma"]["dsB"]["noisy-box"]["0.5"]["miou"] == pytest.approx(miou[("dsB", "gamma", "noisy-box", "0.5")])
    assert board["results"]["beta"]["ALL"]["points"]["3"]["miou"] == pytest.approx(miou[("ALL", "beta", "points", "3")])
    cell = board["results"]["alpha"]["dsA"]["points"]["3"]
    assert cell["failed"] == 1 and cell["n"] == 4 and cell["miou_ci"][0] <= cell["miou"] <= cell["miou_ci"][1]
    assert board["versions"] == {"noisy-box": 1, "points": 1}
    assert board["datasets"]["dsA"]["content_hash"] == "hashA"
    assert board["models"]["beta"]["model"] == "beta"
    assert board["runs"][0]["git_commit"] == "abc123def4567890" and board["run_dirs"] == [str(report["run"])]
    assert board["rows"] == {"ok": sum(r.status == "ok" for r in report["rows"]),
                             "failed": sum(r.status == "failed" for r in report["rows"])}
    assert board["conflicts"] == []
    # format 2: the format-1 keys above plus the ranked board of sambench.leaderboard (tests/test_leaderboard.py)
    assert board["format"] == 2
    ranked = board["board"]
    assert ranked["rank_by"] == "degraded_miou@noisy-box"
    assert sorted(e["model"] for e in ranked["entries"]) == list(MODELS)
    assert [e["rank"] for e in ranked["entries"]] == sorted(e["rank"] for e in ranked["entries"])


def test_model_colors_stable():
    from sambench.report import model_colors

    a = model_colors(["gamma", "alpha", "beta", "alpha"])
    assert a == {"alpha": TAB10[0], "beta": TAB10[1], "gamma": TAB10[2]}
    assert model_colors(["beta", "gamma", "alpha"]) == a


# ------------------------------------------------------------------------------------------ degenerate inputs, CLI


def test_report_without_manifest_or_gt_box(tmp_path):
    """No manifest, no loader, one dataset, one model, no GT-box level: kinds from prompts, notes in HTML."""
    from sambench.report import write_report

    rows = build_store(tmp_path / "run", models=("gamma",), failures=False, manifest=False, extras=False,
                       settings=[s for s in SETTINGS if s[1] != "0"])
    written = write_report([tmp_path / "run"], tmp_path / "out", formats=("png",), n_boot=50)
    assert "comparison.pdf" not in written and "comparison.png" in written
    page = written["index.html"].read_text()
    assert "no reference line" in page
    assert "could not be reopened" in page and "no dataset spec" in page
    import pandas as pd

    table = pd.read_csv(written["summary.csv"], keep_default_na=False)
    assert set(table["dataset"]) == {"dsA", "dsB", "ALL"}
    assert table["best"].eq("").all()  # a single model: nothing is bold
    assert len(rows) > 0


@pytest.mark.slow  # the report twice through the CLI: ~4 s on 2 cores
def test_cli_report(tmp_path):
    from click.testing import CliRunner

    from sambench.cli.report import report_cmd

    build_store(tmp_path / "run", models=("alpha", "beta"), failures=False, extras=False)
    res = CliRunner().invoke(report_cmd, [str(tmp_path / "run"), "--out", str(tmp_path / "rep"), "--format", "png",
                                          "--reference-model", "beta", "--grid-rows", "1"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "index.html").exists() and not (tmp_path / "rep" / "grid.pdf").exists()
    assert "beta with GT boxes" in (tmp_path / "rep" / "index.html").read_text()
    res = CliRunner().invoke(report_cmd, [str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not a sambench run directory" in res.output
    res = CliRunner().invoke(report_cmd, [str(tmp_path / "run"), "--out", str(tmp_path / "r2"), "--object", "bad"])
    assert res.exit_code == 2 and "dataset/image/object" in res.output


def test_mixed_protocol_like_stable_sam_paper(tmp_path):
    """gt-box / noisy-box / 1-point / 3-points in one protocol: bars for the three degraded settings, the
    dashed line from gt-box, and degradation rows per kind (gt-box joins the box row at s = 0)."""
    from matplotlib.container import BarContainer

    from sambench.report import figures as F
    from sambench.analysis.settings import settings_info
    from sambench.report.common import model_colors
    from sambench.store import load_runs
    from sambench.analysis.summary import summarize

    paper = [("ssp", "gt-box", None, 1, "gt-box"), ("ssp", "noisy-box", 0.4, 2, "noisy-box"),
             ("ssp", "1-point", 1.0, 2, "points"), ("ssp", "3-points", 3.0, 2, "points")]
    rows = build_store(tmp_path / "run", models=("alpha", "beta"), failures=False, extras=False, settings=paper)
    df, mans = load_runs([tmp_path / "run"], with_masks=False)
    summary = summarize(df, n_boot=50)
    settings = settings_info(df, mans)
    assert [s.level for s in settings] == ["gt-box", "noisy-box", "1-point", "3-points"]
    ref, _ = F.find_reference(summary, settings, None)
    assert (ref.model, ref.setting.level, ref.automatic) == ("alpha", "gt-box", True)
    fig = F.comparison_figure(summary, settings, model_colors(["alpha", "beta"]), ref, "x")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["noisy-box", "1-point", "3-points"]
    assert [len(c.patches) for c in ax.containers if isinstance(c, BarContainer)] == [3, 3]
    miou = expected_means(rows)
    line = [l for l in ax.get_lines() if l.get_gid() == "reference"][0]
    assert line.get_ydata()[0] == pytest.approx(100 * miou[("ALL", "alpha", "ssp", "gt-box")])
    rows_ = F.degradation_rows(settings)
    assert [(kind, [x for x, _ in pts]) for kind, pts in rows_] == [("noisy-box", [0.0, 0.4]), ("points", [1.0, 3.0])]
    assert len(F.degradation_figure(summary, "ssp", settings, model_colors(["alpha", "beta"]), "x").axes) == 4


@pytest.mark.slow
def test_each_per_object_stability_is_computed_once_per_report(tmp_path, monkeypatch):
    """The summary and leaderboard.json's ranked board read one per-object table: every object's stability
    is computed once (it was twice: once per table), and the board still carries it."""
    from sambench.analysis import summary
    from sambench.report import write_report

    rows = build_store(tmp_path / "run", failures=False)
    calls = []
    real = summary.stability
    monkeypatch.setattr(summary, "stability", lambda rles: calls.append(len(rles)) or real(rles))
    write_report([tmp_path / "run"], formats=("png",), n_boot=50)
    objects = {(r.model, r.dataset, r.protocol, r.level, r.image_id, r.object_id) for r in rows if r.status == "ok"}
    assert len(calls) == len(objects) and sum(calls) == sum(r.status == "ok" for r in rows)
    board = json.loads((tmp_path / "run" / "report" / "leaderboard.json").read_text())["board"]
    assert any(c["score"] == "stability" for c in board["columns"])
