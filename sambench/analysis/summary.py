"""The summary table: per dataset × model × protocol × level × corruption × severity, from store rows only.

Columns: ``dataset, model, protocol, level, level_value, corruption, severity, n, failed, miou, miou_lo,
miou_hi, mbiou, mbiou_lo, mbiou_hi, stability_pairwise, stability_union``. Values are fractions in [0, 1].
``corruption``/``severity`` are ``none``/0 for the clean image (every row of a run without
``--corruption``); the report's classic tables use those rows, its corruptions section (``sambench.report.corruptions``)
the rest.

* ``n`` — objects with at least one successful draw at that level.
* ``failed`` — failed rows at that level plus image-level failures (an unreadable image blocks it at
  every level, so it is counted at every level of its model and protocol). A model whose every image
  failed still gets rows (n = 0, metrics NaN) at the levels the other models have.
* ``miou`` / ``mbiou`` — mean over objects of the per-object mean over draws (``sambench.metrics``).
* ``*_lo`` / ``*_hi`` — percentile bootstrap 95% CI over objects.
* ``stability_*`` — mean over objects of the per-object stability across its draws, over the objects
  whose draws are not all empty (stability of an all-empty set of draws is undefined, see
  ``sambench.metrics``); ``n_stability`` counts those objects (``n - n_stability`` objects were
  predicted empty in every draw). Each object's stability is the one its run stored with the rows where
  that entry covers exactly the object's ok rows, else computed from the masks: the same number either way
  (:func:`per_object`).

Rows with ``dataset == "ALL"`` are the cross-dataset figure: the plain mean of the dataset means of the
same model/protocol/level; their CI resamples objects within each dataset (stratified bootstrap).
"""

from __future__ import annotations

import json
from typing import Optional

import numpy as np
import pandas as pd

from sambench.metrics import bootstrap_ci, stability
from sambench.analysis.stats import stratified_ci
from sambench.inputs.corruptions import CLEAN, CORRUPTIONS
from sambench.store import LEVEL_COLUMNS, OBJECT_COLUMNS

GROUP = list(LEVEL_COLUMNS)
#: The columns of the summary table (``summary.csv`` and ``Run.summary()``; an interface, dataset first).
SUMMARY_COLUMNS = ["dataset", "model", "protocol", "level", "level_value", "corruption", "severity", "n", "failed",
                   "miou", "miou_lo", "miou_hi", "mbiou", "mbiou_lo", "mbiou_hi", "stability_pairwise",
                   "stability_union", "n_stability"]
ALL = "ALL"


