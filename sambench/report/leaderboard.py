"""``leaderboard.json``: every number of the report with the provenance needed to trust it.

Shaped after lm-evaluation-harness's results file: ``results[model][dataset][protocol][level]`` holds the
metrics as **fractions in [0, 1]** at full precision (``miou``, ``miou_ci`` = [lo, hi], ``mbiou``,
``mbiou_ci``, ``stability_pairwise``, ``stability_union``, ``n`` objects, ``failed`` rows, ``level_value``);
the dataset ``ALL`` is the cross-dataset mean. ``versions`` maps protocols to their version; ``protocols``,
``datasets`` and ``models`` carry the manifests' identity, content hashes and model signatures; ``runs``
lists each run directory with its sambench version, git commit, creation date, seed, libraries and
counters. Keys a manifest lacks are simply absent (old or hand-made runs); two runs that disagree on a
protocol, dataset or model identity are listed under ``conflicts`` (never resolved silently).

Format 2 adds ``board``: the ranked headline scores of ``sambench.analysis.ranking`` (columns, entries with CIs,
ranks, ties, paired tests and provenance), or ``{"refused": "<reason>"}`` when the runs cannot share a
ranking (``sambench report`` still writes everything else). Every format-1 key is unchanged.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Optional

import pandas as pd

import sambench
from sambench.store import merge_manifests

LEADERBOARD_FORMAT = 2


def _clean(v: Any) -> Any:
    """JSON-safe value: NaN/inf → None, numpy scalars → Python."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def build_leaderboard(summary: pd.DataFrame, df: pd.DataFrame, manifests: list[dict], run_dirs: list[str],
                      n_boot: int = 1000, ranked: Optional[dict] = None) -> dict:
    """The leaderboard dict (see module docstring) from the summary table, store rows, manifests and the
    ranked board (``sambench.analysis.ranking.build_board``), written under ``board`` (None → null)."""
    results: dict = {}
    for _, r in summary.iterrows():
        cell = {"miou": r["miou"], "miou_ci": [r["miou_lo"], r["miou_hi"]], "mbiou": r["mbiou"],
                "mbiou_ci": [r["mbiou_lo"], r["mbiou_hi"]], "stability_pairwise": r["stability_pairwise"],
                "stability_union": r["stability_union"], "n": int(r["n"]), "failed": int(r["failed"]),
                "level_value": None if pd.isna(r["level_value"]) else float(r["level_value"])}
        results.setdefault(r["model"], {}).setdefault(r["dataset"], {}).setdefault(r["protocol"], {})[r["level"]] = cell

    merged, conflicts = merge_manifests(manifests, [str(r) for r in run_dirs])
    protocols, datasets, models = merged["protocols"], merged["datasets"], merged["models"]
    runs = [{"run_dir": str(run), **{k: man[k] for k in ("sambench_version", "git_commit", "created", "seed",
                                                         "libraries", "counters") if k in man}}
            for run, man in zip(run_dirs, manifests)]
    versions = {}
    for name, g in df.groupby("protocol"):
        vs = sorted({int(v) for v in g["protocol_version"].dropna()})
        versions[name] = vs[0] if len(vs) == 1 else vs
    for name, entry in protocols.items():
        if isinstance(entry, dict) and "version" in entry and name not in versions:
            versions[name] = entry["version"]
    board = {
        "format": LEADERBOARD_FORMAT,
        "results": results,
        "versions": versions,
        "protocols": protocols,
        "datasets": datasets,
        "models": models,
        "config": {"units": "fraction of 1 (tables print percent)",
                   "aggregation": "mean over draws per object, then over objects; ALL = mean of dataset means",
                   "ci": f"percentile bootstrap over objects, {n_boot} resamples, 95%",
                   "seeds": sorted({int(m["seed"]) for m in manifests if isinstance(m.get("seed"), int)})},
        "rows": {"ok": int((df["status"] == "ok").sum()), "failed": int((df["status"] == "failed").sum())},
        "sambench_version": sambench.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run_dirs": [str(r) for r in run_dirs],
        "runs": runs,
        "conflicts": conflicts,
        "board": ranked,
    }
    return _clean(board)
