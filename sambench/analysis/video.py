"""Numbers of video runs: J, F and J&F per level (the video summary) and J over time, from stored rows and tracks.

Conventions (docs/video.md "Reports" says the same):

* The unit of averaging is the **track** (one object of one video), as DAVIS averages over objects: a track's
  J (F, J&F, recall, decay) in a cell is the mean over its ok draws of the per-draw track scores stored in the
  ``tracks`` table (each the mean over the scored frames: the prompt frame and unannotated frames excluded);
  a cell's value is the mean over its tracks. Values are in percent (× 100), as the image summary's mIoU.
* ``n`` counts the tracks with at least one ok row, ``failed`` the cell's failed rows (each failed
  propagation is one). A failed row is not averaged in (the image summary's rule); ``compare --metric jf``
  counts it as 0.
* **J over time**: per (model, protocol, level, corruption, severity) and frame offset from the prompt frame
  (``t - prompt_frame``: negative offsets are the frames before it under ``prompt_frame: middle``/``largest``),
  the mean per-frame J over every stored propagation (tracks and draws alike) that scored that offset.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from sambench.store import KEY_COLUMNS, LEVEL_COLUMNS, OBJECT_COLUMNS

#: The video summary's columns (``video_summary.csv``; an interface, like ``summary.csv``'s).
VIDEO_SUMMARY_COLUMNS = ["dataset", "model", "protocol", "level", "level_value", "corruption", "severity", "n",
                         "failed", "J", "F", "JF", "J_recall", "F_recall", "J_decay", "F_decay"]
#: tracks column → video summary column (and :func:`sambench.metrics.video.track_scores` key).
TRACK_STATS = {"j_mean": "J", "f_mean": "F", "jf": "JF", "j_recall": "J_recall", "f_recall": "F_recall",
               "j_decay": "J_decay", "f_decay": "F_decay"}


def video_protocols(manifests: list[dict]) -> set[str]:
    """Names of the protocols the manifests record as video protocols (identity ``video: true``)."""
    return {name for man in manifests for name, p in (man.get("protocols") or {}).items()
            if isinstance(p, dict) and (p.get("identity") or {}).get("video")}


def with_tracks(rows: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    """The rows of video protocols (those with a tracks entry, or failed rows of a protocol that has some) with
    their track scores joined on the result key."""
    if tracks is None or tracks.empty:
        return pd.DataFrame(columns=list(rows.columns) + list(TRACK_STATS))
    video = set(tracks["protocol"])
    sub = rows[rows["protocol"].isin(video)]
    return sub.merge(tracks[list(KEY_COLUMNS) + list(TRACK_STATS)], on=list(KEY_COLUMNS), how="left")


def per_track(rows: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, video, object) with ok draws: the mean of each track score over them."""
    df = with_tracks(rows, tracks)
    ok = df[(df["status"] == "ok") & df["j_mean"].notna()]
    if ok.empty:
        return pd.DataFrame(columns=list(OBJECT_COLUMNS) + ["level_value", "draws"] + list(TRACK_STATS))
    return ok.groupby(list(OBJECT_COLUMNS), sort=True).agg(
        level_value=("level_value", "first"), draws=("draw", "count"),
        **{c: (c, "mean") for c in TRACK_STATS}).reset_index()


