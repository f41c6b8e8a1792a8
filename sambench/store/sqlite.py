"""SQLite connections whose every error is one line naming the database file.

:func:`connect` and :func:`open_read_only` return a connection whose statements, commits and cursors
(pandas' queries included) turn an ``sqlite3.DatabaseError`` into a :class:`SambenchError` of one line
(:func:`database_error`): a full disk ("no space left on device", the images written so far are kept),
a corrupt file, a read-only place, a file that cannot be opened. :func:`stored_schema_version` reads the
schema version a results database records and refuses one newer than this sambench.

A reader sees every committed row, also those still in the write-ahead log of a killed run: when SQLite
cannot read the log in place (a ``-wal`` without its ``-shm`` in a read-only place), :func:`open_read_only`
reads a private copy of the database and its log, never the database file alone.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import urllib.parse
import weakref
from pathlib import Path
from typing import Optional

from sambench.store.table import SCHEMA_VERSION
from sambench.types import SambenchError, first_line


def database_error(path: Path, exc: BaseException) -> SambenchError:
    """One line for an SQLite error on ``path``: a full disk, a corrupt file, a read-only place."""
    msg = first_line(exc)
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
    #: A private directory holding the copy this connection reads (:func:`open_read_only`), removed on close.
    private_dir: Optional[str] = None

    def close(self):
        super().close()
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)

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


def connect(target: str, path: Path, uri: bool = False) -> _Connection:
    """Open ``target`` (a path, or a ``file:`` URI with ``uri=True``) with one-line errors naming ``path``."""
    try:
        conn = sqlite3.connect(target, uri=uri, factory=_Connection)
    except sqlite3.DatabaseError as exc:
        raise database_error(path, exc) from None
    conn.db_path = path
    return conn


def open_read_only(path: Path) -> _Connection:
    """``mode=ro``; when read-only mode needs files it cannot create (a read-only place), ``immutable=1`` if
    the database has no write-ahead log, else a private copy of the database and its log (``immutable``
    would read the database file alone and silently miss every row still in the log)."""
    base = "file:" + urllib.parse.quote(str(path.resolve()))
    conn = connect(base + "?mode=ro", path, uri=True)
    try:
        conn.execute("SELECT value FROM info WHERE key='schema_version'").fetchone()
        return conn
    except SambenchError as first:
        conn.close()
        if "corrupt" in str(first):
            raise
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        return _open_private_copy(path, wal)
    conn = connect(base + "?immutable=1", path, uri=True)
    conn.execute("SELECT value FROM info WHERE key='schema_version'").fetchone()
    return conn


def _open_private_copy(path: Path, wal: Path) -> _Connection:
    """A connection to a copy of ``path`` and its ``wal`` in a private temporary directory (SQLite replays
    the log there), removed when the connection closes or is collected; errors name ``path``."""
    tmp = tempfile.mkdtemp(prefix="sambench-read-")
    try:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        shutil.copyfile(wal, Path(tmp) / wal.name)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SambenchError(f"{path}: its write-ahead log ({wal.name}) holds rows that cannot be read in this "
                            f"read-only place, and a private copy failed ({first_line(exc)}): open it where it "
                            f"can be written, or copy the run directory") from None
    conn = connect(str(copy), path)
    conn.private_dir = tmp
    weakref.finalize(conn, shutil.rmtree, tmp, True)
    try:
        conn.execute("SELECT value FROM info WHERE key='schema_version'").fetchone()
    except SambenchError:
        conn.close()
        raise
    return conn


def stored_schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version a results database records; one line if it records none or a newer one."""
    found = conn.execute("SELECT value FROM info WHERE key='schema_version'").fetchone()
    if found is None or not str(found[0]).isdigit():
        raise SambenchError(f"{path}: not a usable sambench results database (no schema version)")
    version = int(found[0])
    if version > SCHEMA_VERSION:
        raise SambenchError(f"{path}: results schema version {version} is newer than this sambench "
                            f"({SCHEMA_VERSION}): upgrade sambench")
    return version