def with_clean_defaults(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``corruption``/``severity`` = ``none``/0 where a hand-made frame lacks them (rows of a
    schema-1 store already read that way, sambench.store.ADDED_COLUMNS)."""
    missing = {c: v for c, v in (("corruption", CLEAN), ("severity", 0)) if c not in df.columns}
    return df.assign(**missing) if missing else df


def per_object(df: pd.DataFrame, stored: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """One row per (dataset, model, protocol, level, corruption, severity, image, object): mean IoU/BIoU over
    draws, stability.

    ``stored``: the per-object stability the runs stored with their rows (:func:`sambench.store.load_objects`).
    A group takes its stored numbers only when they were computed from exactly its ok rows here
    (:func:`stored_stability`); every other group's are computed from its masks, as without ``stored``."""
    df = with_clean_defaults(df)
    ok = df[df["status"] == "ok"]
    keys = list(OBJECT_COLUMNS)
    if ok.empty:
        return pd.DataFrame(columns=keys + ["level_value", "iou", "biou", "draws", "stability_pairwise", "stability_union"])
    grouped = ok.groupby(keys, sort=True)
    agg = grouped.agg(level_value=("level_value", "first"), iou=("iou", "mean"), biou=("biou", "mean"),
                      draws=("draw", "count")).reset_index()
    if "mask_rle" in ok.columns:
        group = grouped.ngroup().to_numpy()  # numbered in agg's row order
        pairwise, union, have = stored_stability(agg, group, ok["draw"].to_numpy(), stored)
        need = np.flatnonzero(~have)
        rows = np.flatnonzero(np.isin(group, need))
        pairwise[need], union[need] = stability_columns(ok["mask_rle"].to_numpy()[rows].tolist(),
                                                        np.searchsorted(need, group[rows]), len(need))
        agg["stability_pairwise"], agg["stability_union"] = pairwise, union
    else:
        agg["stability_pairwise"] = np.nan
        agg["stability_union"] = np.nan
    return agg


def stored_stability(agg: pd.DataFrame, group: np.ndarray, draw: np.ndarray,
                     stored: Optional[pd.DataFrame]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pairwise, union, have) per row of ``agg`` (:func:`per_object`'s groups; ``group``/``draw``: each ok row's
    group number and draw, in row order) from ``stored``; ``have`` is False where a group must be computed.

    A stored group holds when its ``draws`` equals the group's ok rows here and those rows come in draw
    order (the order its numbers were computed in): a stored entry covers the ok rows of the batch that
    wrote it, which stay stored, so an equal count means the same rows. Rows added by a later batch (more
    draws, a retried failure) or held in part by another run make the count differ: the group is computed."""
    n = len(agg)
    pairwise, union, have = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, dtype=bool)
    if stored is None or stored.empty:
        return pairwise, union, have
    keys = list(OBJECT_COLUMNS)
    entries = stored[keys + ["draws", "stability_pairwise", "stability_union"]].drop_duplicates(keys + ["draws"])
    found = agg[keys + ["draws"]].merge(entries.assign(_stored=True), on=keys + ["draws"], how="left", sort=False)
    have = found["_stored"].notna().to_numpy().copy()  # writable (pandas hands out read-only views)
    order = np.argsort(group, kind="stable")
    g, d = group[order], draw[order]
    out_of_order = g[1:][(g[1:] == g[:-1]) & (d[1:] <= d[:-1])]
    have[out_of_order[out_of_order >= 0]] = False
    pairwise[have] = found["stability_pairwise"].to_numpy(dtype=float)[have]
    union[have] = found["stability_union"].to_numpy(dtype=float)[have]
    return pairwise, union, have


def stability_columns(mask_rle: list[str], group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(pairwise, union) :func:`sambench.metrics.stability` per group: ``mask_rle`` holds one stored RLE (JSON
    text) per row, ``group`` each row's group number in [0, n_groups); a group's masks are taken in row
    order. Every RLE is parsed in one JSON call, and rows are grouped by one sort, not per group."""
    rles = json.loads("[" + ",".join(mask_rle) + "]")
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(n_groups + 1))
    pairwise, union = np.empty(n_groups), np.empty(n_groups)
    for g in range(n_groups):
        pairwise[g], union[g] = stability([rles[i] for i in order[bounds[g]:bounds[g + 1]]])
    return pairwise, union


