"""The ranked board: headline scores per model over comparable runs, ranks, paired tests, provenance.

The ``board`` section of every ``leaderboard.json`` — the one ``sambench report`` writes for its runs and
the one ``sambench leaderboard`` writes for many — is computed here, from merged rows and manifests
(:class:`BoardInput`; finding and loading run directories is ``sambench.leaderboard.board``). Steps
(docs/reports.md, "sambench leaderboard", says the same):

1. **Comparable runs** (:func:`check_runs`). Every pair of runs must be comparable —
   ``sambench.analysis.compat.find_mismatches``, the check ``compare`` uses, plus equal model signatures
   for a model both runs hold — else the board is refused in one line naming both runs.
2. **Coverage.** Within each (dataset, protocol), every model must hold the same result keys (objects,
   levels, draws; an image-level failure stands for the prompts the other models answered on that image):
   a score over other prompts or objects is another number. A model that lacks keys is refused, naming its
   run and the run of a model that has them.
3. **Scores** (``sambench.analysis.scores``): one column per (headline score, protocol) that applies,
   cross-dataset figure = plain mean of dataset values, bootstrap CI over objects.
   Video protocols (their manifest identity says ``video``) are scored by J&F: the object table's ``jf`` is
   the tracks table's J&F of each row (``sambench.analysis.scores``, "Video protocols").
4. **Rank** by ``rank_by`` (default ``degraded_miou`` of the first protocol by name that has one, else
   ``degraded_jf`` likewise, else the first column): models
   ordered by the value (best first); a model's rank is 1 + the number of models with a strictly better
   value *as printed* (one decimal in percent, two for ratios), so models that print the same share a rank
   and are listed as tied; models without the score come last, unranked. Each ranked model is tested
   against the next-ranked one: paired bootstrap CI of the difference over their common objects and
   ``compare``'s Wilcoxon signed-rank p-value; ``separable`` = the CI excludes 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from sambench.analysis.compat import expand_image_failures, find_mismatches
from sambench.analysis.scores import SCORES, HeadlineScore, ScoreInput, aggregate, paired
from sambench.analysis.settings import settings_info
from sambench.analysis.summary import per_object
from sambench.analysis.video import video_protocols
from sambench.config import REPO_ROOT, load_model_card
from sambench.store import KEY_COLUMNS, MANIFEST_NAME, OBJECT_COLUMNS, load_tracks
from sambench.types import SambenchError

BOARD_FORMAT = 1
DEFAULT_SCORE = "degraded_miou"
#: The default when no column has :data:`DEFAULT_SCORE` (a board of video protocols only).
DEFAULT_VIDEO_SCORE = "degraded_jf"


class BoardRefused(SambenchError):
    """The runs cannot share a board (different prompts, data, model identities or coverage); exit 2."""


@dataclass
class BoardInput:
    """Merged rows (``run`` column names the source), manifests and run directories of one board."""

    rows: pd.DataFrame
    manifests: list[dict]
    run_dirs: list[Path]
    #: the runs' ``tracks`` tables (per-track J&F of video rows); None: read from ``run_dirs`` when a manifest
    #: names a video protocol (:func:`video_tracks`)
    tracks: Optional[pd.DataFrame] = None

    def __post_init__(self) -> None:
        self.run_dirs = [Path(d) for d in self.run_dirs]
        # The board ranks models on clean images; corrupted rows (docs/corruptions.md) have their own
        # tables and mCE in the report, and mixing them into a protocol's score would change its meaning.
        if "severity" in self.rows.columns:
            self.rows = self.rows[self.rows["severity"] == 0].reset_index(drop=True)


def video_tracks(board: BoardInput) -> Optional[pd.DataFrame]:
    """The board's tracks table (read from its run directories once, when it holds video protocols), else None."""
    if board.tracks is None and video_protocols(board.manifests) and board.run_dirs:
        board.tracks = load_tracks(board.run_dirs)
    return board.tracks


