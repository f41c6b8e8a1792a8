"""Reading runs back: the rows and manifest of one run directory, and several runs merged into one frame.

Reports, ``compare`` and the leaderboard read only these two files of each run: the results store
(:class:`~sambench.store.results.Store`, opened read-only) and the manifest, completed from the store's
``info`` table (:func:`run_manifest`). :func:`load_runs` concatenates runs and refuses two different
results under one key (:func:`merge_rows`); :func:`load_objects` reads the per-object stability the runs
stored with their rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from sambench.store.manifest import read_manifest
from sambench.store.results import Store
from sambench.store.table import KEY_COLUMNS, OBJECT_KEY_COLUMNS
from sambench.types import SambenchError


def read_rows(run_dir: str | Path, with_masks: bool = True) -> pd.DataFrame:
    """The rows of one run directory (sorted by key)."""
    with Store(run_dir, create=False) as st:
        return st.frame(with_masks=with_masks)


def run_manifest(run_dir: str | Path) -> dict:
    """The run's manifest, completed from the store's ``info`` table: a run killed before it wrote
    ``manifest.json`` (or whose manifest lacks an entry) still states its dataset content hashes and
    protocol versions/decoding, so ``compare`` can check them."""
    man = read_manifest(run_dir)
    with Store(run_dir, create=False) as st:
        ids = st.identities()
    datasets = man.setdefault("datasets", {})
    for name, ident in ids.get("dataset", {}).items():
        entry = datasets.setdefault(name, {})
        if isinstance(entry, dict) and "content_hash" in ident:
            entry.setdefault("content_hash", ident["content_hash"])
    protocols = man.setdefault("protocols", {})
    for name, ident in ids.get("protocol", {}).items():
        entry = protocols.setdefault(name, {})
        if isinstance(entry, dict):
            entry.setdefault("version", ident.get("version"))
            entry.setdefault("identity", {k: ident[k] for k in ("mask_selection", "preprocessing", "seed") if k in ident})
    return man


def load_runs(run_dirs: Iterable[str | Path], with_masks: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """Rows of several run directories concatenated (a ``run`` column names the source) and their manifests.

    The same key in two runs is an error unless both rows are identical in prompt and mask: merging
    must never pick one result silently.
    """
    frames, manifests = [], []
    for d in run_dirs:
        df, (man,) = as_loaded(d, read_rows(d, with_masks=with_masks), run_manifest(d))
        frames.append(df)
        manifests.append(man)
    if not frames:
        raise SambenchError("no run directory given")
    return merge_rows(frames), manifests


def load_objects(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """The ``objects`` tables of several run directories (:meth:`Store.objects`), one row per group and
    ``draws`` (shards hold disjoint images; a group two runs both hold with the same ``draws`` is kept once).
    Which entries hold for the merged rows is for the reader to check: ``draws`` must equal the group's ok
    rows (:func:`sambench.analysis.summary.per_object`)."""
    frames = []
    for d in run_dirs:
        with Store(d, create=False) as st:
            frames.append(st.objects())
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return df.drop_duplicates(list(OBJECT_KEY_COLUMNS) + ["draws"], keep="first").reset_index(drop=True)


def load_tracks(run_dirs: Iterable[str | Path], with_masks: bool = False) -> pd.DataFrame:
    """The ``tracks`` tables (per-frame J/F of video rows, :meth:`Store.tracks`) of several run directories, one
    entry per result key (shards hold disjoint videos; an entry two runs both hold is kept once)."""
    frames = []
    for d in run_dirs:
        with Store(d, create=False) as st:
            frames.append(st.tracks(with_masks=with_masks))
    if not frames:
        raise SambenchError("no run directory given")
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return df.drop_duplicates(list(KEY_COLUMNS), keep="first").reset_index(drop=True)


def as_loaded(run_dir: str | Path, rows: pd.DataFrame, manifest: dict) -> tuple[pd.DataFrame, list[dict]]:
    """What :func:`load_runs` returns for ``[run_dir]``, from its rows and manifest already in memory."""
    df = rows.copy()
    df.insert(0, "run", str(run_dir))
    return df, [manifest]


def merge_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate the rows of several runs (each with a ``run`` column); identical duplicates kept once,
    different results under one key refused."""
    df = pd.concat(frames, ignore_index=True)
    key = list(KEY_COLUMNS)
    dup = df.duplicated(key, keep=False)
    if dup.any():
        sub = df[dup]
        check = ["prompt_hash", "iou"] + (["mask_rle"] if "mask_rle" in df.columns else [])
        conflicting = sub.groupby(key)[check].nunique(dropna=False).max(axis=1) > 1
        if conflicting.any():
            first = conflicting[conflicting].index[0]
            raise SambenchError(f"runs disagree on result {dict(zip(KEY_COLUMNS, first))}: merge refused "
                                f"(the same key has different prompts or masks in {', '.join(sub['run'].unique())})")
        df = df.drop_duplicates(key, keep="first").reset_index(drop=True)
    return df
