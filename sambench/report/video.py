"""The report's video section: the J&F table per level, J&F against the level per model, and J over time.

Files (docs/video.md "Reports"): ``video_summary.csv``/``.md`` (:func:`sambench.analysis.video.video_summary`,
clean and corrupted cells), ``j_over_time.csv`` (:func:`sambench.analysis.video.j_over_time`), the figures
``video_jf_vs_level.<fmt>`` (one panel per protocol with two or more levels: J&F against the level value per
model; each model's GT-mask J&F, when a ``gt-mask`` level was run, is its dashed ceiling) and
``video_j_over_time.<fmt>`` (mean J against the frame offset from the prompt frame for the GT mask, the GT box
(a box level of value 0), the noisiest box level and 1 point / 1 click), and ``video_strip.<fmt>``: for the
(video, object, protocol, level) whose draws spread most in J&F, each model's worst and best draw (their
per-frame masks are kept, sambench.execution.video.kept_masks) on up to 6 evenly spaced scored frames, the
prediction filled in the model's colour and the GT outlined in white. Clean cells only in the figures.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from sambench.analysis.video import j_over_time, video_summary
from sambench.execution.video import open_video_spec
from sambench.metrics import decode_rle
from sambench.report import figures as F
from sambench.report.context import ReportFiles, ReportInputs
from sambench.report.html import Section, figure_html
from sambench.report.tables import frame_cells
from sambench.store import load_tracks
from sambench.types import SambenchError


def _clean(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["severity"].astype(int) == 0]


def level_label(settings, protocol: str) -> str:
    """The x label of a protocol's levels: what the number is (noise scale s, points k, clicks k)."""
    kinds = {x.kind for x in settings if x.protocol == protocol and x.kind != "gt-mask"}
    if kinds == {"points"}:
        return "number of points k"
    if kinds == {"clicks"}:
        return "number of clicks k on the prompt frame"
    if len(kinds) == 1:
        return f"{kinds.pop()} noise scale s"
    return "level"