def check_runs(board: BoardInput) -> None:
    """Every pair of runs comparable (``compat.find_mismatches`` with model identities), else refuse."""
    parts = {str(d): board.rows[board.rows["run"] == str(d)] for d in board.run_dirs}
    for i, a in enumerate(board.run_dirs):
        for b, man_b in zip(board.run_dirs[i + 1:], board.manifests[i + 1:]):
            found = find_mismatches(parts[str(a)], board.manifests[i], parts[str(b)], man_b, models=True)
            if found:
                raise BoardRefused(f"runs {a} and {b} cannot share a board: {'; '.join(found.all())}")


def object_table(rows: pd.DataFrame, objects: Optional[pd.DataFrame] = None,
                 tracks: Optional[pd.DataFrame] = None, video: Iterable[str] = ()) -> pd.DataFrame:
    """One row per (dataset, model, protocol, level, image_id, object_id): ``iou`` = mean over draws with
    failed draws as 0, ``stability`` (pairwise, successful draws), ``draws``, ``failed``, ``run``, and ``jf``
    = the mean over draws of the track's J&F from ``tracks`` for the protocols named in ``video`` (failed draws
    0; NaN for image rows). ``objects``: :func:`sambench.analysis.summary.per_object` of these rows (or
    of rows holding them) when the caller has it, so the per-object stability is not computed twice."""
    x = expand_image_failures(rows, rows, by_model=False)
    x = x[x["level"] != ""]
    if tracks is not None and not tracks.empty:
        key = list(KEY_COLUMNS)
        x = x.merge(tracks[key + ["jf"]], on=key, how="left")
    else:
        x = x.assign(jf=np.nan)
    failed = (x["status"] == "failed").to_numpy()
    video = x["protocol"].isin(set(video)).to_numpy()
    x = x.assign(_v=np.where(failed, 0.0, x["iou"].astype(float).fillna(0.0)), _f=failed,
                 _jf=np.where(video & failed, 0.0, x["jf"].astype(float)))
    keys = list(OBJECT_COLUMNS)
    out = x.groupby(keys, sort=True).agg(iou=("_v", "mean"), draws=("draw", "count"), failed=("_f", "sum"),
                                         level_value=("level_value", "first"),
                                         jf=("_jf", "mean")).reset_index()
    ok = rows[rows["status"] == "ok"]
    if len(ok):
        per = per_object(ok) if objects is None else objects
        stab = per[keys + ["stability_pairwise"]].rename(columns={"stability_pairwise": "stability"})
        out = out.merge(stab, on=keys, how="left")
    else:
        out["stability"] = np.nan
    return out


def _runs_of(rows: pd.DataFrame, model: str) -> list[str]:
    return sorted(rows.loc[rows["model"] == model, "run"].unique())


def empty_runs(board: BoardInput) -> list[str]:
    """The run directories of ``board`` that contribute no row to it (no stored row on clean images): they
    would vanish from the board without a word, so the board names them (``empty_runs`` and a note)."""
    if "run" not in board.rows.columns:  # rows not loaded per run (load_runs adds the column): none to name
        return []
    held = set(board.rows["run"].astype(str))
    return [str(d) for d in board.run_dirs if str(d) not in held]


def empty_run_note(run_dir: str) -> str:
    """The one line that says a run is not on the board because it holds no rows."""
    return f"run {run_dir} holds no rows on clean images: nothing of it is on this board"


