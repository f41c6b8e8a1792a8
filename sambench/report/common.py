"""Shared helpers of the report: model colours, display names of prompt settings, headline rows.

Conventions used by every artefact of ``sambench report``:

* **Colours**: one colour per model, fixed for the whole report — models sorted by name over the merged
  runs get matplotlib's ``tab10`` colours in order (``tab20`` when there are more than 10 models, then the
  cycle repeats). The same mapping colours bars, curves, CI bands and mask overlays.
* **Prompt setting**: a (protocol, level) pair, the card's :class:`~sambench.config.Setting`, read from
  the rows and manifests by :func:`sambench.analysis.settings.settings_info` (kind, order, level value);
  :func:`display_names` gives each its label.
* **GT-box setting**: a level labelled ``gt-box`` (or of kind ``gt-box``) or a box-noise level whose
  value is 0 — the prompt is then exactly the tight GT box.
* **Headline rows**: the cross-dataset rows (``dataset == "ALL"``, the plain mean of dataset means) when
  the runs hold several datasets, else the rows of the single dataset.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_hex

from sambench.analysis.summary import ALL
from sambench.config import Setting


def model_colors(models: Iterable[str]) -> dict[str, str]:
    """Stable model → hex colour map: sorted names take ``tab10`` (``tab20`` beyond 10) in order."""
    names = sorted({str(m) for m in models})
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    return {m: to_hex(palette[i % len(palette)]) for i, m in enumerate(names)}


def display_names(settings: list[Setting]) -> dict[tuple[str, str], str]:
    """Human labels of settings: ``noisy box s=0.4``, ``noisy box s=0 (GT box)``, ``3 points``, ``GT box`` or
    the level's own label;
    prefixed with the protocol when two settings would otherwise read the same."""

    def pretty(s: Setting) -> str:
        if s.kind == "gt-box" or s.level == "gt-box":
            return "GT box"
        try:
            float(s.level)
            numeric = True
        except ValueError:
            numeric = False
        if not numeric:
            return s.level
        if s.kind == "points":
            k = int(round(float(s.level)))
            return f"{k} point" + ("" if k == 1 else "s")
        name = {"noisy-box": "noisy box", "box-shift": "box shift", "box-scale": "box scale"}.get(s.kind, s.kind)
        return f"{name} s={s.level}" + (" (GT box)" if s.is_gt_box else "")

    names = {(s.protocol, s.level): pretty(s) for s in settings}
    counts: dict[str, int] = {}
    for v in names.values():
        counts[v] = counts.get(v, 0) + 1
    return {k: (v if counts[v] == 1 else f"{k[0]}: {v}") for k, v in names.items()}


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """Cross-dataset rows when there are several datasets, else the rows of the only dataset."""
    if summary.empty:
        return summary
    if (summary["dataset"] == ALL).any():
        return summary[summary["dataset"] == ALL]
    return summary


def headline_scope(summary: pd.DataFrame) -> str:
    """Words naming what the headline rows average over (for captions)."""
    datasets = sorted(d for d in summary["dataset"].unique() if d != ALL) if not summary.empty else []
    if len(datasets) > 1:
        return f"mean of {len(datasets)} dataset means ({', '.join(datasets)})"
    return f"dataset {datasets[0]}" if datasets else "no dataset"
