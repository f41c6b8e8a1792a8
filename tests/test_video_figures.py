"""The report's video figures plot the stored numbers: J&F against the level with the GT-mask ceiling, J over
time and the strip of frames, checked on what the matplotlib Axes hold against values computed here straight
from the store (SQLite) and the reopened sample, and the report of a video run skipping the image figures."""

import json
import sqlite3
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from pycocotools import mask as mask_utils
from scipy.ndimage import binary_dilation, binary_erosion

import sambench
from sambench.analysis.settings import settings_info
from sambench.analysis.video import j_over_time, video_summary
from sambench.datasets.video import open_video_dataset
from sambench.report.common import model_colors
from sambench.report.video import jf_figure, strip_figure, strip_rows, time_figure, time_series
from sambench.store import load_runs, load_tracks

SAMPLE = "grabcut-video-sample"
MODELS = ("flow-warp", "mask-hold")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Both baselines on 2 videos: the GT mask (the ceiling) in one run, noisy boxes at 0, 0.5 and 1 with 2 draws in
    another; read together, as a report of both runs reads them."""
    root = tmp_path_factory.mktemp("vfig")
    sambench.run(list(MODELS), "video-mask", SAMPLE, out=root / "mask", limit=2)
    sambench.run(list(MODELS), "video-noisy-box", SAMPLE, out=root / "box", levels=["0", "0.5", "1"], draws=2, limit=2)
    dirs = [root / "mask", root / "box"]
    rows, manifests = load_runs(dirs, with_masks=True)
    return SimpleNamespace(dirs=dirs, rows=rows, manifests=manifests, tracks=load_tracks(dirs, with_masks=True),
                           colors=model_colors(rows["model"].unique()))


def _stored(run_dirs, sql):
    """The rows of ``sql`` over every run's store, concatenated."""
    out = []
    for d in run_dirs:
        con = sqlite3.connect(str(d / "results.sqlite"))
        try:
            out += con.execute(sql).fetchall()
        finally:
            con.close()
    return out


def _expected_jf(run_dirs) -> dict:
    """{(model, protocol, level): percent J&F}: per track the mean over its draws, then the mean over tracks."""
    draws = defaultdict(list)
    for model, protocol, level, video, obj, jf in _stored(
            run_dirs, "SELECT model, protocol, level, image_id, object_id, jf FROM tracks WHERE severity = 0"):
        draws[(model, protocol, level, video, obj)].append(jf)
    cells = defaultdict(list)
    for (model, protocol, level, _, _), v in draws.items():
        cells[(model, protocol, level)].append(np.mean(v))
    return {k: 100 * float(np.mean(v)) for k, v in cells.items()}


def _lines(ax, prefix):
    return {ln.get_gid().split(":", 1)[1]: ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith(prefix)}


