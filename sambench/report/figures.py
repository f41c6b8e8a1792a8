"""Report figures (matplotlib, Agg, no pyplot global state): comparison bars, degradation curves, visual grid.

Conventions (docs/reports.md says the same):

* Every figure is a ``matplotlib.figure.Figure`` drawn on an Agg canvas and saved as PNG (130 dpi; the
  photo grid 100 dpi) and PDF; model colours come from :func:`sambench.report.common.model_colors` (the same everywhere).
* **Comparison** (as Stable-SAM's published figure): grouped bars of headline mIoU (%) per prompt setting,
  one bar per model, black error bars = bootstrap 95% CI, value printed above each bar; GT-box settings
  are not bars but the dashed horizontal reference line of the chosen model ("<model> w/ GT box").
* **Degradation**: per protocol, mIoU and mBIoU (%) against the level's numeric value (noise scale s;
  number of points k), one line per model, the CI as a translucent band; one row of axes per prompt
  kind of the protocol with at least two distinct x values; a GT-box setting joins box rows at s = 0.
* **Grid**: one row per chosen (object, prompt), columns = photo with the prompt, GT, then each model's
  mask (in its colour) with its IoU. Boxes are drawn around pixel indices (edge at x0 − 0.5 … x1 + 0.5),
  positive points as green filled plus signs, negative points as red filled minus signs, Stable-SAM
  sampling locations (see :func:`sampling_points`) as cyan circles with area proportional to their
  attention weight, joined by a thin line to their regular grid cell when it is recorded. Each
  row is cropped to the GT ∪ prompt extent plus 35% margin on each side (at least 32 px).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sambench.config import BOX_NOISE_KINDS, Setting
from sambench.files import atomic_write
from sambench.report.common import display_names, headline

PNG_DPI = 130
GRID_DPI = 100  # photo panels compress poorly: keep the grid's PNG (and the page) small
MINUS_MARKER = [(-1.0, -0.32), (1.0, -0.32), (1.0, 0.32), (-1.0, 0.32), (-1.0, -0.32)]


def new_figure(width: float, height: float) -> Figure:
    """A Figure attached to an Agg canvas (no pyplot, no global figure registry)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_dir: Path, stem: str, formats: Sequence[str], dpi: int = PNG_DPI) -> tuple[dict[str, Path], bytes]:
    """Write ``stem.<fmt>`` for each format (atomically); return the paths and the PNG bytes (always
    rendered, for HTML)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    png = buf.getvalue()
    paths: dict[str, Path] = {}
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        if fmt == "png":
            data = png
        else:
            other = io.BytesIO()
            fig.savefig(other, format=fmt, dpi=dpi)
            data = other.getvalue()
        paths[path.name] = atomic_write(path, data)  # temp file + rename: a full disk leaves no truncated figure
    return paths, png


# ------------------------------------------------------------------------------------------ comparison


@dataclass
class Reference:
    """The dashed reference line: ``model`` with the GT-box ``setting`` scored ``value`` (fraction)."""

    model: str
    setting: Setting
    value: float
    automatic: bool


def find_reference(summary: pd.DataFrame, settings: list[Setting], model: Optional[str]) -> tuple[Optional[Reference], str]:
    """The reference line and a note: ``model``'s headline mIoU on a GT-box setting (a level labelled
    ``gt-box`` preferred over a box-noise level 0). With ``model=None`` the first model by name that has a
    GT-box setting is used. Returns ``(None, reason)`` when there is none."""
    head = headline(summary)
    gt_settings = sorted([s for s in settings if s.is_gt_box], key=lambda s: (s.level != "gt-box", s.protocol, s.level))
    if not gt_settings:
        return None, "no GT-box setting (a level 'gt-box' or a box-noise level 0) in these runs: no reference line"
    models = [model] if model else sorted(head["model"].unique())
    for m in models:
        for s in gt_settings:
            r = head[(head["model"] == m) & (head["protocol"] == s.protocol) & (head["level"] == s.level)]
            if len(r) and not pd.isna(r["miou"].iloc[0]):
                return Reference(m, s, float(r["miou"].iloc[0]), model is None), ""
    if model:
        return None, f"reference model '{model}' has no GT-box result in these runs: no reference line"
    return None, "no model has a GT-box result: no reference line"


def comparison_figure(summary: pd.DataFrame, settings: list[Setting], colors: dict[str, str],
                      reference: Optional[Reference], scope: str) -> Figure:
    """Grouped bars: headline mIoU (%) per non-GT-box setting (all settings if only GT-box ones exist)."""
    head = headline(summary)
    bars = [s for s in settings if not s.is_gt_box] or list(settings)
    names = display_names(settings)
    models = sorted(head["model"].unique())
    n_s, n_m = len(bars), max(1, len(models))
    fig = new_figure(max(6.0, 1.6 + n_s * (0.38 * n_m + 0.45)), 4.4)
    ax = fig.add_subplot()
    width = 0.8 / n_m
    x = np.arange(n_s)
    label_values = n_s * n_m <= 48
    for j, m in enumerate(models):
        vals, lo, hi = [], [], []
        for s in bars:
            r = head[(head["model"] == m) & (head["protocol"] == s.protocol) & (head["level"] == s.level)]
            v = float(r["miou"].iloc[0]) if len(r) else math.nan
            vals.append(100 * v)
            lo.append(100 * (v - float(r["miou_lo"].iloc[0])) if len(r) and not pd.isna(r["miou_lo"].iloc[0]) else 0.0)
            hi.append(100 * (float(r["miou_hi"].iloc[0]) - v) if len(r) and not pd.isna(r["miou_hi"].iloc[0]) else 0.0)
        pos = x - 0.4 + width * (j + 0.5)
        cont = ax.bar(pos, np.nan_to_num(vals, nan=0.0), width * 0.92, color=colors[m], label=m,
                      yerr=np.array([np.maximum(lo, 0), np.maximum(hi, 0)]), ecolor="black",
                      error_kw={"elinewidth": 0.7, "capsize": 1.5})
        for patch in cont.patches:
            patch.set_gid(f"bar:{m}")
        if label_values:
            for p, v, h in zip(pos, vals, hi):
                if not math.isnan(v):
                    ax.text(p, v + max(h, 0) + 1.0, f"{v:.1f}", ha="center", va="bottom", fontsize=6.5, rotation=90 if n_m > 3 else 0)
    if reference is not None:
        y = 100 * reference.value
        ax.axhline(y, color=colors.get(reference.model, "black"), linestyle="--", linewidth=1.4,
                   label=f"{reference.model} w/ GT box ({y:.1f})", gid="reference")
    ax.set_xticks(x, [names[(s.protocol, s.level)] for s in bars], rotation=0 if n_s <= 6 else 30,
                  ha="center" if n_s <= 6 else "right")
    ax.set_ylabel("mIoU (%)")
    ax.set_ylim(0, 112)
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlim(-0.6, n_s - 0.4)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(f"Average mIoU per prompt setting ({scope})", fontsize=10)
    ax.legend(fontsize=8, ncols=min(4, n_m + (reference is not None)), loc="upper left", frameon=False)
    return fig


# ------------------------------------------------------------------------------------------ degradation


def degradation_rows(settings: list[Setting]) -> list[tuple[str, list[tuple[float, Setting]]]]:
    """For one protocol's settings: (kind, [(x, setting), ...]) rows with >= 2 distinct x, sorted by x."""
    by_kind: dict[str, list[tuple[float, Setting]]] = {}
    for s in settings:
        if s.kind in BOX_NOISE_KINDS or s.kind == "points":
            if s.level_value is not None:
                by_kind.setdefault(s.kind, []).append((float(s.level_value), s))
    gt = [s for s in settings if s.is_gt_box and s.level_value is None]
    rows = []
    for kind, pts in sorted(by_kind.items()):
        if kind in BOX_NOISE_KINDS and gt and not any(x == 0.0 for x, _ in pts):
            pts = pts + [(0.0, gt[0])]
        pts = sorted(pts, key=lambda t: t[0])
        if len({x for x, _ in pts}) >= 2:
            rows.append((kind, pts))
    return rows