def video_summary(rows: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    """The video summary table (:data:`VIDEO_SUMMARY_COLUMNS`, module docstring), sorted by its cell."""
    df = with_tracks(rows, tracks)
    if df.empty:
        return pd.DataFrame(columns=VIDEO_SUMMARY_COLUMNS)
    cells = list(LEVEL_COLUMNS)
    failed = df[(df["status"] == "failed") & (df["level"] != "")].groupby(cells).size().rename("failed")
    tr = per_track(rows, tracks)
    agg = tr.groupby(cells, sort=True).agg(level_value=("level_value", "first"), n=("image_id", "count"),
                                            **{c: (c, "mean") for c in TRACK_STATS})
    out = agg.join(failed, how="outer").reset_index()
    out["n"] = out["n"].fillna(0).astype(int)
    out["failed"] = out["failed"].fillna(0).astype(int)
    for c, name in TRACK_STATS.items():
        out[name] = 100.0 * out.pop(c)
    return out[VIDEO_SUMMARY_COLUMNS].sort_values(["dataset", "protocol", "level_value", "level", "model",
                                                   "corruption", "severity"], na_position="last").reset_index(drop=True)


def format_video_table(table: pd.DataFrame) -> str:
    """The video summary as printed at the end of a run: J, F and J&F (percent, one decimal) per cell."""
    if table.empty:
        return "(no video rows)"
    shown = table.copy()
    corrupted = bool((shown["severity"].astype(int) != 0).any())
    cols = ["dataset", "model", "protocol", "level"] + (["corruption", "severity"] if corrupted else []) + \
        ["n", "failed", "J", "F", "JF", "J_recall", "J_decay"]
    for c in ("J", "F", "JF", "J_recall", "J_decay"):
        shown[c] = shown[c].map(lambda v: "-" if pd.isna(v) else f"{v:.1f}")
    return shown[cols].rename(columns={"JF": "J&F"}).to_string(index=False)


#: The video headline's columns (leaderboard.json ``video_headline``, docs/video.md "Reports").
VIDEO_HEADLINE_COLUMNS = ["model", "dataset", "protocol", "first_level", "jf_first", "jf_mean", "levels", "failed"]


def video_headline(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, protocol) on clean frames, from :func:`video_summary`'s table: ``jf_first`` = the J&F of
    the protocol's first level in level order (the GT mask, the GT box of a box-noise card, 1 point, 1 click),
    ``jf_mean`` = the mean J&F over its levels (each level the mean over tracks), ``levels`` their number and
    ``failed`` the failed rows; sorted by protocol, then ``jf_mean`` from best."""
    clean = table[table["severity"].astype(int) == 0]
    if clean.empty:
        return pd.DataFrame(columns=VIDEO_HEADLINE_COLUMNS)
    out = []
    for (model, dataset, protocol), g in clean.groupby(["model", "dataset", "protocol"], sort=True):
        g = g.sort_values(["level_value", "level"], na_position="first")
        out.append({"model": model, "dataset": dataset, "protocol": protocol, "first_level": str(g["level"].iloc[0]),
                    "jf_first": float(g["JF"].iloc[0]), "jf_mean": float(g["JF"].mean()), "levels": int(len(g)),
                    "failed": int(g["failed"].sum())})
    df = pd.DataFrame(out, columns=VIDEO_HEADLINE_COLUMNS)
    return df.sort_values(["dataset", "protocol", "jf_mean", "model"], ascending=[True, True, False, True],
                          na_position="last").reset_index(drop=True)


def j_over_time(tracks: pd.DataFrame) -> pd.DataFrame:
    """Mean per-frame J by frame offset from the prompt frame (module docstring): columns model, protocol, level,
    corruption, severity, offset, J (percent), n (propagations that scored that offset)."""
    cols = ["model", "protocol", "level", "corruption", "severity", "offset", "J", "n"]
    if tracks is None or tracks.empty:
        return pd.DataFrame(columns=cols)
    parts = []
    for rec in tracks[["model", "protocol", "level", "corruption", "severity", "prompt_frame", "frames",
                       "j_frames"]].itertuples(index=False):
        frames, j = json.loads(rec.frames), json.loads(rec.j_frames)
        parts.append(pd.DataFrame({"model": rec.model, "protocol": rec.protocol, "level": rec.level,
                                   "corruption": rec.corruption, "severity": rec.severity,
                                   "offset": np.asarray(frames, dtype=int) - int(rec.prompt_frame),
                                   "j": np.asarray(j, dtype=float)}))
    df = pd.concat(parts, ignore_index=True)
    out = df.groupby(cols[:6], sort=True).agg(J=("j", "mean"), n=("j", "count")).reset_index()
    out["J"] = 100.0 * out["J"]
    return out[cols]


__all__ = ["TRACK_STATS", "VIDEO_HEADLINE_COLUMNS", "VIDEO_SUMMARY_COLUMNS", "format_video_table", "j_over_time",
           "per_track", "video_headline", "video_protocols", "video_summary", "with_tracks"]