def check_coverage(rows: pd.DataFrame) -> None:
    """Within each (dataset, protocol), every model holds the same result keys (see the module docstring)."""
    x = expand_image_failures(rows, rows, by_model=False)
    x = x[x["level"] != ""]
    key = ["image_id", "object_id", "level", "draw"]
    for (dataset, protocol), g in x.groupby(["dataset", "protocol"], sort=True):
        sets = {m: set(map(tuple, s[key].astype(str).to_numpy().tolist())) for m, s in g.groupby("model")}
        union = set().union(*sets.values())
        for model, have in sorted(sets.items()):
            missing = union - have
            if not missing:
                continue
            example = sorted(missing)[0]
            other = next(m for m, s in sorted(sets.items()) if example in s)
            raise BoardRefused(
                f"runs {', '.join(_runs_of(rows, model))} and {', '.join(_runs_of(rows, other))} cannot share a board: "
                f"model '{model}' lacks {len(missing)} of the {len(union)} results of {dataset}/{protocol} that "
                f"'{other}' has (e.g. image {example[0]}, object {example[1]}, level {example[2]}, draw {example[3]}); "
                f"run it with the same --levels, --draws and --limit")


# ------------------------------------------------------------------------------------------ scoring


def score_inputs(board: BoardInput, objects: pd.DataFrame) -> dict:
    """``{(model, dataset, protocol): ScoreInput}`` for every combination with rows."""
    settings = settings_info(board.rows, board.manifests)
    by_protocol: dict[str, list] = {}
    for s in settings:
        by_protocol.setdefault(s.protocol, []).append(s)
    raw = {k: g for k, g in board.rows.groupby(["model", "dataset", "protocol"], sort=True)}
    video = video_protocols(board.manifests)
    out = {}
    for (model, dataset, protocol), g in objects.groupby(["model", "dataset", "protocol"], sort=True):
        out[(model, dataset, protocol)] = ScoreInput(model, dataset, protocol, tuple(by_protocol.get(protocol, ())),
                                                     g.reset_index(drop=True), raw.get((model, dataset, protocol)),
                                                     video=protocol in video)
    return out


def column_id(score: str, protocol: str) -> str:
    return f"{score}@{protocol}"


def printed(score: HeadlineScore, value: Optional[float]) -> Optional[float]:
    """The value as the board prints it (ties are judged on this)."""
    if value is None or not np.isfinite(value):
        return None
    return round(100 * value, 1) if score.unit == "percent" else round(value, 2)


def resolve_rank_by(columns: list[dict], rank_by: Optional[str]) -> dict:
    """``SCORE`` (unique among the columns) or ``SCORE@PROTOCOL``; default: ``degraded_miou`` of the first
    protocol by name that has it, else ``degraded_jf`` likewise (video), else the first column."""
    if not columns:
        raise SambenchError("leaderboard: no headline score applies to these runs")
    if rank_by is None:
        for default in (DEFAULT_SCORE, DEFAULT_VIDEO_SCORE):
            for c in columns:
                if c["score"] == default:
                    return c
        return columns[0]
    exact = [c for c in columns if c["id"] == rank_by]
    if exact:
        return exact[0]
    named = [c for c in columns if c["score"] == rank_by]
    if len(named) == 1:
        return named[0]
    known = ", ".join(c["id"] for c in columns)
    if named:
        raise SambenchError(f"--rank-by {rank_by}: several protocols have it, name one ({known})")
    raise SambenchError(f"--rank-by {rank_by}: no such score on this board (known: {known})")


def build_board(board: BoardInput, rank_by: Optional[str] = None, n_boot: int = 1000,
                out_dir: Optional[Path] = None, objects: Optional[pd.DataFrame] = None) -> dict:
    """The ``board`` section of leaderboard.json (columns, ranked entries with provenance, notes);
    ``objects`` as for :func:`object_table`."""
    check_coverage(board.rows)
    objects = object_table(board.rows, objects, video_tracks(board), video_protocols(board.manifests))
    models = sorted(board.rows["model"].unique())
    table = _score_table(score_inputs(board, objects), objects, models, n_boot)
    rank_col = resolve_rank_by(table.columns, rank_by)
    entries = _rank(models, rank_col, SCORES[rank_col["score"]], table.values)
    _test_neighbours(entries, rank_col, table, n_boot)
    failed = objects.groupby("model")["failed"].sum()
    for e in entries:
        m = e["model"]
        e["scores"] = {c["id"]: table.values[(c["id"], m)] for c in table.columns if (c["id"], m) in table.values}
        e["failed_rows"] = int(failed.get(m, 0))
        e["provenance"] = provenance(board, m, out_dir)
    ties = [e for e in entries if e["tie"]]
    if ties:
        table.notes.append(f"tied (same printed {rank_col['title']}): "
                           + ", ".join(f"{e['model']} (rank {e['rank']})" for e in ties))
    empty = empty_runs(board)
    table.notes.extend(empty_run_note(d) for d in empty)
    return {"format": BOARD_FORMAT, "rank_by": rank_col["id"], "columns": table.columns, "entries": entries,
            "empty_runs": empty,
            "notes": list(dict.fromkeys(table.notes)),
            "ci": f"stratified percentile bootstrap over objects, {n_boot} resamples, 95%",
            "failures": "a failed draw scores IoU 0 (J&F 0 on a video protocol); an image-level failure stands for "
                        "every prompt the other models answered on that image"}


