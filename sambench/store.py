"""The results store: one SQLite file and one manifest JSON per run directory.

``RUN_DIR/results.sqlite`` holds one row per (model, dataset, image_id, object_id, protocol, level, draw)
— the primary key — with the prompt (JSON + sha256), IoU, boundary IoU, the model's score, the
predicted mask as COCO RLE, per-prompt extras, and a status (``ok`` or ``failed`` with its error).
A failure that concerns a whole image (unreadable file, mask of the wrong size, ...) is one row with
``object_id = ''``, ``level = ''`` and ``draw = -1`` for each model and protocol it blocked.

Rows of one image are written in one transaction, so a run killed at any point (even SIGKILL) leaves
only whole images behind; re-running the same command skips every key already present, and since
prompts are keyed and models deterministic, the resumed run ends with exactly the rows of an
uninterrupted one.

The ``info`` table records, before the first row, the identity of every model (weights, options),
protocol (version, seed, decoding, level settings) and dataset (content hash) the store holds results of
(:meth:`Store.claim_identity`); a resume with a different one is refused.

``RUN_DIR/manifest.json`` describes the run (written by ``sambench.runner`` at the end of each run). Reports, ``compare`` and
merges read only these two files.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from sambench.types import SambenchError

DB_NAME = "results.sqlite"
MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1

KEY_COLUMNS = ("model", "dataset", "image_id", "object_id", "protocol", "level", "draw")

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    image_id TEXT NOT NULL,
    object_id TEXT NOT NULL,
    protocol TEXT NOT NULL,
    level TEXT NOT NULL,
    draw INTEGER NOT NULL,
    protocol_version INTEGER NOT NULL,
    level_value REAL,
    prompt TEXT,
    prompt_hash TEXT,
    iou REAL,
    biou REAL,
    score REAL,
    gt_area INTEGER,
    pred_area INTEGER,
    mask_rle TEXT,
    extras TEXT,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    PRIMARY KEY (model, dataset, image_id, object_id, protocol, level, draw)
);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

COLUMNS = ("model", "dataset", "image_id", "object_id", "protocol", "level", "draw", "protocol_version",
           "level_value", "prompt", "prompt_hash", "iou", "biou", "score", "gt_area", "pred_area", "mask_rle",
           "extras", "status", "error")


@dataclass
class Row:
    """One result row; see the module docstring for the meaning of each field."""

    model: str
    dataset: str
    image_id: str
    object_id: str
    protocol: str
    level: str
    draw: int
    protocol_version: int
    level_value: Optional[float] = None
    prompt: Optional[str] = None
    prompt_hash: Optional[str] = None
    iou: Optional[float] = None
    biou: Optional[float] = None
    score: Optional[float] = None
    gt_area: Optional[int] = None
    pred_area: Optional[int] = None
    mask_rle: Optional[str] = None
    extras: Optional[str] = None
    status: str = "ok"
    error: Optional[str] = None

    def values(self) -> tuple:
        return tuple(getattr(self, c) for c in COLUMNS)


class Store:
    """The SQLite results table of one run directory."""

    def __init__(self, run_dir: str | Path, create: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        if not self.path.exists() and not create:
            raise SambenchError(f"{self.run_dir}: not a sambench run directory (no {DB_NAME})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(self.path))
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(SCHEMA)
            self.conn.execute("INSERT OR IGNORE INTO info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.conn.commit()
        except sqlite3.DatabaseError as exc:
            raise SambenchError(f"{self.path}: not a usable sambench results database ({exc})") from None
        found = self.conn.execute("SELECT value FROM info WHERE key='schema_version'").fetchone()[0]
        if int(found) != SCHEMA_VERSION:
            raise SambenchError(f"{self.path}: results schema version {found}, this sambench reads {SCHEMA_VERSION}")

    def claim_identity(self, kind: str, name: str, identity: dict, checked: tuple) -> None:
        """Record what ``kind`` ``name`` (a model, protocol or dataset) is, or refuse if it changed.

        Stored in the ``info`` table *before* any row is written, in the same database, so even a run
        killed before its manifest exists cannot be resumed with other weights, seed, decoding or data.
        ``checked`` are the fields that must match; a protocol's ``settings`` (level label → setting)
        must agree on every label both know, and new labels are added.
        """
        key = f"{kind}:{name}"
        row = self.conn.execute("SELECT value FROM info WHERE key=?", (key,)).fetchone()
        merged = dict(identity)
        if row is not None:
            prev = json.loads(row[0])
            for f in checked:
                if f in prev and prev.get(f) != identity.get(f):
                    raise SambenchError(f"{self.run_dir}: holds results of {kind} '{name}' with {f} {prev[f]!r}, "
                                        f"this run has {identity.get(f)!r}: use another --out")
            if "settings" in prev:
                for label, setting in identity.get("settings", {}).items():
                    if label in prev["settings"] and prev["settings"][label] != setting:
                        raise SambenchError(f"{self.run_dir}: holds results of {kind} '{name}' level '{label}' as "
                                            f"{prev['settings'][label]}, this run has {setting}: use another --out")
                merged["settings"] = {**prev["settings"], **identity.get("settings", {})}
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO info VALUES (?, ?)", (key, json.dumps(merged, sort_keys=True)))

    def delete_failed(self, models: Iterable[str]) -> int:
        """Remove the failed rows of ``models`` so that the next run retries them. Returns rows removed."""
        models = list(models)
        with self.conn:
            cur = self.conn.execute(f"DELETE FROM results WHERE status='failed' AND model IN "
                                    f"({', '.join('?' * len(models))})", models)
            return cur.rowcount

    def done_keys(self, model: str, dataset: str, image_id: str) -> set[tuple]:
        """(object_id, protocol, level, draw) of every row already stored for this model and image."""
        cur = self.conn.execute(
            "SELECT object_id, protocol, level, draw FROM results WHERE model=? AND dataset=? AND image_id=?",
            (model, dataset, image_id))
        return {tuple(r) for r in cur.fetchall()}

    def write(self, rows: Iterable[Row]) -> int:
        """Insert rows in ONE transaction; keys already present are left unchanged. Returns rows added."""
        values = [r.values() for r in rows]
        with self.conn:
            before = self.conn.total_changes
            self.conn.executemany(f"INSERT OR IGNORE INTO results ({', '.join(COLUMNS)}) VALUES "
                                  f"({', '.join('?' * len(COLUMNS))})", values)
            return self.conn.total_changes - before

    def frame(self, with_masks: bool = True) -> pd.DataFrame:
        """All rows as a DataFrame, sorted by key."""
        cols = [c for c in COLUMNS if with_masks or c not in ("mask_rle", "extras")]
        df = pd.read_sql_query(f"SELECT {', '.join(cols)} FROM results ORDER BY {', '.join(KEY_COLUMNS)}", self.conn)
        return df

    def count(self) -> dict:
        cur = self.conn.execute("SELECT status, COUNT(*) FROM results GROUP BY status")
        d = {"ok": 0, "failed": 0}
        d.update({k: v for k, v in cur.fetchall()})
        return d

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- manifest


def read_manifest(run_dir: str | Path) -> dict:
    path = Path(run_dir) / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SambenchError(f"{path}: corrupt manifest JSON ({exc.msg} at line {exc.lineno})") from None


def write_manifest(run_dir: str | Path, manifest: dict) -> Path:
    """Write atomically (temp file + rename) so a kill never leaves half a manifest."""
    path = Path(run_dir) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_runs(run_dirs: Iterable[str | Path], with_masks: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """Rows of several run directories concatenated (a ``run`` column names the source) and their manifests.

    The same key in two runs is an error unless both rows are identical in prompt and mask: merging
    must never pick one result silently.
    """
    frames, manifests = [], []
    for d in run_dirs:
        with Store(d, create=False) as st:
            df = st.frame(with_masks=with_masks)
        df.insert(0, "run", str(d))
        frames.append(df)
        manifests.append(read_manifest(d))
    if not frames:
        raise SambenchError("no run directory given")
    df = pd.concat(frames, ignore_index=True)
    dup = df.duplicated(list(KEY_COLUMNS), keep=False)
    if dup.any():
        sub = df[dup]
        check = ["prompt_hash", "iou"] + (["mask_rle"] if with_masks else [])
        conflicting = sub.groupby(list(KEY_COLUMNS))[check].nunique(dropna=False).max(axis=1) > 1
        if conflicting.any():
            key = conflicting[conflicting].index[0]
            raise SambenchError(f"runs disagree on result {dict(zip(KEY_COLUMNS, key))}: merge refused "
                                f"(the same key has different prompts or masks in {', '.join(sub['run'].unique())})")
        df = df.drop_duplicates(list(KEY_COLUMNS), keep="first").reset_index(drop=True)
    return df, manifests
