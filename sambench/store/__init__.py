"""The results store: one SQLite file and one manifest JSON per run directory. It owns both formats.

``RUN_DIR/results.sqlite`` holds one :class:`Row` per result key :data:`KEY_COLUMNS` = (model, dataset,
image_id, object_id, protocol, level, draw) with the prompt (JSON + sha256), IoU, boundary IoU, the
model's score, the predicted mask as COCO RLE, per-prompt extras, and a status (``ok`` or ``failed``
with its error). A failure that concerns a whole image (unreadable file, mask of the wrong size, ...) is
one row with ``object_id = ''``, ``level = ''`` and ``draw = -1`` for each model and protocol it blocked.
An annotated object that cannot be used (a COCO segmentation that decodes to nothing) is the same with
its ``object_id`` set, so each lost object is counted while the image's other objects are scored.
The columns are declared once, by :class:`Row`; the table schema, the key and every grouping of rows
(:data:`LEVEL_COLUMNS`, :data:`OBJECT_COLUMNS`, :data:`PROMPT_COLUMNS`) are derived from it, in its order.
Every SQL statement of sambench is in this module.

Rows of one image are written in one transaction, so a run killed at any point (even SIGKILL) leaves
only whole images behind; re-running the same command skips every key already present, and since
prompts are keyed and models deterministic, the resumed run ends with exactly the rows of an
uninterrupted one.

The ``info`` table records, before the first row, the identity of every model (weights, options),
protocol (version, seed, decoding, level settings) and dataset (content hash) the store holds results of
(:meth:`Store.claim_identity`); a resume with a different one is refused (draws and levels may only
grow; a changed dataset names its changed images, which ``--retry-failed`` re-runs). It also records
every ``run`` invocation (argv, counters, status), updated with each image's rows, so a killed run's
counters reach the next manifest. Readers open the store read-only; see docs/runs.md.

``RUN_DIR/manifest.json`` describes the run: :func:`updated_manifest` merges one more invocation into it,
:func:`merge_manifests` merges the manifests of several runs (first wins, disagreements listed).
Reports, ``compare`` and merges read only these two files.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sqlite3
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from sambench.files import atomic_write, ensure_dir
from sambench.types import SambenchError

DB_NAME = "results.sqlite"
MANIFEST_NAME = "manifest.json"
#: 2 added the corruption axis to the key (``corruption``, ``severity``); version-1 stores are read as
#: all clean (``none``, 0) and migrated in place by the first run that writes to them.
SCHEMA_VERSION = 2


def _column(sql: str, key: bool = False, **default) -> object:
    return field(metadata={"sql": sql, "key": key}, **default)


@dataclass
class Row:
    """One result row: the declaration of the results table (column order, SQL types and the key)."""

    model: str = _column("TEXT NOT NULL", key=True)
    dataset: str = _column("TEXT NOT NULL", key=True)
    image_id: str = _column("TEXT NOT NULL", key=True)
    object_id: str = _column("TEXT NOT NULL", key=True)
    protocol: str = _column("TEXT NOT NULL", key=True)
    level: str = _column("TEXT NOT NULL", key=True)
    draw: int = _column("INTEGER NOT NULL", key=True)
    protocol_version: int = _column("INTEGER NOT NULL")
    level_value: Optional[float] = _column("REAL", default=None)
    prompt: Optional[str] = _column("TEXT", default=None)
    prompt_hash: Optional[str] = _column("TEXT", default=None)
    iou: Optional[float] = _column("REAL", default=None)
    biou: Optional[float] = _column("REAL", default=None)
    score: Optional[float] = _column("REAL", default=None)
    gt_area: Optional[int] = _column("INTEGER", default=None)
    pred_area: Optional[int] = _column("INTEGER", default=None)
    mask_rle: Optional[str] = _column("TEXT", default=None)
    extras: Optional[str] = _column("TEXT", default=None)
    status: str = _column("TEXT NOT NULL CHECK (status IN ('ok', 'failed'))", default="ok")
    error: Optional[str] = _column("TEXT", default=None)
    #: The image the prompt was decoded on: ``none``/0 = clean, else a sambench.inputs.corruptions name and 1..5.
    corruption: str = _column("TEXT NOT NULL DEFAULT 'none'", key=True, default="none")
    severity: int = _column("INTEGER NOT NULL DEFAULT 0", key=True, default=0)

    def values(self) -> tuple:
        return tuple(getattr(self, c) for c in COLUMNS)


#: Every column, in table order.
COLUMNS = tuple(f.name for f in fields(Row))
#: The result key, in its one order: (model, dataset, image_id, object_id, protocol, level, draw,
#: corruption, severity).
KEY_COLUMNS = tuple(f.name for f in fields(Row) if f.metadata["key"])
#: A (model, dataset, protocol, level, corruption, severity) cell: what the summary table and ``compare``
#: aggregate over.
LEVEL_COLUMNS = tuple(c for c in KEY_COLUMNS if c not in ("image_id", "object_id", "draw"))
#: One object in one cell: the unit of averaging and of the bootstrap.
OBJECT_COLUMNS = LEVEL_COLUMNS + ("image_id", "object_id")
#: One realised prompt, whatever the model: (dataset, image_id, object_id, protocol, level, draw).
PROMPT_COLUMNS = tuple(c for c in KEY_COLUMNS if c != "model")
#: A row of one (model, dataset, image): what resume compares (:meth:`Store.done_keys`).
IMAGE_ROW_COLUMNS = tuple(c for c in KEY_COLUMNS if c not in ("model", "dataset", "image_id"))

RESULTS_TABLE = ("CREATE TABLE IF NOT EXISTS results (\n    "
                 + ",\n    ".join(f"{f.name} {f.metadata['sql']}" for f in fields(Row))
                 + f",\n    PRIMARY KEY ({', '.join(KEY_COLUMNS)})\n)")
SCHEMA = RESULTS_TABLE + ";\nCREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
#: Columns a store of an older schema version lacks, with the value its rows mean.
ADDED_COLUMNS = {2: {"corruption": "'none'", "severity": "0"}}

#: Manifest fields a resumed run must share with the stored rows, per identity.
MODEL_IDENTITY = ("adapter", "adapter_version", "weights_sha256", "variant", "options", "plugin_id", "plugin_config")
PROTOCOL_IDENTITY = ("version", "seed", "mask_selection", "preprocessing")
DATASET_IDENTITY = ("content_hash",)
CORRUPTION_IDENTITY = ("version", "params", "seed")


class Store:
    """The SQLite results table of one run directory."""

    def __init__(self, run_dir: str | Path, create: bool = True) -> None:
        """Open (``create=True``: create if needed, read-write; a store of an older schema is migrated,
        :meth:`_migrate`) or read (``create=False``: read-only; an older schema is read as it is,
        :data:`ADDED_COLUMNS`).

        A read-only store never writes, not even its ``-wal``/``-shm`` files where it cannot: it opens
        ``mode=ro``, and when even that needs files it cannot create (a WAL-mode database in a read-only
        directory) ``immutable=1``, so ``report`` and ``compare`` work on a run the user may not write.
        Every SQLite error, then or later, is one line naming the file (:func:`database_error`).
        """
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        self.read_only = not create
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise SambenchError(f"{self.run_dir}: is a file, not a run directory")
        if not create:
            if not self.path.exists():
                raise SambenchError(f"{self.run_dir}: not a sambench run directory (no {DB_NAME})")
            self.conn = _open_read_only(self.path)
        else:
            ensure_dir(self.run_dir, "run directory")
            try:
                self.conn = _connect(str(self.path), self.path)
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.executescript(SCHEMA)
                self.conn.execute("INSERT OR IGNORE INTO info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self.conn.commit()
            except sqlite3.DatabaseError as exc:
                raise database_error(self.path, exc) from None
        self.schema_version = _schema_version(self.conn, self.path)
        if self.schema_version < SCHEMA_VERSION and not self.read_only:
            self._migrate()

    def _migrate(self) -> None:
        """Rewrite an older results table under the current schema in ONE transaction: the old rows keep
        every value, the added key columns take the values the old rows mean (:data:`ADDED_COLUMNS`)."""
        old = [r[1] for r in self.conn.execute("PRAGMA table_info(results)")]
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("ALTER TABLE results RENAME TO results_old")
            self.conn.execute(RESULTS_TABLE)
            cols = ", ".join(c for c in old if c in COLUMNS)
            self.conn.execute(f"INSERT INTO results ({cols}) SELECT {cols} FROM results_old")
            self.conn.execute("DROP TABLE results_old")
            self.conn.execute("UPDATE info SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
            self.conn.commit()
        except (sqlite3.DatabaseError, SambenchError) as exc:
            self.conn.rollback()
            raise SambenchError(f"{self.path}: could not migrate results schema {self.schema_version} to "
                                f"{SCHEMA_VERSION} ({exc})") from None
        self.schema_version = SCHEMA_VERSION

    def _select(self, cols: Iterable[str]) -> str:
        """``cols`` as a SELECT list; columns this store's schema predates read as their meaning."""
        missing = {c: v for version, added in ADDED_COLUMNS.items() if version > self.schema_version
                   for c, v in added.items()}
        return ", ".join(f"{missing[c]} AS {c}" if c in missing else c for c in cols)

    def claim_identity(self, what: str, name: str, identity: dict, checked: tuple, grows: tuple = ()) -> dict:
        """Record what ``what`` ``name`` (a model, protocol or dataset) is, or refuse if it changed.

        Stored in the ``info`` table *before* any row is written, in the same database, so even a run
        killed before its manifest exists cannot be resumed with other weights, seed, decoding or data.
        ``checked`` are the fields that must match; a protocol's ``settings`` (level label → setting)
        must agree on every label both know, and new labels are added. ``grows`` are fields a run may
        extend but never shrink — a number (``draws``: not fewer) or a list (``levels``: a superset) —
        because a resume computes the missing rows of every selected image: extending keeps every object
        on the same settings, dropping would leave the objects done before on other settings than those
        done after. Returns the recorded (merged) identity.
        """
        key = f"{what}:{name}"
        row = self.conn.execute("SELECT value FROM info WHERE key=?", (key,)).fetchone()
        merged = dict(identity)
        if row is not None:
            prev = json.loads(row[0])
            for f in grows:
                if f not in prev or f not in identity:
                    continue
                old, new = prev[f], identity[f]
                if isinstance(old, list):
                    lost = [x for x in old if x not in new]
                    if lost:
                        raise SambenchError(f"{self.run_dir}: holds results of {what} '{name}' at {f} {', '.join(map(str, old))}; "
                                            f"this run drops {', '.join(map(str, lost))}: a resume may add {f}, never drop "
                                            f"them (objects would end on different settings): keep them or use another --out")
                    merged[f] = list(old) + [x for x in new if x not in old]
                elif new < old:
                    raise SambenchError(f"{self.run_dir}: holds results of {what} '{name}' with {f} {old}, this run has "
                                        f"{new}: a resume may add {f}, never drop them (objects would end on different "
                                        f"settings): give --{f} {old} or use another --out")
            for f in checked:
                if f in prev and prev.get(f) != identity.get(f):
                    raise SambenchError(f"{self.run_dir}: holds results of {what} '{name}' with {f} {prev[f]!r}, "
                                        f"this run has {identity.get(f)!r}: use another --out")
            if "settings" in prev:
                merged["settings"] = _merge_settings(self.run_dir, what, name, prev["settings"],
                                                     identity.get("settings", {}))
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO info VALUES (?, ?)", (key, json.dumps(merged, sort_keys=True)))
        return merged

    def claim_dataset(self, name: str, content_hash: str, image_hashes: dict[str, str], files, retry: bool) -> list[str]:
        """Record dataset ``name``'s content hash and per-image hashes, or deal with a changed dataset.

        Unchanged: nothing to do. Changed: the images whose hash differs (changed, added or removed) are
        named by their files (``files(image_id)`` → list of paths); without ``retry`` the resume is refused
        with that list, with ``retry`` (``--retry-failed``) every stored row of those images is deleted so
        exactly they run again, and the new hashes are recorded. Returns the ids whose rows were deleted.
        """
        key, images_key = f"dataset:{name}", f"dataset-images:{name}"
        prev = self._info_json(key)
        prev_images = self._info_json(images_key)
        deleted: list[str] = []
        if prev is not None and prev.get("content_hash") != content_hash:
            if prev_images is None:
                raise SambenchError(f"{self.run_dir}: holds results of dataset '{name}' with content hash "
                                    f"{str(prev.get('content_hash'))[:12]}, this run has {content_hash[:12]} (this store "
                                    f"predates per-image hashes, so the changed files are unknown): use another --out")
            stored = {r[0] for r in self.conn.execute("SELECT DISTINCT image_id FROM results WHERE dataset=?", (name,))}
            changed = sorted(i for i in set(prev_images) | set(image_hashes)
                             if prev_images.get(i) != image_hashes.get(i) and (i in stored or i in prev_images))
            if changed and not retry:
                shown = []
                for i in changed[:3]:
                    shown.extend(files(i) if i in image_hashes else [f"{i} (removed)"])
                more = f" and {len(changed) - 3} more image(s)" if len(changed) > 3 else ""
                raise SambenchError(f"{self.run_dir}: dataset '{name}' changed since these results: {len(changed)} "
                                    f"image(s) differ: {', '.join(shown)}{more}; rerun with --retry-failed to re-run "
                                    f"exactly the changed and failed images, or use another --out")
            if changed:
                with self.conn:
                    for i in changed:
                        self.conn.execute("DELETE FROM results WHERE dataset=? AND image_id=?", (name, i))
                deleted = changed
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO info VALUES (?, ?)",
                              (key, json.dumps({"content_hash": content_hash}, sort_keys=True)))
            self.conn.execute("INSERT OR REPLACE INTO info VALUES (?, ?)",
                              (images_key, json.dumps(image_hashes, sort_keys=True)))
        return deleted

    def _info_json(self, key: str) -> Optional[dict]:
        row = self.conn.execute("SELECT value FROM info WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row is not None else None

    def identities(self) -> dict[str, dict[str, dict]]:
        """What :meth:`claim_identity` recorded: ``{"model"|"protocol"|"dataset": {name: identity}}``."""
        out: dict[str, dict[str, dict]] = {}
        for key, value in self.conn.execute("SELECT key, value FROM info WHERE key LIKE '%:%' AND key NOT LIKE "
                                            "'invocation:%'").fetchall():
            kind, _, name = key.partition(":")
            try:
                out.setdefault(kind, {})[name] = json.loads(value)
            except ValueError:
                continue
        return out

    def identity(self, what: str, name: str) -> Optional[dict]:
        """The identity :meth:`claim_identity` recorded for ``what`` ``name`` (None if none was)."""
        row = self.conn.execute("SELECT value FROM info WHERE key=?", (f"{what}:{name}",)).fetchone()
        return None if row is None else json.loads(row[0])

    def delete_failed(self, models: Iterable[str]) -> int:
        """Remove the failed rows of ``models`` so that the next run retries them. Returns rows removed."""
        models = list(models)
        with self.conn:
            cur = self.conn.execute(f"DELETE FROM results WHERE status='failed' AND model IN "
                                    f"({', '.join('?' * len(models))})", models)
            return cur.rowcount

    def done_keys(self, model: str, dataset: str, image_id: str) -> set[tuple]:
        """:data:`IMAGE_ROW_COLUMNS` of every row already stored for this model and image."""
        cur = self.conn.execute(f"SELECT {', '.join(IMAGE_ROW_COLUMNS)} FROM results "
                                f"WHERE model=? AND dataset=? AND image_id=?", (model, dataset, image_id))
        return {tuple(r) for r in cur.fetchall()}

    def write(self, rows: Iterable[Row], invocation: Optional[dict] = None) -> int:
        """Insert rows in ONE transaction; keys already present are left unchanged. Returns rows added.

        ``invocation`` (see :meth:`record_invocation`) is updated in the same transaction, so the counters
        of a run killed at any point match the rows it left.
        """
        values = [r.values() for r in rows]
        with self.conn:
            before = self.conn.total_changes
            self.conn.executemany(f"INSERT OR IGNORE INTO results ({', '.join(COLUMNS)}) VALUES "
                                  f"({', '.join('?' * len(COLUMNS))})", values)
            added = self.conn.total_changes - before
            if invocation is not None:
                self._put_invocation(invocation)
            return added

    def record_invocation(self, invocation: dict) -> None:
        """Store one ``run`` invocation (``id``, ``started``, ``argv``, ``config``, ``status``, ``counters``).

        Written when the run starts and with every image, so argv and counters of a run killed before its
        manifest reach the manifest of the run that resumes it (status ``killed``).
        """
        with self.conn:
            self._put_invocation(invocation)

    def _put_invocation(self, invocation: dict) -> None:
        self.conn.execute("INSERT OR REPLACE INTO info VALUES (?, ?)",
                          (f"invocation:{invocation['id']}", json.dumps(invocation, sort_keys=True)))

    def invocations(self) -> list[dict]:
        """Every recorded invocation, oldest first."""
        out = [json.loads(v) for (v,) in self.conn.execute("SELECT value FROM info WHERE key LIKE 'invocation:%'")]
        return sorted(out, key=lambda d: (d.get("started", ""), d.get("id", "")))

    def frame(self, with_masks: bool = True) -> pd.DataFrame:
        """All rows as a DataFrame, sorted by key."""
        cols = [c for c in COLUMNS if with_masks or c not in ("mask_rle", "extras")]
        return pd.read_sql_query(f"SELECT {self._select(cols)} FROM results ORDER BY {', '.join(KEY_COLUMNS)}",
                                 self.conn)

    def prompt_entries(self) -> dict[tuple[str, str], list[tuple]]:
        """(protocol, dataset) → distinct (image_id, object_id, level, draw, prompt_hash) of the stored prompts:
        what :func:`sambench.inputs.prompts.prompt_set_hash` hashes."""
        cur = self.conn.execute("SELECT DISTINCT protocol, dataset, image_id, object_id, level, draw, prompt_hash "
                                "FROM results WHERE prompt_hash IS NOT NULL")
        groups: dict[tuple[str, str], list[tuple]] = {}
        for protocol, dataset, *entry in cur:
            groups.setdefault((protocol, dataset), []).append(tuple(entry))
        return groups

    def count(self) -> dict:
        cur = self.conn.execute("SELECT status, COUNT(*) FROM results GROUP BY status")
        d = {"ok": 0, "failed": 0}
        d.update({k: v for k, v in cur.fetchall()})
        return d

    def close(self) -> None:
        """Close; a read-write store first folds its write-ahead log back into the database and leaves
        WAL mode, so a finished run directory holds no ``-wal``/``-shm`` files and reads anywhere (also
        ``mode=ro`` in a read-only checkout). Skipped, harmlessly, while another connection has it open."""
        if not self.read_only:
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self.conn.execute("PRAGMA journal_mode=DELETE")
            except SambenchError:
                pass  # busy (a reader) or out of space: WAL stays, which SQLite handles on the next open
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    found = conn.execute("SELECT value FROM info WHERE key='schema_version'").fetchone()
    if found is None or not str(found[0]).isdigit():
        raise SambenchError(f"{path}: not a usable sambench results database (no schema version)")
    version = int(found[0])
    if version > SCHEMA_VERSION:
        raise SambenchError(f"{path}: results schema version {version} is newer than this sambench "
                            f"({SCHEMA_VERSION}): upgrade sambench")
    return version


# ---------------------------------------------------------------------------------- SQLite errors


def database_error(path: Path, exc: BaseException) -> SambenchError:
    """One line for an SQLite error on ``path``: a full disk, a corrupt file, a read-only place."""
    msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    low = msg.lower()
    if "disk is full" in low or _disk_full(path):
        return SambenchError(f"{path}: no space left on device ({msg}); every image written so far is kept: free "
                             f"space and rerun the same command to resume")
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return SambenchError(f"{path}: corrupt results database ({msg}); restore it from a copy or run again "
                             f"into another --out")
    if "readonly" in low or "read-only" in low:
        return SambenchError(f"{path}: read-only: cannot write the results database ({msg})")
    if "unable to open" in low:
        return SambenchError(f"{path}: cannot open the results database ({msg}; check the directory's permissions)")
    return SambenchError(f"{path}: results database error: {msg}")


def _disk_full(path: Path) -> bool:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail == 0


class _Cursor(sqlite3.Cursor):
    """A cursor whose SQLite errors are one-line :class:`SambenchError` s naming the database."""

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except sqlite3.DatabaseError as exc:
            raise database_error(self.connection.db_path, exc) from None

    def execute(self, *args):
        return self._guard(super().execute, *args)

    def executemany(self, *args):
        return self._guard(super().executemany, *args)

    def executescript(self, *args):
        return self._guard(super().executescript, *args)

    def fetchone(self):
        return self._guard(super().fetchone)

    def fetchmany(self, *args):
        return self._guard(super().fetchmany, *args)

    def fetchall(self):
        return self._guard(super().fetchall)

    def __next__(self):
        return self._guard(super().__next__)


class _Connection(sqlite3.Connection):
    """A connection whose statements, commits and cursors turn SQLite errors into one line (any query of
    sambench, pandas' included, goes through it)."""

    db_path: Path

    def cursor(self, factory=_Cursor):
        return super().cursor(factory)

    def execute(self, *args):
        return self.cursor().execute(*args)

    def executemany(self, *args):
        return self.cursor().executemany(*args)

    def executescript(self, *args):
        return self.cursor().executescript(*args)

    def commit(self):
        try:
            return super().commit()
        except sqlite3.DatabaseError as exc:
            raise database_error(self.db_path, exc) from None

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        except sqlite3.DatabaseError as e:
            raise database_error(self.db_path, e) from None


def _connect(target: str, path: Path, uri: bool = False) -> _Connection:
    try:
        conn = sqlite3.connect(target, uri=uri, factory=_Connection)
    except sqlite3.DatabaseError as exc:
        raise database_error(path, exc) from None
    conn.db_path = path
    return conn


def _open_read_only(path: Path) -> _Connection:
    """``mode=ro``; ``immutable=1`` when read-only mode needs files it cannot create (WAL, read-only dir)."""
    base = "file:" + urllib.parse.quote(str(path.resolve()))
    conn = _connect(base + "?mode=ro", path, uri=True)
    try:
        conn.execute("SELECT value FROM info WHERE key='schema_version'").fetchone()
        return conn
    except SambenchError as first:
        conn.close()
        if "corrupt" in str(first):
            raise
    conn = _connect(base + "?immutable=1", path, uri=True)
    conn.execute("SELECT value FROM info WHERE key='schema_version'").fetchone()
    return conn


def _merge_settings(run_dir: Path, what: str, name: str, prev: dict, new: dict) -> dict:
    for level, setting in new.items():
        if level in prev and prev[level] != setting:
            raise SambenchError(f"{run_dir}: holds results of {what} '{name}' level '{level}' as "
                                f"{prev[level]}, this run has {setting}: use another --out")
    return {**prev, **new}


def read_rows(run_dir: str | Path, with_masks: bool = True) -> pd.DataFrame:
    """The rows of one run directory (sorted by key)."""
    with Store(run_dir, create=False) as st:
        return st.frame(with_masks=with_masks)


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
    """Write atomically (temp file + rename) so a kill or a full disk never leaves half a manifest."""
    return atomic_write(Path(run_dir) / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


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


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    libs = {"python": platform.python_version()}
    for name in ("numpy", "opencv-python-headless", "pycocotools", "torch", "torchvision", "segment-anything",
                 "segment-anything-hq", "timm", "sam2", "transformers", "pandas", "scipy"):
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            libs[name] = None
    return libs


def _add_counters(total: dict, counters: dict) -> dict:
    out = {m: dict(v) for m, v in total.items()}
    for m, c in counters.items():
        acc = out.setdefault(m, {"encoder_calls": 0, "decoded_prompts": 0})
        for k, v in c.items():
            acc[k] = acc.get(k, 0) + v
    return out


def manifest_invocations(old: dict, new: "Invocation") -> list[dict]:
    """The manifest's ``invocations``: those of manifests written before the store recorded them (no
    ``id``), then every one the store holds, oldest first. One still ``running`` that is not this one was
    killed (SIGKILL, power loss): its argv and counters reach the manifest all the same."""
    out = [i for i in old.get("invocations", []) if "id" not in i]
    for inv in new.stored_invocations:
        if inv.get("status") == "running" and inv.get("id") != new.invocation_id:
            inv = {**inv, "status": "killed"}
        out.append(inv)
    if not new.stored_invocations:  # a caller that keeps no invocation record in the store
        out.append({"at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
                    "config": new.config, "wall_time_s": round(new.wall_time_s, 3), "counters": new.counters})
    return out


def _sum_counters(invocations: list[dict]) -> dict:
    total: dict = {}
    for inv in invocations:
        total = _add_counters(total, inv.get("counters") or {})
    return total


def _sum_scoring(invocations: list[dict]) -> dict:
    """The manifest's ``scoring`` section: where each model's masks were scored and the seconds of each stage,
    summed over the invocations that recorded them (sambench.metrics.fast.StageTimer; docs/metrics.md)."""
    from sambench.metrics.fast import add_timings, rounded_timings

    models: dict = {}
    threads, store_write = None, 0.0
    for inv in invocations:
        sc = inv.get("scoring") or {}
        add_timings(models, sc.get("models") or {})
        threads = sc.get("threads", threads)
        store_write += sc.get("store_write_s") or 0.0
    return {"threads": threads, "models": rounded_timings(models), "store_write_s": round(store_write, 3)}


@dataclass
class Invocation:
    """What one ``run`` adds to its directory's manifest (:func:`updated_manifest`)."""

    config: dict
    seed: Optional[int]
    protocols: dict
    prompt_hashes: dict
    datasets: dict
    models: dict
    counters: dict
    rows: dict
    wall_time_s: float
    #: This invocation's id and every invocation the store recorded (:meth:`Store.invocations`).
    invocation_id: Optional[str] = None
    stored_invocations: list = field(default_factory=list)
    #: sambench.inputs.corruptions.identity(): {"seed", "corruptions": {name: {version, source, params}}}
    corruptions: dict = field(default_factory=dict)


def updated_manifest(old: dict, new: Invocation) -> dict:
    """The manifest after ``new``: sections merged by name (this run wins), counters added, the invocation
    appended to ``invocations``; ``created`` is kept from the first run."""
    import sambench

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    protos = {**old.get("protocols", {}), **new.protocols}
    for p, by_ds in new.prompt_hashes.items():
        protos[p] = {**protos.get(p, {}), "prompt_hash": by_ds}
    invocations = manifest_invocations(old, new)
    return {
        "sambench_version": sambench.__version__,
        "schema_version": SCHEMA_VERSION,
        "git_commit": git_commit(),
        "created": old.get("created", now),
        "updated": now,
        "config": new.config,
        "protocols": protos,
        "datasets": {**old.get("datasets", {}), **new.datasets},
        "models": {**old.get("models", {}), **new.models},
        "seed": new.seed,
        "libraries": library_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        "counters": _sum_counters(invocations),
        "scoring": _sum_scoring(invocations),
        "corruptions": _merged_corruptions(old.get("corruptions") or {}, new.corruptions),
        "rows": new.rows,
        "invocations": invocations,
    }


def _merged_corruptions(old: dict, new: dict) -> dict:
    """Every corruption the directory holds results of (the store's identity ledger keeps them equal)."""
    if not old and not new:
        return {}
    return {"seed": new.get("seed", old.get("seed")),
            "corruptions": {**old.get("corruptions", {}), **new.get("corruptions", {})}}


#: The dataset fields merged across runs (the rest of a dataset entry describes one run's loader).
MERGED_DATASET_FIELDS = ("content_hash", "n_images", "n_objects", "spec")


def merge_manifests(manifests: list[dict], runs: list[str]) -> tuple[dict, list[dict]]:
    """The ``protocols``, ``datasets`` (:data:`MERGED_DATASET_FIELDS`) and ``models`` sections of several
    manifests, first run wins; and every disagreement as ``{"section", "name", "run"}`` (never resolved
    silently: reports list them, ``compare`` checks what it needs)."""
    from sambench.types import canonical_json

    merged: dict = {"protocols": {}, "datasets": {}, "models": {}}
    conflicts: list[dict] = []
    for run, man in zip(runs, manifests):
        for section, target in merged.items():
            for name, entry in (man.get(section) or {}).items():
                if section == "datasets" and isinstance(entry, dict):
                    entry = {k: entry[k] for k in MERGED_DATASET_FIELDS if k in entry}
                if name not in target:
                    target[name] = entry
                elif canonical_json(_json_safe(target[name])) != canonical_json(_json_safe(entry)):
                    conflicts.append({"section": section, "name": name, "run": run})
    return merged, conflicts


def _json_safe(v):
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and v != v:
        return None
    return v


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
