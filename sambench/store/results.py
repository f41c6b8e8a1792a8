"""The results store of one run directory: :class:`Store`, the SQLite file ``RUN_DIR/results.sqlite``.

It holds the ``results`` table (one :class:`~sambench.store.table.Row` per result key), the ``objects``
table (per-object stability, written with the rows it summarises) and the ``info`` table. Rows of one image are written in one transaction, so a run killed at any point (even SIGKILL)
leaves only whole images behind; re-running the same command skips every key already present, and since
prompts are keyed and models deterministic, the resumed run ends with exactly the rows of an
uninterrupted one.

The ``info`` table records, before the first row, the identity of every model (weights, options),
protocol (version, seed, decoding, level settings) and dataset (content hash) the store holds results of
(:meth:`Store.claim_identity`); a resume with a different one is refused (draws and levels may only
grow; a changed dataset names its changed images, which ``--retry-failed`` re-runs). It also records
every ``run`` invocation (argv, counters, status), updated with each image's rows, so a killed run's
counters reach the next manifest. Readers open the store read-only; see docs/runs.md.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from sambench.files import ensure_dir
from sambench.store.sqlite import connect, database_error, open_read_only, stored_schema_version
from sambench.store.table import (ADDED_COLUMNS, COLUMNS, DB_NAME, IMAGE_ROW_COLUMNS, KEY_COLUMNS, OBJECTS_COLUMNS,
                                  RESULTS_TABLE, SCHEMA, SCHEMA_VERSION, TRACK_VALUE_COLUMNS, TRACKS_COLUMNS, Row)
from sambench.types import SambenchError

#: Manifest fields a resumed run must share with the stored rows, per identity.
MODEL_IDENTITY = ("adapter", "adapter_version", "weights_sha256", "variant", "options", "plugin_id", "plugin_config")
#: ``file_sha256``: a replay protocol's file (absent, so never compared, for every other protocol).
PROTOCOL_IDENTITY = ("version", "seed", "mask_selection", "preprocessing", "file_sha256")
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
        directory) ``immutable=1``, so ``report`` and ``compare`` work on a run the user may not write; or,
        when a write-ahead log holds rows (a killed run), a private copy (:func:`open_read_only`).
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
            self.conn = open_read_only(self.path)
        else:
            ensure_dir(self.run_dir, "run directory")
            try:
                self.conn = connect(str(self.path), self.path)
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.executescript(SCHEMA)
                self.conn.execute("INSERT OR IGNORE INTO info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self.conn.commit()
            except sqlite3.DatabaseError as exc:
                raise database_error(self.path, exc) from None
        self.schema_version = stored_schema_version(self.conn, self.path)
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
                        self.conn.execute("DELETE FROM objects WHERE dataset=? AND image_id=?", (name, i))
                        self.conn.execute("DELETE FROM tracks WHERE dataset=? AND image_id=?", (name, i))
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
            return cur.rowcount  # a failed row has no tracks entry: nothing else to delete

    def done_keys(self, model: str, dataset: str, image_id: str) -> set[tuple]:
        """:data:`IMAGE_ROW_COLUMNS` of every row already stored for this model and image."""
        cur = self.conn.execute(f"SELECT {', '.join(IMAGE_ROW_COLUMNS)} FROM results "
                                f"WHERE model=? AND dataset=? AND image_id=?", (model, dataset, image_id))
        return {tuple(r) for r in cur.fetchall()}

    def write(self, rows: Iterable[Row], invocation: Optional[dict] = None, objects: Iterable[tuple] = (),
              tracks: Iterable[tuple] = ()) -> int:
        """Insert rows in ONE transaction; keys already present are left unchanged. Returns rows added.

        ``invocation`` (see :meth:`record_invocation`) is updated in the same transaction, so the counters
        of a run killed at any point match the rows it left. So are ``objects``: the per-object stability
        of these rows, one tuple per group in :data:`~sambench.store.table.OBJECTS_COLUMNS` order, each
        replacing what an earlier batch stored for its group (a reader checks ``draws``, :meth:`objects`).
        So are ``tracks``: the per-frame J/F of video rows, one tuple per row in
        :data:`~sambench.store.table.TRACKS_COLUMNS` order (:meth:`tracks`).
        """
        values = [r.values() for r in rows]
        with self.conn:
            before = self.conn.total_changes
            self.conn.executemany(f"INSERT OR IGNORE INTO results ({', '.join(COLUMNS)}) VALUES "
                                  f"({', '.join('?' * len(COLUMNS))})", values)
            added = self.conn.total_changes - before
            self.conn.executemany(f"INSERT OR REPLACE INTO objects ({', '.join(OBJECTS_COLUMNS)}) VALUES "
                                  f"({', '.join('?' * len(OBJECTS_COLUMNS))})", list(objects))
            self.conn.executemany(f"INSERT OR IGNORE INTO tracks ({', '.join(TRACKS_COLUMNS)}) VALUES "
                                  f"({', '.join('?' * len(TRACKS_COLUMNS))})", list(tracks))
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

    def objects(self) -> pd.DataFrame:
        """The ``objects`` table (:data:`~sambench.store.table.OBJECTS_COLUMNS`; NaN where stability is
        undefined); empty with those columns for a store written before the table existed.

        An entry holds for the group's rows only while its ``draws`` equals their number of ok rows: rows
        added later (more draws, a retried failure) are not in it, and it is then computed from the rows."""
        have = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='objects'").fetchone()
        if have is None:
            return pd.DataFrame({c: pd.Series(dtype=float if c.startswith("stability") else object)
                                 for c in OBJECTS_COLUMNS})
        return pd.read_sql_query(f"SELECT {', '.join(OBJECTS_COLUMNS)} FROM objects", self.conn,
                                 dtype={"draws": "int64", "stability_pairwise": "float64", "stability_union": "float64"})

    def tracks(self, with_masks: bool = False) -> pd.DataFrame:
        """The ``tracks`` table (:data:`~sambench.store.table.TRACKS_COLUMNS`, sorted by key; ``masks_rle`` only
        when ``with_masks``); empty with those columns for a store written before the table existed."""
        cols = [c for c in TRACKS_COLUMNS if with_masks or c != "masks_rle"]
        have = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='tracks'").fetchone()
        if have is None:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
        return pd.read_sql_query(f"SELECT {', '.join(cols)} FROM tracks ORDER BY {', '.join(KEY_COLUMNS)}", self.conn)

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



def _merge_settings(run_dir: Path, what: str, name: str, prev: dict, new: dict) -> dict:
    for level, setting in new.items():
        if level in prev and prev[level] != setting:
            raise SambenchError(f"{run_dir}: holds results of {what} '{name}' level '{level}' as "
                                f"{prev[level]}, this run has {setting}: use another --out")
    return {**prev, **new}