def degradation_figure(summary: pd.DataFrame, protocol: str, settings: list[Setting], colors: dict[str, str],
                       scope: str) -> Optional[Figure]:
    """mIoU and mBIoU against level value for one protocol, or None when no kind has two x values."""
    rows = degradation_rows([s for s in settings if s.protocol == protocol])
    if not rows:
        return None
    head = headline(summary)
    head = head[head["protocol"] == protocol]
    models = sorted(head["model"].unique())
    fig = new_figure(9.5, 3.4 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for i, (kind, pts) in enumerate(rows):
        for j, (metric, label) in enumerate((("miou", "mIoU (%)"), ("mbiou", "mBIoU (%)"))):
            ax = axes[i][j]
            for m in models:
                xs, ys, lo, hi = [], [], [], []
                for x, s in pts:
                    r = head[(head["model"] == m) & (head["level"] == s.level)]
                    if len(r) and not pd.isna(r[metric].iloc[0]):
                        xs.append(x)
                        ys.append(100 * float(r[metric].iloc[0]))
                        lo.append(100 * float(r[metric + "_lo"].iloc[0]))
                        hi.append(100 * float(r[metric + "_hi"].iloc[0]))
                if not xs:
                    continue
                ax.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.6, color=colors[m], label=m, gid=f"line:{m}")
                ax.fill_between(xs, lo, hi, color=colors[m], alpha=0.18, linewidth=0)
            ax.set_xlabel("number of points k" if kind == "points" else f"{kind} noise scale s")
            ax.set_ylabel(label)
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            if kind == "points":
                ax.set_xticks(sorted({x for x, _ in pts}))
            if i == 0 and j == 0:
                ax.legend(fontsize=8, frameon=False)
    fig.suptitle(f"Degradation under protocol '{protocol}' ({scope}); bands: bootstrap 95% CI", fontsize=10)
    return fig