@dataclass
class _ScoreTable:
    """Every (column, model) cell: ``values`` (aggregated), ``per_object`` (per dataset, for paired tests)."""

    columns: list
    values: dict
    per_object: dict
    notes: list


def _score_table(inputs: dict, objects: pd.DataFrame, models: list[str], n_boot: int) -> _ScoreTable:
    """One column per (registered score, protocol) that applies to some model; each model's value over
    every dataset the board holds for the protocol (none, with a note, when it lacks one)."""
    table = _ScoreTable([], {}, {}, [])
    for protocol in sorted(objects["protocol"].unique()):
        datasets = sorted(objects.loc[objects["protocol"] == protocol, "dataset"].unique())
        for score in SCORES.values():
            per_model = {}
            for model in models:
                vals = {d: score.values(inputs[(model, d, protocol)]) for d in datasets
                        if (model, d, protocol) in inputs and inputs[(model, d, protocol)].video == score.video}
                vals = {d: v for d, v in vals.items() if v is not None}
                if vals:
                    per_model[model] = vals
            if not per_model:
                continue
            cid = column_id(score.name, protocol)
            table.columns.append({"id": cid, "score": score.name, "protocol": protocol, "title": score.title,
                                  "definition": score.definition, "unit": score.unit,
                                  "higher_is_better": score.higher_is_better, "datasets": datasets})
            for model, vals in per_model.items():
                table.per_object[(cid, model)] = vals
                if set(vals) != set(datasets):
                    table.notes.append(f"{model}: no {score.title} on {protocol} across datasets (it covers "
                                       f"{len(vals)} of {len(datasets)}: {', '.join(sorted(vals))})")
                    table.values[(cid, model)] = {"value": None, "ci": [None, None],
                                                  "datasets": {d: None for d in vals}, "n": 0}
                    continue
                # keyed by the score alone: every model (same objects, by coverage) is resampled alike, and
                # the same per-object values give the same CI
                table.values[(cid, model)] = aggregate(score, vals, key=f"leaderboard|{score.name}", n_boot=n_boot)
    return table


def _test_neighbours(entries: list[dict], col: dict, table: _ScoreTable, n_boot: int) -> None:
    """``vs_next`` of every ranked entry: the paired test against the next-ranked model."""
    score = SCORES[col["score"]]
    ranked = [e for e in entries if e["rank"] is not None]
    for a, b in zip(ranked, ranked[1:]):
        t = paired(score, table.per_object[(col["id"], a["model"])], table.per_object[(col["id"], b["model"])],
                   key=f"leaderboard-paired|{score.name}|{a['model']}|{b['model']}", n_boot=n_boot)
        lo, hi = t["ci"]
        a["vs_next"] = {"model": b["model"], **t, "separable": bool(np.isfinite(lo) and (lo > 0 or hi < 0))}


