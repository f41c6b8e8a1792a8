"""Shared helpers of the report: model colours, prompt settings (kind, order, display name), headline rows.

Conventions used by every artefact of ``sambench report``:

* **Colours**: one colour per model, fixed for the whole report — models sorted by name over the merged
  runs get matplotlib's ``tab10`` colours in order (``tab20`` when there are more than 10 models, then the
  cycle repeats). The same mapping colours bars, curves, CI bands and mask overlays.
* **Prompt setting**: a (protocol, level) pair. Its *kind* (``gt-box``, ``noisy-box``, ``box-shift``,
  ``box-scale``, ``points``) comes from the manifest's protocol identity (``settings`` list); when the
  manifest does not say, it is read off the stored prompt JSON (``box`` or ``points``).
* **GT-box setting**: a level labelled ``gt-box`` (or of kind ``gt-box``) or a box-noise level whose
  value is 0 — the prompt is then exactly the tight GT box.
* **Headline rows**: the cross-dataset rows (``dataset == "ALL"``, the plain mean of dataset means) when
  the runs hold several datasets, else the rows of the single dataset.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable, Optional

import pandas as pd

from sambench.summary import ALL

BOX_KINDS = ("noisy-box", "box-shift", "box-scale", "box")


def model_colors(models: Iterable[str]) -> dict[str, str]:
    """Stable model → hex colour map: sorted names take ``tab10`` (``tab20`` beyond 10) in order."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    names = sorted({str(m) for m in models})
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    return {m: to_hex(palette[i % len(palette)]) for i, m in enumerate(names)}


@dataclass(frozen=True)
class SettingInfo:
    """One prompt setting (protocol, level) with its kind, numeric value and position in its protocol."""

    protocol: str
    level: str
    kind: str
    value: Optional[float]
    order: int

    @property
    def is_gt_box(self) -> bool:
        """True for the tight GT box: label/kind ``gt-box`` or a box-noise level of value 0."""
        if self.level == "gt-box" or self.kind == "gt-box":
            return True
        return self.kind in BOX_KINDS and self.value is not None and float(self.value) == 0.0

    @property
    def family(self) -> str:
        """``box`` or ``points``: the x axis a degradation curve of this setting belongs to."""
        return "points" if self.kind == "points" else "box"


def _kind_from_prompt(prompt_json: Optional[str]) -> str:
    try:
        p = json.loads(prompt_json) if prompt_json else {}
    except (TypeError, ValueError):
        p = {}
    if p.get("points") and p.get("box") is None:
        return "points"
    if p.get("box") is not None and p.get("points"):
        return "box+points"
    return "box" if p.get("box") is not None else "unknown"


def _num(v) -> Optional[float]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def settings_info(df: pd.DataFrame, manifests: list[dict]) -> list[SettingInfo]:
    """Every (protocol, level) of the rows, ordered: protocols by name, then the card's own level order
    (manifest ``protocols[name].identity.settings``), else GT box first then by numeric value and label."""
    declared: dict[tuple[str, str], tuple[str, int]] = {}
    for man in manifests:
        for pname, entry in (man.get("protocols") or {}).items():
            ident = entry.get("identity") if isinstance(entry, dict) else None
            for i, s in enumerate((ident or {}).get("settings") or []):
                if isinstance(s, dict) and "level" in s:
                    declared.setdefault((pname, str(s["level"])), (str(s.get("kind", "unknown")), i))
    rows = df[df["level"] != ""]
    out = []
    for (protocol, level), g in rows.groupby(["protocol", "level"], sort=False):
        value = _num(g["level_value"].iloc[0]) if "level_value" in g else None
        if (protocol, level) in declared:
            kind, order = declared[(protocol, level)]
        else:
            prompts = g["prompt"].dropna() if "prompt" in g else pd.Series([], dtype=object)
            kind = _kind_from_prompt(prompts.iloc[0] if len(prompts) else None)
            kind = "gt-box" if level == "gt-box" else kind
            order = 10 ** 6
        out.append(SettingInfo(str(protocol), str(level), kind, value, order))

    def sort_key(s: SettingInfo):
        return (s.protocol, s.order, 0 if s.is_gt_box else 1, s.value if s.value is not None else -1.0, s.level)

    return sorted(out, key=sort_key)


def display_names(settings: list[SettingInfo]) -> dict[tuple[str, str], str]:
    """Human labels of settings: ``noisy box s=0.4``, ``noisy box s=0 (GT box)``, ``3 points``, ``GT box`` or
    the level's own label;
    prefixed with the protocol when two settings would otherwise read the same."""

    def pretty(s: SettingInfo) -> str:
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