def clicks_figure(summary: pd.DataFrame, protocol: str, colors: dict[str, str], scope: str) -> Optional[Figure]:
    """mIoU@k against the number of clicks k for one interactive protocol (one line per model, CI band,
    dotted lines at the NoC targets 85 / 90 %), or None without results."""
    head = headline(summary)
    head = head[(head["protocol"] == protocol) & head["miou"].notna()]
    if head.empty:
        return None
    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    for m in sorted(head["model"].unique()):
        r = head[head["model"] == m].assign(_k=lambda t: t["level_value"].astype(float)).sort_values("_k")
        ax.plot(r["_k"], 100 * r["miou"], marker="o", markersize=3, linewidth=1.6, color=colors[m], label=m,
                gid=f"line:{m}")
        ax.fill_between(r["_k"], 100 * r["miou_lo"], 100 * r["miou_hi"], color=colors[m], alpha=0.18, linewidth=0)
    for target in (85, 90):
        ax.axhline(target, color="grey", linestyle=":", linewidth=0.9)
    ks = sorted(head["level_value"].astype(float).unique())
    ax.set_xticks([k for k in ks if k == ks[0] or k % 5 == 0 or k == ks[-1]])
    ax.set_xlabel("number of clicks k" + (" (0 = start box alone)" if ks[0] == 0 else ""))
    ax.set_ylabel("mIoU@k (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.set_title(f"mIoU vs clicks, protocol '{protocol}'\n{scope}; bands: bootstrap 95% CI", fontsize=9.5)
    return fig


# ------------------------------------------------------------------------------------------ grid


@dataclass
class GridItem:
    """One row of the visual grid: an object under one prompt, with every model's mask.

    ``image`` (RGB uint8) and ``gt`` (bool) may be None when the dataset could not be reopened; ``shape``
    is the (H, W) of the masks. ``masks``/``ious``/``extras`` are keyed by model.
    """

    dataset: str
    image_id: str
    object_id: str
    protocol: str
    level: str
    draw: int
    prompt: dict
    shape: tuple[int, int]
    masks: dict = field(default_factory=dict)
    ious: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    image: Optional[np.ndarray] = None
    gt: Optional[np.ndarray] = None
    #: (name, severity) of the image the models saw (and ``image`` shows); ("none", 0) = clean.
    corruption: tuple = ("none", 0)


def _bbox(mask: Optional[np.ndarray]) -> Optional[tuple[float, float, float, float]]:
    if mask is None or not mask.any():
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1]), float(rows[-1])


