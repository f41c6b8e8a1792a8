"""The report's corruptions section: mIoU per corruption and severity, the drop from clean, an mCE, heatmaps.

(Not the headline ``robustness`` score of ``sambench.analysis.scores``, which is the ratio of degraded-prompt
to clean-prompt mIoU. The files keep the names users script against: ``robustness.csv``/``.md``, ``mce.csv``.)

Everything is computed from the summary table (:func:`sambench.analysis.summary.summarize`, one row per dataset
× model × protocol × level × corruption × severity) on its headline rows (``ALL`` with several
datasets, else the only dataset). Conventions (docs/corruptions.md says the same):

* **Error** E = 1 − mIoU (the summary's mean over objects of the mean over draws).
* **Relative drop** of a (corruption, severity) cell = (mIoU_clean − mIoU) / mIoU_clean, clean being
  severity 0 of the same model, protocol and prompt level.
* **Corruption error** (ImageNet-C's CE, with a reference model in AlexNet's place) of model f under
  corruption c at one prompt level: CE_c = Σ_s E^f_{c,s} / Σ_s E^ref_{c,s}, over the severities both ran;
  **relative CE** = Σ_s (E^f_{c,s} − E^f_clean) / Σ_s (E^ref_{c,s} − E^ref_clean). **mCE** / **relative
  mCE** = their mean over the corruptions of the run, in percent. Lower is better; the reference model
  scores 100. A reference whose error does not move with the image (``box-fill`` under a GT box) has no
  relative CE (0/0 → NaN). mCE values are comparable only between runs with the same corruption set,
  severities and reference (all recorded in the CSV).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from sambench.analysis.summary import ALL
from sambench.inputs.corruptions import CLEAN, CORRUPTIONS
from sambench.report.common import display_names
from sambench.report.context import ReportFiles, ReportInputs
from sambench.report.figures import new_figure
from sambench.report.html import Section, figure_html, legend_html
from sambench.report.tables import frame_cells

#: The reference models tried in order when none is named: ImageNet-C normalises by AlexNet; we by a
#: classical baseline every run can include.
DEFAULT_REFERENCES = ("grabcut", "box-fill")
CELL = ["dataset", "model", "protocol", "level"]


def _corruption_order(names) -> list[str]:
    known = list(CORRUPTIONS)
    return sorted({str(n) for n in names if n != CLEAN}, key=lambda n: (known.index(n) if n in known else len(known), n))


def corruption_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, protocol, level, corruption, severity): mIoU, clean mIoU, relative drop.

    Rows of the clean level (``none``/0) are included with drop 0, so the table reads as the full axis.
    """
    cols = CELL + ["level_value", "corruption", "severity", "n", "miou", "clean_miou", "drop"]
    if summary.empty or "corruption" not in summary.columns:
        return pd.DataFrame(columns=cols)
    clean = summary[summary["corruption"] == CLEAN][CELL + ["miou"]].rename(columns={"miou": "clean_miou"})
    t = summary.merge(clean, on=CELL, how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        t["drop"] = (t["clean_miou"] - t["miou"]) / t["clean_miou"]
    order = {n: i for i, n in enumerate([CLEAN] + _corruption_order(t["corruption"].unique()))}
    t = t.assign(_c=t["corruption"].map(order)).sort_values(CELL + ["_c", "severity"], kind="stable")
    return t[cols].reset_index(drop=True)


def pick_reference(models: Sequence[str], reference: Optional[str]) -> tuple[Optional[str], str]:
    """The mCE reference model and a note on how it was chosen (or why there is none)."""
    if reference:
        if reference not in models:
            return None, f"mCE: reference model '{reference}' is not in these runs, so no mCE"
        return reference, f"mCE normalised by '{reference}' (chosen)"
    for m in DEFAULT_REFERENCES:
        if m in models:
            return m, f"mCE normalised by '{m}' (default: the first of {', '.join(DEFAULT_REFERENCES)} in the runs)"
    return None, f"mCE: none of the default reference models ({', '.join(DEFAULT_REFERENCES)}) ran; give --mce-reference"


def mce_table(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per (dataset, model, protocol, level, corruption): CE and relative CE against ``reference`` (percent),
    plus a ``corruption = "mean"`` row per cell holding the mCE and relative mCE (see the module doc)."""
    cols = CELL + ["corruption", "severities", "reference", "ce", "relative_ce"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    err = table.assign(err=1.0 - table["miou"], clean_err=1.0 - table["clean_miou"])
    ref = err[err["model"] == reference][["dataset", "protocol", "level", "corruption", "severity", "err", "clean_err"]]
    ref = ref.rename(columns={"err": "ref_err", "clean_err": "ref_clean_err"})
    m = err[err["corruption"] != CLEAN].merge(ref, on=["dataset", "protocol", "level", "corruption", "severity"])
    m = m.dropna(subset=["err", "ref_err"])
    out = []
    for key, g in m.groupby(CELL, sort=True):
        per = []
        for c in _corruption_order(g["corruption"].unique()):
            gc = g[g["corruption"] == c]
            den = gc["ref_err"].sum()
            rden = (gc["ref_err"] - gc["ref_clean_err"]).sum()
            ce = 100.0 * gc["err"].sum() / den + 0.0 if den > 0 else math.nan  # + 0.0: no "-0.0"
            rce = 100.0 * (gc["err"] - gc["clean_err"]).sum() / rden + 0.0 if abs(rden) > 1e-12 else math.nan
            sev = ",".join(str(int(s)) for s in sorted(gc["severity"].unique()))
            per.append({**dict(zip(CELL, key)), "corruption": c, "severities": sev, "reference": reference,
                        "ce": ce, "relative_ce": rce})
        out.extend(per)
        ces = [p["ce"] for p in per]
        rces = [p["relative_ce"] for p in per]
        out.append({**dict(zip(CELL, key)), "corruption": "mean", "severities": "",
                    "reference": reference,
                    "ce": float(np.mean(ces)) if ces and not any(map(math.isnan, ces)) else math.nan,
                    "relative_ce": float(np.mean(rces)) if rces and not any(map(math.isnan, rces)) else math.nan})
    return pd.DataFrame(out, columns=cols)


# ------------------------------------------------------------------------------------------ figures


def _heat(ax, values: np.ndarray, rows: list[str], cols: list[str], title: str):
    im = ax.imshow(100 * values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30 if len(cols) > 3 else 0, ha="right" if len(cols) > 3 else "center",
                  fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_title(title, fontsize=10)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if not np.isnan(v):
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=7,
                        color="black" if v > 0.6 else "white")
    return im


def heatmap_figure(table: pd.DataFrame, setting_names: dict, models: list[str]):
    """Corruption × prompt-degradation level, one panel per model: mIoU (%) averaged over the severities
    run (the clean row is severity 0). ``setting_names`` maps (protocol, level) → column label, in order."""
    rows = [CLEAN] + _corruption_order(table["corruption"].unique())
    settings = [s for s in setting_names if ((table["protocol"] == s[0]) & (table["level"] == s[1])).any()]
    n = len(models)
    fig = new_figure(min(4.2, 1.6 + 0.9 * len(settings)) * n + 0.8, max(2.4, 0.9 + 0.28 * len(rows)))
    axes = fig.subplots(1, n, squeeze=False)[0]
    im = None
    for ax, model in zip(axes, models):
        sub = table[table["model"] == model]
        vals = np.full((len(rows), len(settings)), np.nan)
        for i, c in enumerate(rows):
            for j, (p, lv) in enumerate(settings):
                cell = sub[(sub["corruption"] == c) & (sub["protocol"] == p) & (sub["level"] == lv)]["miou"]
                if len(cell.dropna()):
                    vals[i, j] = cell.mean()
        im = _heat(ax, vals, ["clean" if r == CLEAN else r for r in rows], [setting_names[s] for s in settings], model)
        if ax is not axes[0]:
            ax.set_yticklabels([])
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="mIoU (%), mean over severities", shrink=0.8)
    fig.suptitle("mIoU by corruption and prompt setting (mean over the severities run)", fontsize=10)
    return fig


def severity_figure(table: pd.DataFrame, setting: tuple, setting_name: str, models: list[str]):
    """Corruption × severity (0 = clean) at one prompt setting, one panel per model: mIoU (%)."""
    sub_all = table[(table["protocol"] == setting[0]) & (table["level"] == setting[1])]
    rows = _corruption_order(sub_all["corruption"].unique())
    sevs = sorted(int(s) for s in sub_all["severity"].unique())
    n = len(models)
    fig = new_figure(0.8 + n * (0.9 + 0.45 * len(sevs)), max(2.4, 0.9 + 0.28 * len(rows)))
    axes = fig.subplots(1, n, squeeze=False)[0]
    im = None
    for ax, model in zip(axes, models):
        sub = sub_all[sub_all["model"] == model]
        clean = sub[sub["corruption"] == CLEAN]["miou"]
        vals = np.full((len(rows), len(sevs)), np.nan)
        for i, c in enumerate(rows):
            for j, s in enumerate(sevs):
                cell = clean if s == 0 else sub[(sub["corruption"] == c) & (sub["severity"] == s)]["miou"]
                if len(cell.dropna()):
                    vals[i, j] = cell.mean()
        im = _heat(ax, vals, rows, ["clean" if s == 0 else str(s) for s in sevs], model)
        ax.set_xlabel("severity", fontsize=8)
        if ax is not axes[0]:
            ax.set_yticklabels([])
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="mIoU (%)", shrink=0.8)
    fig.suptitle(f"mIoU by corruption and severity — {setting_name}", fontsize=10)
    return fig


# ------------------------------------------------------------------------------------------ section


def corruptions_section(out: ReportFiles, inputs: ReportInputs, reference: Optional[str]) -> list[Section]:
    """Per corruption and severity mIoU and drop, the mCE, and the two heatmaps (docs/corruptions.md)."""
    full = inputs.full_summary
    # click protocols under corruptions: their NoC by corruption (sections.clicks_sections), not 20 mIoU@k
    # columns here
    full = full[~full["protocol"].isin(list(inputs.click_protocols))] if not full.empty else full
    if full.empty or not ((full["corruption"] != CLEAN).any()):
        return []
    scope_rows = full[full["dataset"] == (ALL if (full["dataset"] == ALL).any() else full["dataset"].iloc[0])]
    table = corruption_table(scope_rows)
    inputs.corruption_cells = table
    out.frame("robustness.csv", _pct_frame(corruption_table(full), ["miou", "clean_miou", "drop"]))
    models = sorted(table["model"].unique())
    ref, why = pick_reference(models, reference)
    out.notes.append(why)
    body = legend_html(inputs.colors)
    names = {(s.protocol, s.level): display_names(inputs.settings).get((s.protocol, s.level), f"{s.protocol} {s.level}")
             for s in inputs.settings}
    fig = heatmap_figure(table, names, models)
    files = out.figure(fig, "corruption_heatmap")
    body += figure_html("corruption_heatmap", out.pngs["corruption_heatmap"],
                        f"mIoU (%) by corruption (rows; clean first) and prompt setting (columns), mean over the "
                        f"severities run, {inputs.scope}; one panel per model.", files)
    first = next(((s.protocol, s.level) for s in inputs.settings
                  if ((table["protocol"] == s.protocol) & (table["level"] == s.level) & (table["severity"] > 0)).any()),
                 None)
    if first is not None:
        fig = severity_figure(table, first, names.get(first, "/".join(first)), models)
        files = out.figure(fig, "corruption_severity")
        body += figure_html("corruption_severity", out.pngs["corruption_severity"],
                            f"mIoU (%) by corruption and severity (0 = clean) at {names.get(first, first)}, "
                            f"{inputs.scope}.", files)
    if ref is not None:
        mce = mce_table(table, ref)
        inputs.mce, inputs.mce_reference = mce, ref
        out.frame("mce.csv", mce.round({"ce": 1, "relative_ce": 1}))
        summary_rows = mce[mce["corruption"] == "mean"][["model", "protocol", "level", "reference", "ce", "relative_ce"]]
        body += frame_cells(summary_rows.rename(columns={"ce": "mCE (%)", "relative_ce": "relative mCE (%)"}).round(1),
                            f"mCE over the corruptions run, normalised by {ref} (= 100); lower is better; per-corruption "
                            f"CE in mce.csv.").to_html()
    drop = table[table["severity"] > 0].groupby(["model", "corruption"], sort=False)["drop"].mean().unstack("model")
    body += frame_cells((100 * drop).round(1).reset_index(), "Mean relative drop from clean (%) over severities, "
                        "per corruption and model (robustness.csv has every cell).").to_html()
    out.text("robustness.md", frame_cells(_pct_frame(table, ["miou", "clean_miou", "drop"]), "").to_markdown())
    return [Section("corruptions", "Corruptions", body)]


def _pct_frame(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    f = frame.copy()
    for c in cols:
        f[c + "_pct"] = (100 * f.pop(c)).round(1)
    return f