@pytest.mark.slow
def test_jf_figure_plots_each_models_stored_jf_per_level_and_its_gt_mask_ceiling(run):
    expected = _expected_jf(run.dirs)
    table = video_summary(run.rows, run.tracks)
    fig = jf_figure(table, run.colors, settings_info(run.rows, run.manifests))
    (ax,) = fig.axes  # video-mask has one level: a ceiling, not a panel
    assert ax.get_title() == "video-noisy-box" and ax.get_xlabel() == "noisy-box noise scale s"
    curves, ceilings = _lines(ax, "line:"), _lines(ax, "ceiling:")
    assert set(curves) == set(ceilings) == set(MODELS)
    for model in MODELS:
        x, y = curves[model].get_data()
        assert list(x) == [0.0, 0.5, 1.0]
        assert list(y) == pytest.approx([expected[(model, "video-noisy-box", lv)] for lv in ("0", "0.5", "1")])
        assert list(ceilings[model].get_ydata()) == pytest.approx([expected[(model, "video-mask", "gt-mask")]] * 2)
        assert curves[model].get_color() == ceilings[model].get_color() == run.colors[model]
    assert "GT mask (ceiling)" in [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.mark.slow
def test_j_over_time_figure_plots_the_mean_stored_j_at_each_offset_from_the_prompt_frame(run):
    per = defaultdict(list)  # (model, protocol, level, offset) -> per-frame J of every stored propagation
    for model, protocol, level, prompt_frame, frames, j in _stored(
            run.dirs, "SELECT model, protocol, level, prompt_frame, frames, j_frames FROM tracks WHERE severity = 0"):
        for t, v in zip(json.loads(frames), json.loads(j)):
            per[(model, protocol, level, t - prompt_frame)].append(v)
    inputs = SimpleNamespace(all_settings=settings_info(run.rows, run.manifests))
    wanted = time_series(inputs)
    assert [label for *_, label in wanted] == ["GT mask", "GT box", "box noise 1"]
    series = j_over_time(run.tracks)
    fig = time_figure(series, wanted, run.colors)
    assert [ax.get_title() for ax in fig.axes] == ["GT mask (video-mask)", "GT box (video-noisy-box)",
                                                   "box noise 1 (video-noisy-box)"]
    for ax, (protocol, level, _) in zip(fig.axes, wanted):
        lines = _lines(ax, "line:")
        assert set(lines) == set(MODELS)
        for model, line in lines.items():
            offsets = sorted(o for (m, p, lv, o) in per if (m, p, lv) == (model, protocol, level))
            assert list(line.get_xdata()) == offsets and offsets[0] == 1  # the prompt frame is not scored
            assert list(line.get_ydata()) == pytest.approx(
                [100 * np.mean(per[(model, protocol, level, o)]) for o in offsets])


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


@pytest.mark.slow
def test_the_strip_draws_each_models_worst_and_best_stored_masks_over_the_frames(run):
    kept = _stored(run.dirs, "SELECT model, image_id, object_id, protocol, level, draw, jf, frames, masks_rle "
                            "FROM tracks WHERE masks_rle IS NOT NULL AND severity = 0")
    groups = defaultdict(list)
    for r in kept:
        groups[r[1:5]].append(r)
    spread = {k: max(max(x[6] for x in g if x[0] == m) - min(x[6] for x in g if x[0] == m)
                     for m in {x[0] for x in g}) for k, g in groups.items()}
    chosen = max(spread, key=spread.get)
    rows = strip_rows(run.tracks)
    assert {(r["image_id"], r["object_id"], r["protocol"], r["level"]) for r in rows} == {chosen}
    fig = strip_figure(SimpleNamespace(manifests=run.manifests, colors=run.colors), rows)
    n_cols = len(fig.axes) // len(rows)
    titles = [int(ax.get_title().split()[-1]) for ax in fig.axes[:n_cols]]  # "frame t" over the first row
    ds = open_video_dataset(SAMPLE)
    video, obj = chosen[0], chosen[1]
    drawn = 0  # panels where a predicted mask was compared (not only empty ones)
    for i, row in enumerate(rows):
        draws = [x for x in groups[chosen] if x[0] == row["model"]]
        want = min(draws, key=lambda x: (x[6], x[5])) if row["which"] == "worst" else \
            max(draws, key=lambda x: (x[6], -x[5]))
        assert row["draw"] == want[5] and f"J&F {100 * want[6]:.1f}" in fig.axes[i * n_cols].get_ylabel()
        scored = json.loads(want[7])
        assert titles[0] == scored[0] and titles[-1] == scored[-1] and len(titles) == min(6, len(scored))
        masks = dict(zip(scored, json.loads(want[8])))
        color = np.array([int(run.colors[row["model"]][k:k + 2], 16) for k in (1, 3, 5)], dtype=np.float32)
        for t, ax in zip(titles, fig.axes[i * n_cols:(i + 1) * n_cols]):
            shown = np.asarray(ax.get_images()[0].get_array())
            frame, pred, gt = ds.frame(video, t), _decode(masks[t]), ds.masks(video, t)[obj]
            # away from the GT's white outline: the frame outside the prediction, blended with the colour inside
            far = ~binary_dilation(gt ^ binary_erosion(gt), iterations=3)
            assert np.array_equal(shown[far & ~pred], frame[far & ~pred])
            blend = (0.45 * frame.astype(np.float32) + 0.55 * color).astype(np.uint8)
            assert np.array_equal(shown[far & pred], blend[far & pred])
            drawn += int(pred[far].any())
    assert drawn >= len(rows)


@pytest.mark.slow
def test_a_video_reports_image_figures_and_grid_skip_video_rows(run, tmp_path):
    written = sambench.open_run([str(d) for d in run.dirs]).report(tmp_path / "rep")
    assert {"video_jf_vs_level.png", "video_j_over_time.png", "video_strip.png"} <= set(written)
    assert not {n for n in written if n.startswith(("degradation_", "grid", "comparison", "miou_vs_clicks"))}
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "could not be reopened" not in page and 'id="video"' in page
    summary = pd.read_csv(written["summary.csv"])  # the summary still lists the video cells (mean J)
    assert set(summary["protocol"]) == {"video-mask", "video-noisy-box"}