def crop_window(item: GridItem) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) integer window (x1/y1 exclusive): GT ∪ prompt (else masks) + 35% margin, >= 32 px."""
    h, w = item.shape
    boxes = [_bbox(item.gt)]
    if item.prompt.get("box") is not None:
        boxes.append(tuple(item.prompt["box"]))
    for p in item.prompt.get("points") or []:
        boxes.append((p[0], p[1], p[0], p[1]))
    boxes = [b for b in boxes if b is not None]
    if item.gt is None or not boxes:
        boxes += [b for b in (_bbox(m) for m in item.masks.values()) if b is not None]
    if not boxes:
        return 0, 0, w, h
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes) + 1, max(b[3] for b in boxes) + 1
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w = max((x1 - x0) * 1.7, 32.0) / 2
    half_h = max((y1 - y0) * 1.7, 32.0) / 2
    half = max(half_w, half_h)  # square-ish panels
    return (max(0, int(math.floor(cx - half))), max(0, int(math.floor(cy - half))),
            min(w, int(math.ceil(cx + half))), min(h, int(math.ceil(cy + half))))


def _draw_prompt(ax, prompt: dict) -> None:
    if prompt.get("box") is not None:
        x0, y0, x1, y1 = prompt["box"]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor="#00e5ff",
                               linewidth=1.5, gid="prompt-box"))
    pts = prompt.get("points") or []
    labels = prompt.get("labels") or [1] * len(pts)
    pos = [p for p, l in zip(pts, labels) if int(l) == 1]
    neg = [p for p, l in zip(pts, labels) if int(l) == 0]
    if pos:
        ax.scatter([p[0] for p in pos], [p[1] for p in pos], marker="P", s=90, c="#1fbf3f", edgecolors="white",
                   linewidths=0.9, zorder=5, gid="prompt-pos")
    if neg:
        ax.scatter([p[0] for p in neg], [p[1] for p in neg], marker=MINUS_MARKER, s=90, c="#e8242b",
                   edgecolors="white", linewidths=0.9, zorder=5, gid="prompt-neg")


def sampling_points(extras: Optional[dict]) -> Optional[tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
    """``(xy (N,2), weight (N,), grid xy (N,2) or None)`` in original-image pixels from a row's extras, or
    None. Reads Stable-SAM's introspection ``{"stable_sam": {"top": [[x, y, gx, gy, w], ...]}}`` (the
    adapter's format: sampled location, its regular grid cell, attention weight) and the generic
    ``{"sampling": {"xy": [[x, y], ...], "weight": [...]}}``; anything else → None."""
    if not isinstance(extras, dict):
        return None
    top = (extras.get("stable_sam") or {}).get("top") if isinstance(extras.get("stable_sam"), dict) else None
    if top:
        a = np.asarray(top, dtype=float)
        if a.ndim == 2 and a.shape[1] >= 5:
            return a[:, :2], np.abs(a[:, 4]), a[:, 2:4]
    samp = extras.get("sampling")
    if isinstance(samp, dict) and samp.get("xy"):
        xy = np.asarray(samp["xy"], dtype=float).reshape(-1, 2)
        w = np.asarray(samp.get("weight") or [1.0] * len(xy), dtype=float).reshape(-1)
        return xy, (np.abs(w) if w.size == len(xy) else np.ones(len(xy))), None
    return None


def _draw_sampling(ax, extras: Optional[dict]) -> bool:
    found = sampling_points(extras)
    if found is None or not len(found[0]):
        return False
    xy, w, grid = found
    size = 6.0 + 110.0 * (w / w.max() if w.max() > 0 else np.ones_like(w))
    if grid is not None:
        ax.add_collection(LineCollection(np.stack([grid, xy], axis=1), colors="#00e5ff", linewidths=0.5, alpha=0.6,
                                         zorder=4, gid="sampling-offsets"))
    ax.scatter(xy[:, 0], xy[:, 1], s=size, facecolors="none", edgecolors="#00e5ff", linewidths=0.7, zorder=4,
               gid="sampling")
    return True


def _composite(base: np.ndarray, mask: Optional[np.ndarray], color: str) -> np.ndarray:
    """RGB uint8: ``base`` with ``mask`` blended in ``color`` (alpha 0.55) and its 1-px edge in full colour."""
    out = base.astype(np.float32)
    if mask is not None and mask.any():
        rgb = np.asarray(to_rgb(color), dtype=np.float32) * 255
        out[mask] = out[mask] * 0.45 + rgb * 0.55
        m = mask.astype(np.uint8)
        edge = mask & (cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE) == 0)
        out[edge] = rgb
    return out.astype(np.uint8)


def _panel(ax, window, base: np.ndarray, mask: Optional[np.ndarray], color: str) -> None:
    x0, y0, x1, y1 = window
    crop = _composite(base[y0:y1, x0:x1], None if mask is None else mask[y0:y1, x0:x1], color)
    ax.imshow(crop, extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5), interpolation="nearest")


def grid_figure(items: list[GridItem], models: list[str], colors: dict[str, str], title: str = "") -> Figure:
    """The visual comparison grid (see module docstring); one row per item."""
    n_cols = 2 + len(models)
    panel = 2.3  # inches per panel width; a row's height follows its crop's aspect ratio (clamped)
    windows = [crop_window(it) for it in items]
    ratios = [min(1.5, max(0.45, (y1 - y0) / max(1, x1 - x0))) for x0, y0, x1, y1 in windows]
    gap, head = 0.42, 0.55  # inches between rows (for the IoU titles) and above the first row
    height = panel * sum(ratios) + gap * (len(items) - 1) + head + 0.1
    width = panel * n_cols + 0.5
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(items), n_cols, squeeze=False,
                        gridspec_kw={"left": 0.5 / width, "right": 0.995, "bottom": 0.1 / height, "top": 1 - head / height,
                                     "wspace": 0.06, "hspace": gap / (panel * float(np.mean(ratios))),
                                     "height_ratios": ratios})
    for i, it in enumerate(items):
        h, w = it.shape
        window = windows[i]
        photo = it.image is not None and it.image.shape[:2] == (h, w)
        canvas = it.image if photo else np.full((h, w, 3), 235, dtype=np.uint8)
        dim = (canvas.astype(np.float32) * 0.55 + 255 * 0.45).astype(np.uint8) if photo else canvas
        ax = axes[i][0]
        _panel(ax, window, canvas, None, "white")
        if not photo:
            ax.text(0.5, 0.5, "no photo", transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.4")
        _draw_prompt(ax, it.prompt)
        seen = "" if not it.corruption[1] else f"\non {it.corruption[0]} {it.corruption[1]}"
        ax.set_ylabel(f"{it.dataset}/{it.image_id}/{it.object_id}\n{it.protocol} {it.level} draw {it.draw}{seen}",
                      fontsize=7)
        if i == 0:
            ax.set_title("image + prompt", fontsize=8)
        ax = axes[i][1]
        if it.gt is not None and it.gt.shape == (h, w):
            _panel(ax, window, dim, it.gt, "#ffbf00")
        else:
            _panel(ax, window, dim, None, "white")
            ax.text(0.5, 0.5, "GT unavailable", transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.3")
        _draw_prompt(ax, it.prompt)
        if i == 0:
            ax.set_title("ground truth", fontsize=8)
        for j, m in enumerate(models):
            ax = axes[i][2 + j]
            mask = it.masks.get(m)
            _panel(ax, window, dim, mask, colors[m])
            _draw_prompt(ax, it.prompt)
            _draw_sampling(ax, it.extras.get(m))
            iou = it.ious.get(m)
            label = "missing" if mask is None else (f"IoU {100 * iou:.1f}" if iou is not None and not pd.isna(iou) else "")
            ax.set_title(f"{m}\n{label}" if i == 0 else label, fontsize=8, color=colors[m] if i == 0 else "black")
        for ax in axes[i]:
            ax.set_xlim(window[0] - 0.5, window[2] - 0.5)
            ax.set_ylim(window[3] - 0.5, window[1] - 0.5)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9, y=0.999)
    return fig