def jf_figure(table: pd.DataFrame, colors: dict, settings=()):
    """J&F against the level value, one panel per protocol with >= 2 numeric levels; GT-mask ceilings dashed.

    Each model's curve is the line with ``gid`` ``line:<model>`` (x: level value, y: the table's clean ``JF``,
    the mean over rows of equal level value); its ceiling the horizontal line ``ceiling:<model>``."""
    clean = _clean(table)
    ceiling = clean[clean["level"] == "gt-mask"].groupby("model")["JF"].mean()
    curves = [p for p, g in clean.groupby("protocol") if g["level_value"].notna().sum() and g["level"].nunique() >= 2]
    if not curves:
        return None
    fig = F.new_figure(4.2 * len(curves), 3.6)
    for i, protocol in enumerate(sorted(curves)):
        ax = fig.add_subplot(1, len(curves), i + 1)
        g = clean[(clean["protocol"] == protocol) & clean["level_value"].notna()]
        for model, m in g.groupby("model"):
            m = m.groupby("level_value")["JF"].mean().sort_index()
            ax.plot(m.index, m.values, marker="o", color=colors.get(model), label=model, gid=f"line:{model}")
            if model in ceiling.index:
                ax.axhline(ceiling[model], ls="--", lw=1, color=colors.get(model), gid=f"ceiling:{model}")
        if len(g["level_value"].unique()) <= 10:
            ax.set_xticks(sorted(g["level_value"].astype(float).unique()))
        ax.set_title(protocol)
        ax.set_xlabel(level_label(settings, protocol))
        ax.set_ylabel("J&F (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    if len(ceiling):
        handles.append(Line2D([], [], ls="--", lw=1, color="grey"))
        labels.append("GT mask (ceiling)")
    fig.axes[0].legend(handles, labels, fontsize=7, loc="upper right")
    return fig


def time_series(inputs: ReportInputs) -> list[tuple[str, str, str]]:
    """(protocol, level, label) of the prompts J over time shows (module docstring), in that order."""
    out = []
    for s in inputs.all_settings:
        if s.kind == "gt-mask":
            out.append((s.protocol, s.level, "GT mask"))
    boxes = [s for s in inputs.all_settings if s.family == "box" and s.level_value is not None and s.kind != "gt-mask"]
    for s in boxes:
        if s.level_value == 0:
            out.append((s.protocol, s.level, "GT box"))
    if boxes:
        worst = max(boxes, key=lambda s: s.level_value)
        if worst.level_value:
            out.append((worst.protocol, worst.level, f"box noise {worst.level}"))
    for s in inputs.all_settings:
        if s.kind in ("points", "clicks") and s.level_value == 1:
            out.append((s.protocol, s.level, "1 point" if s.kind == "points" else "1 click"))
    return list(dict.fromkeys(out))


#: Panels per row of the J-over-time figure.
TIME_COLUMNS = 3


def time_figure(series: pd.DataFrame, wanted: list[tuple[str, str, str]], colors: dict):
    """Mean J against the frame offset, one panel per (protocol, level, label) of ``wanted`` that has clean rows,
    in that order, :data:`TIME_COLUMNS` per row; each model's line has ``gid`` ``line:<model>`` (x: offset, y: the
    series' ``J``)."""
    clean = _clean(series)
    shown = [(p, lv, label) for p, lv, label in wanted if ((clean["protocol"] == p) & (clean["level"] == lv)).any()]
    if not shown:
        return None
    cols = min(TIME_COLUMNS, len(shown))
    rows = -(-len(shown) // cols)
    fig = F.new_figure(4.2 * cols, 3.2 * rows)
    for i, (protocol, level, label) in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        g = clean[(clean["protocol"] == protocol) & (clean["level"] == level)]
        for model, m in g.groupby("model"):
            m = m.sort_values("offset")
            ax.plot(m["offset"], m["J"], color=colors.get(model), label=model, gid=f"line:{model}")
        ax.set_title(f"{label} ({protocol})", fontsize=9)
        ax.set_xlabel("frames from the prompt frame")
        ax.set_ylabel("J (%)")
        ax.set_ylim(-2, 102)  # a line at J = 0 (a prompt that lost the object) stays visible above the axis
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7, loc="upper right")
    return fig


#: Frames a strip shows, and models (rows: worst and best draw each) at most.
STRIP_FRAMES, STRIP_MODELS = 6, 3


def strip_rows(tracks: pd.DataFrame) -> list[dict]:
    """The strip's rows (module docstring): tracks entries with masks, worst then best draw per model."""
    kept = _clean(tracks[tracks["masks_rle"].notna() & tracks["jf"].notna()])
    if kept.empty:
        return []
    key = ["dataset", "image_id", "object_id", "protocol", "level"]
    spread = kept.groupby(key + ["model"], sort=True)["jf"].agg(lambda s: s.max() - s.min())
    spread = spread[spread > 0]
    if spread.empty:
        return []
    chosen = spread.groupby(level=key).max().sort_values(ascending=False, kind="stable").index[0]
    group = kept[(kept[key] == pd.Series(chosen, index=key)).all(axis=1)]
    rows = []
    for model in sorted(group["model"].unique())[:STRIP_MODELS]:
        m = group[group["model"] == model].sort_values("draw")
        worst, best = m.loc[m["jf"].idxmin()], m.loc[m["jf"].idxmax()]
        rows += [dict(worst, which="worst"), dict(best, which="best")] if worst["draw"] != best["draw"] else []
    return rows


def _overlay(frame: np.ndarray, mask: np.ndarray, gt: np.ndarray, color: str) -> np.ndarray:
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float32) if color.startswith("#") \
        else np.array([255.0, 0.0, 0.0], dtype=np.float32)
    out = frame.astype(np.float32)
    out[mask] = 0.45 * out[mask] + 0.55 * rgb
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, round(min(frame.shape[:2]) / 200)))
    return out