def summarize(df: pd.DataFrame, n_boot: int = 1000, objects: Optional[pd.DataFrame] = None,
              stored: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """The summary table of store rows ``df`` (as returned by ``Store.frame`` / ``load_runs``); ``objects`` is
    :func:`per_object` of ``df`` when the caller has it already (the report shares it with the ranked board),
    else it is computed with the runs' ``stored`` per-object stability (:func:`per_object`)."""
    df = with_clean_defaults(df)
    objs = per_object(df, stored) if objects is None else objects
    failed = df[df["status"] == "failed"]
    image_failures = failed[failed["level"] == ""].groupby(GROUP[:3]).size()  # (model, dataset, protocol)
    level_failures = failed[failed["level"] != ""].groupby(GROUP).size()
    levels = df[df["level"] != ""].drop_duplicates(GROUP)[GROUP + ["level_value"]]
    # A model whose every image failed at the image level has no level rows: give it a row (n = 0) at
    # each level the other models of that dataset and protocol have (or one row with level "" if none
    # has any), so its failures stay visible in every table.
    extra_levels = []
    for (model, dataset, protocol), _count in image_failures.items():
        mine = levels[(levels["dataset"] == dataset) & (levels["model"] == model) & (levels["protocol"] == protocol)]
        if len(mine):
            continue
        known = levels[(levels["dataset"] == dataset) & (levels["protocol"] == protocol)].drop_duplicates(
            ["level", "corruption", "severity"])
        empty = {"level": "", "level_value": float("nan"), "corruption": CLEAN, "severity": 0}
        for _, k in known.iterrows() if len(known) else [(None, empty)]:
            extra_levels.append({"dataset": dataset, "model": model, "protocol": protocol, "level": k["level"],
                                 "level_value": k["level_value"], "corruption": k["corruption"],
                                 "severity": k["severity"]})
    if extra_levels:
        levels = pd.concat([levels, pd.DataFrame(extra_levels)], ignore_index=True)
    by_cell = {key: g for key, g in objs.groupby(GROUP, sort=False)} if len(objs) else {}
    out = []
    for _, lv in levels.iterrows():
        key = tuple(lv[c] for c in GROUP)
        o = by_cell.get(key, objs.iloc[0:0])
        n_failed = int(level_failures.get(key, 0)) + int(image_failures.get(key[:3], 0))
        row = {c: lv[c] for c in GROUP}
        row.update(level_value=lv["level_value"], n=int(len(o)), failed=n_failed)
        tag = _tag(row)
        for m, col in (("miou", "iou"), ("mbiou", "biou")):
            vals = o[col].to_numpy(dtype=float)
            row[m] = float(vals.mean()) if vals.size else float("nan")
            row[m + "_lo"], row[m + "_hi"] = bootstrap_ci(vals, n_boot=n_boot, key=f"{tag}|{m}")
        row["stability_pairwise"] = float(o["stability_pairwise"].mean()) if len(o) else float("nan")
        row["stability_union"] = float(o["stability_union"].mean()) if len(o) else float("nan")
        row["n_stability"] = int(o["stability_union"].notna().sum()) if len(o) else 0
        out.append(row)
    table = pd.DataFrame(out, columns=SUMMARY_COLUMNS)
    if table.empty or table["dataset"].nunique() < 2:
        return _sort(table)
    extra = []
    across = [c for c in GROUP if c != "dataset"]
    for key, g in table.groupby(across, sort=False):
        cell = dict(zip(across, key))
        sel = objs
        for c, v in cell.items():
            sel = sel[sel[c] == v]
        row = {"dataset": ALL, **cell, "level_value": g["level_value"].iloc[0], "n": int(g["n"].sum()),
               "failed": int(g["failed"].sum())}
        for m, col in (("miou", "iou"), ("mbiou", "biou")):
            row[m] = float(g[m].mean())
            groups = [d[col].to_numpy(dtype=float) for _, d in sel.groupby("dataset")]
            row[m + "_lo"], row[m + "_hi"] = stratified_ci(groups, _tag(row, with_dataset=False) + f"|{m}", n_boot)
        row["stability_pairwise"] = float(g["stability_pairwise"].mean())
        row["stability_union"] = float(g["stability_union"].mean())
        row["n_stability"] = int(g["n_stability"].sum())
        extra.append(row)
    return _sort(pd.concat([table, pd.DataFrame(extra, columns=SUMMARY_COLUMNS)], ignore_index=True))


def _tag(row: dict, with_dataset: bool = True) -> str:
    """The bootstrap's key of a cell: fixed text, so CIs never move; a clean cell keeps the text it had
    before the corruption axis existed."""
    parts = ([row["dataset"]] if with_dataset else []) + [row["model"], row["protocol"], row["level"]]
    if (row["corruption"], row["severity"]) != (CLEAN, 0):
        parts.append(f"{row['corruption']}:{row['severity']}")
    return "|".join(map(str, parts))


def _sort(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return table
    order = {n: i for i, n in enumerate([CLEAN, *CORRUPTIONS])}
    t = table.assign(_all=table["dataset"] == ALL, _lv=table["level_value"].fillna(-1.0),
                     _c=table["corruption"].map(lambda c: order.get(c, len(order))))
    t = t.sort_values(["_all", "dataset", "protocol", "_lv", "level", "_c", "corruption", "severity", "model"],
                      kind="stable")
    return t.drop(columns=["_all", "_lv", "_c"]).reset_index(drop=True)


def failure_reasons(df: pd.DataFrame) -> pd.DataFrame:
    """Failed rows grouped by (model, dataset, protocol, error) with counts — nothing is dropped silently."""
    failed = df[df["status"] == "failed"]
    by = GROUP[:3] + ["error"]  # model, dataset, protocol, error
    if failed.empty:
        return pd.DataFrame(columns=by + ["count"])
    return (failed.groupby(by).size().rename("count").reset_index()
            .sort_values("count", ascending=False, kind="stable").reset_index(drop=True))


def format_table(table: pd.DataFrame) -> str:
    """Plain-text table in percent (as the papers print), with CI bounds, for the terminal."""
    if table.empty:
        return "(no results)"
    t = table.copy()
    pct = lambda v: "  -  " if pd.isna(v) else f"{100 * v:5.1f}"
    t["miou"] = [f"{pct(m)} [{pct(lo)},{pct(hi)}]" for m, lo, hi in zip(t.miou, t.miou_lo, t.miou_hi)]
    t["mbiou"] = [f"{pct(m)} [{pct(lo)},{pct(hi)}]" for m, lo, hi in zip(t.mbiou, t.mbiou_lo, t.mbiou_hi)]
    t["stability_pairwise"] = t["stability_pairwise"].map(pct)
    t["stability_union"] = t["stability_union"].map(pct)
    shown = [c for c in SUMMARY_COLUMNS if c != "level_value" and not c.endswith(("_lo", "_hi"))]
    if not ((t["corruption"] != CLEAN) | (t["severity"] != 0)).any():
        shown = [c for c in shown if c not in ("corruption", "severity")]
    return t[shown].to_string(index=False)
