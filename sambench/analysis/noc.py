"""NoC and NoF of interactive (click) protocols, from store rows only.

A click protocol stores one row per step of each object's click sequence: level ``k`` = k clicks given
(level ``0`` = the start box alone), draw = the start box's draw. The summary table's mIoU at level k is
therefore mIoU@k. This module adds the per-sequence figures (docs/metrics.md says the same):

* **NoC@t** (t = 0.85, 0.90, 0.95) of one sequence: the smallest level whose IoU is >= t, or the click
  limit (the sequence's last level, ``max_clicks``) if none is (RITM's ``compute_noc_metric``).
* **NoF@t**: sequences that never reach t. (RITM's table prints ``>=20@t``, which also counts a
  sequence reaching t exactly at click 20; ours counts only those that never reach it.)
* Aggregation as for mIoU: per object, the mean over its draws; then the mean over objects, with a
  keyed percentile-bootstrap 95% CI over objects; NoF is the sum over objects of the per-object mean
  over draws (the number of failed objects when there is one draw). The ``ALL`` row is the plain mean of
  the dataset means (NoF: the sum), with a CI resampling objects within each dataset.
* A sequence with a failed row is left out and counted in ``failed``.
* Corrupted images (``--corruption``) have sequences of their own, keyed by (corruption, severity) like
  every row: :func:`noc_table` reports the clean ones, ``noc_table(..., by_corruption=True)`` every
  (corruption, severity) cell, and ``compare --metric noc90`` gates each cell on its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sambench.inputs.clicks import noc
from sambench.inputs.corruptions import CLEAN
from sambench.metrics import bootstrap_ci
from sambench.analysis.stats import stratified_ci
from sambench.analysis.summary import ALL

#: NoC targets reported (and their column suffixes).
NOC_THRESHOLDS = {"85": 0.85, "90": 0.90, "95": 0.95}
#: One click sequence: its rows share these columns.
SEQUENCE = ["dataset", "model", "protocol", "corruption", "severity", "image_id", "object_id", "draw"]
_METRICS = ([f"noc{t}{s}" for t in NOC_THRESHOLDS for s in ("", "_lo", "_hi")]
            + [f"nof{t}" for t in NOC_THRESHOLDS])
#: ``noc.csv``: the clean images' table.
NOC_COLUMNS = ["dataset", "model", "protocol", "n", "failed", "click_limit"] + _METRICS
#: ``noc_corruptions.csv``: one row per (corruption, severity) cell as well.
NOC_CORRUPTION_COLUMNS = ["dataset", "model", "protocol", "corruption", "severity", "n", "failed", "click_limit"] + _METRICS


def click_protocols(manifests) -> set[str]:
    """Names of the interactive (``kind: clicks``) protocols the run manifests record."""
    names = set()
    for m in manifests:
        for name, p in (m or {}).get("protocols", {}).items():
            settings = (p.get("identity") or {}).get("settings") or []
            if isinstance(settings, dict):
                settings = list(settings.values())
            if any(isinstance(s, dict) and s.get("kind") == "clicks" for s in settings):
                names.add(name)
    return names


def sequences(df: pd.DataFrame, protocols) -> pd.DataFrame:
    """One row per click sequence of ``protocols``: its key, ``failed`` and, if whole, NoC/reached per target."""
    rows = df[df["protocol"].isin(list(protocols)) & (df["level"] != "")]
    rows = rows.assign(**{c: v for c, v in (("corruption", CLEAN), ("severity", 0)) if c not in rows.columns})
    out = []
    for key, g in rows.groupby(SEQUENCE, sort=True):
        rec = dict(zip(SEQUENCE, key))
        rec["failed"] = bool((g["status"] != "ok").any())
        levels = g["level_value"].astype(float).astype(int)
        rec["click_limit"] = int(levels.max())
        if not rec["failed"]:
            ious = dict(zip(levels, g["iou"].astype(float)))
            for t, thr in NOC_THRESHOLDS.items():
                rec[f"noc{t}"] = noc(ious, thr, rec["click_limit"])
                rec[f"nof{t}"] = float(not any(v >= thr for v in ious.values()))
        out.append(rec)
    cols = SEQUENCE + ["failed", "click_limit"] + [f"{m}{t}" for t in NOC_THRESHOLDS for m in ("noc", "nof")]
    return pd.DataFrame(out, columns=cols)


def object_noc(rows: pd.DataFrame, protocol: str, target: str = "90") -> pd.DataFrame:
    """Per object (index image_id, object_id): NoC@target averaged over its sequences, a failed sequence
    counting as the click limit (as ``compare`` and the leaderboard count failures: never rewarded).
    ``rows``: one model's rows on one image version (the leaderboard passes the clean images')."""
    s = sequences(rows, {protocol})
    col = f"noc{target}"
    if s.empty:
        return pd.DataFrame(columns=[col], index=pd.MultiIndex.from_tuples([], names=["image_id", "object_id"]))
    s[col] = np.where(s["failed"], s["click_limit"], s[col]).astype(float)
    return s.groupby(["image_id", "object_id"], sort=True)[[col]].mean()


def noc_table(df: pd.DataFrame, protocols, n_boot: int = 1000, by_corruption: bool = False) -> pd.DataFrame:
    """NoC@85/90/95 with CIs and NoF per (dataset, model, protocol) of the click ``protocols`` in rows ``df``:
    the clean images' sequences (:data:`NOC_COLUMNS`), or with ``by_corruption`` one row per (corruption,
    severity) cell too, clean included (:data:`NOC_CORRUPTION_COLUMNS`)."""
    seqs = sequences(df, protocols)
    columns = NOC_CORRUPTION_COLUMNS if by_corruption else NOC_COLUMNS
    if not by_corruption:
        seqs = seqs[seqs["severity"].astype(int) == 0]
    if seqs.empty:
        return pd.DataFrame(columns=columns)
    cell = ["model", "protocol"] + (["corruption", "severity"] if by_corruption else [])
    ok = seqs[~seqs["failed"]]
    metric_cols = [f"{m}{t}" for t in NOC_THRESHOLDS for m in ("noc", "nof")]
    objs = (ok.groupby(["dataset"] + cell + ["image_id", "object_id"], sort=True)[metric_cols]
            .mean().reset_index()) if not ok.empty else pd.DataFrame(columns=["dataset"] + cell + metric_cols)
    table = []
    for key, g in seqs.groupby(["dataset"] + cell, sort=True):
        where = dict(zip(["dataset"] + cell, key))
        o = objs[np.logical_and.reduce([objs[c] == v for c, v in where.items()])]
        row = {**where, "n": int(len(o)), "failed": int(g["failed"].sum()), "click_limit": int(g["click_limit"].max())}
        for t in NOC_THRESHOLDS:
            vals = o[f"noc{t}"].to_numpy(dtype=float)
            row[f"noc{t}"] = float(vals.mean()) if vals.size else float("nan")
            row[f"noc{t}_lo"], row[f"noc{t}_hi"] = bootstrap_ci(vals, n_boot=n_boot, key=_ci_key(where, t))
            row[f"nof{t}"] = float(o[f"nof{t}"].sum())
        table.append(row)
    out = pd.DataFrame(table, columns=columns)
    if out["dataset"].nunique() > 1:
        extra = []
        for key, g in out.groupby(cell, sort=True):
            where = dict(zip(cell, key))
            row = {"dataset": ALL, **where, "n": int(g["n"].sum()),
                   "failed": int(g["failed"].sum()), "click_limit": int(g["click_limit"].max())}
            sel = objs[np.logical_and.reduce([objs[c] == v for c, v in where.items()])]
            for t in NOC_THRESHOLDS:
                row[f"noc{t}"] = float(g[f"noc{t}"].mean())
                groups = [d[f"noc{t}"].to_numpy(dtype=float) for _, d in sel.groupby("dataset")]
                row[f"noc{t}_lo"], row[f"noc{t}_hi"] = stratified_ci(groups, _ci_key(where, t), n_boot)
                row[f"nof{t}"] = float(g[f"nof{t}"].sum())
            extra.append(row)
        out = pd.concat([out, pd.DataFrame(extra, columns=columns)], ignore_index=True)
    return out.reset_index(drop=True)


def _ci_key(where: dict, target: str) -> str:
    """The bootstrap key of one NoC cell: the one the clean table always used, plus the corruption level."""
    parts = [str(where[c]) for c in ("dataset", "model", "protocol") if c in where]
    if int(where.get("severity", 0)):
        parts += [str(where["corruption"]), str(int(where["severity"]))]
    return "|".join(parts + [f"noc{target}"])


def format_noc(table: pd.DataFrame) -> str:
    """Plain-text NoC table for the terminal: NoC@85/90/95 [CI] and NoF."""
    if table.empty:
        return "(no click sequences)"
    t = table.copy()
    for k in NOC_THRESHOLDS:
        t[f"NoC@{k}"] = [f"{m:5.2f} [{lo:5.2f},{hi:5.2f}]" if not np.isnan(m) else "  -  "
                         for m, lo, hi in zip(t[f"noc{k}"], t[f"noc{k}_lo"], t[f"noc{k}_hi"])]
        t[f"NoF@{k}"] = t[f"nof{k}"].map(lambda v: f"{v:g}")
    cols = ["dataset", "model", "protocol", "n", "failed", "click_limit"] + [f"NoC@{k}" for k in NOC_THRESHOLDS] \
        + [f"NoF@{k}" for k in NOC_THRESHOLDS]
    return t[cols].to_string(index=False)