def strip_figure(inputs: ReportInputs, rows: list[dict]):
    """The strip of frames (module docstring) of ``rows``; None when the dataset cannot be reopened."""
    first = rows[0]
    spec = next((((man.get("datasets") or {}).get(first["dataset"]) or {}).get("spec") for man in inputs.manifests
                 if ((man.get("datasets") or {}).get(first["dataset"]) or {}).get("spec")), None)
    try:
        ds = open_video_spec(spec) if spec else None
    except SambenchError:
        ds = None
    if ds is None:
        return None
    frames = json.loads(first["frames"])
    shown = [frames[int(i)] for i in np.unique(np.linspace(0, len(frames) - 1, min(STRIP_FRAMES, len(frames))).round())]
    fig = F.new_figure(1.9 * len(shown), 1.5 * len(rows) + 0.4)
    video, oid = str(first["image_id"]), str(first["object_id"])
    for r, row in enumerate(rows):
        masks = dict(zip(json.loads(row["frames"]), json.loads(row["masks_rle"])))
        for c, t in enumerate(shown):
            ax = fig.add_subplot(len(rows), len(shown), r * len(shown) + c + 1)
            gt = (ds.masks(video, t) or {}).get(oid)
            frame = ds.frame(video, t)
            gt = np.zeros(frame.shape[:2], bool) if gt is None else gt
            ax.imshow(_overlay(frame, decode_rle(masks[t]), gt, inputs.colors.get(row["model"], "#ff0000")))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {t}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{row['model']}\n{row['which']}: draw {row['draw']}\nJ&F {100 * row['jf']:.1f}",
                              fontsize=6)
    fig.suptitle(f"{first['dataset']}/{video} object {oid}, {first['protocol']} level {first['level']}", fontsize=8)
    return fig


def video_section(out: ReportFiles, inputs: ReportInputs) -> list[Section]:
    """The video section (module docstring); nothing when the runs hold no video rows."""
    if not inputs.video_protocols:
        return []  # no video protocol: the stores are not opened again
    tracks = load_tracks(inputs.run_dirs, with_masks=True)
    if tracks.empty:
        return []
    table = video_summary(inputs.df, tracks)
    inputs.video = table
    out.frame("video_summary.csv", table)
    cells = frame_cells(table.round(1), "J, F and J&F (percent) per cell: mean over tracks of the mean over draws; "
                                        "the prompt frame and unannotated frames are excluded (docs/video.md).")
    out.text("video_summary.md", cells.to_markdown())
    series = j_over_time(tracks)
    out.frame("j_over_time.csv", series)
    body = frame_cells(_clean(table).round(1), cells.caption).to_html()
    strips = strip_rows(tracks)
    for stem, fig, caption in (
            ("video_jf_vs_level", jf_figure(table, inputs.colors, inputs.all_settings),
             "J&F (percent) against the prompt's degradation level per model, clean frames; dashed: the model's "
             "J&F from the GT mask (the ceiling). Mean over tracks of the mean over draws, prompt frame excluded."),
            ("video_j_over_time", time_figure(series, time_series(inputs), inputs.colors),
             "Mean J (percent) against the number of frames from the prompt frame: where a bad prompt loses the "
             "object."),
            ("video_strip", strip_figure(inputs, strips) if strips else None,
             "Worst and best draw of each model at the setting whose draws spread most: the prediction filled, the "
             "GT outlined in white, on evenly spaced scored frames.")):
        if fig is None:
            continue
        files = out.figure(fig, stem)
        body += figure_html(stem, out.pngs[stem], caption, files)
    return [Section("video", "Video: J&F per level and J over time", body)]


__all__ = ["level_label", "jf_figure", "strip_figure", "strip_rows", "time_figure", "time_series", "video_section"]