def _rank(models: list[str], col: dict, score: HeadlineScore, values: dict) -> list[dict]:
    sign = 1.0 if score.higher_is_better else -1.0
    have = [(m, printed(score, values[(col["id"], m)]["value"])) for m in models if (col["id"], m) in values]
    have = [(m, p) for m, p in have if p is not None]
    full = {m: values[(col["id"], m)]["value"] for m, _ in have}
    have.sort(key=lambda mp: (-sign * mp[1], -sign * full[mp[0]], mp[0]))
    entries = []
    for m, p in have:
        rank = 1 + sum(1 for _, q in have if sign * q > sign * p)
        tie = sum(1 for _, q in have if q == p) > 1
        entries.append({"model": m, "rank": rank, "tie": tie, "vs_next": None})
    for m in models:
        if m not in full:
            entries.append({"model": m, "rank": None, "tie": False, "vs_next": None})
    return entries


# ------------------------------------------------------------------------------------------ provenance


def _relative(path: Path, out_dir: Optional[Path]) -> str:
    """``path`` as a link from ``out_dir`` (relative when both are local paths), else as given."""
    if out_dir is None:
        return str(path)
    try:
        return os.path.relpath(Path(path).resolve(), Path(out_dir).resolve()).replace(os.sep, "/")
    except ValueError:  # another drive on Windows
        return str(Path(path).resolve())


def card_info(name: str) -> dict:
    """``paper``, ``card`` path and ``checkpoint_url`` of a model card when this sambench knows the card."""
    try:
        card = load_model_card(name)
    except SambenchError:
        return {}
    info: dict = {"paper": card.paper}
    if card.path is not None:
        p = Path(card.path).resolve()
        info["card_path"] = p
        info["card"] = str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)
    if card.checkpoint is not None:
        info["checkpoint_url"] = card.checkpoint.url
        info["checkpoint_file"] = card.checkpoint.file
    return info


def provenance(board: BoardInput, model: str, out_dir: Optional[Path] = None) -> dict:
    """Where an entry comes from: runs (with their manifests), signature and weights hash, protocol versions,
    dataset hashes, sambench versions, date, and the card's paper/URL."""
    rows = board.rows[board.rows["model"] == model]
    run_names = set(rows["run"].unique())
    runs, sig, protocols, datasets, dates, versions = [], {}, {}, {}, [], []
    for d, man in zip(board.run_dirs, board.manifests):
        if str(d) not in run_names and model not in (man.get("models") or {}):
            continue
        runs.append({"run_dir": str(d), "manifest": _relative(d / MANIFEST_NAME, out_dir),
                     **{k: man[k] for k in ("sambench_version", "git_commit", "created", "updated") if k in man}})
        sig = sig or dict((man.get("models") or {}).get(model) or {})
        for p in rows.loc[rows["run"] == str(d), "protocol"].unique():
            entry = (man.get("protocols") or {}).get(p) or {}
            if "version" in entry:
                protocols.setdefault(p, entry["version"])
        for ds in rows.loc[rows["run"] == str(d), "dataset"].unique():
            entry = (man.get("datasets") or {}).get(ds) or {}
            if "content_hash" in entry:
                datasets.setdefault(ds, entry["content_hash"])
        dates.extend(man[k] for k in ("updated", "created") if k in man)
        if "sambench_version" in man:
            versions.append(man["sambench_version"])
    for p, g in rows.groupby("protocol"):
        if p not in protocols and g["protocol_version"].notna().any():
            protocols[p] = int(g["protocol_version"].dropna().iloc[0])
    card = card_info(str(sig.get("model") or model))
    out = {"runs": runs, "signature": sig, "weights_sha256": sig.get("weights_sha256"),
           "protocol_versions": protocols, "dataset_hashes": datasets,
           "sambench_versions": sorted(set(versions)), "date": max(dates) if dates else None,
           "paper": sig.get("paper") or card.get("paper"), "card": card.get("card"),
           "checkpoint_url": card.get("checkpoint_url")}
    if "card_path" in card:
        out["card_link"] = _relative(card["card_path"], out_dir)
    for k in ("plugin_id",):
        if sig.get(k):
            out[k] = sig[k]
    return out

