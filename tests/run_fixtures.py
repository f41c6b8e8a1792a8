"""Shared helpers for tests that read a run's results store directly (resume, kill, Ray, clicks)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sambench.store import COLUMNS


def stored_rows(run_dir) -> list[tuple]:
    """Every stored row of ``run_dir``'s results.sqlite, all columns, in one fixed order (for equality)."""
    con = sqlite3.connect(str(Path(run_dir) / "results.sqlite"))
    rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM results ORDER BY model, dataset, image_id, object_id, "
                       "protocol, level, draw, corruption, severity").fetchall()
    con.close()
    return rows


def stored_count(db: Path, distinct: str = "") -> int:
    """Rows (or distinct values of column ``distinct``) in the results store ``db`` while a run may be writing
    it: 0 if it is locked or not there yet."""
    if not Path(db).exists():
        return 0
    try:
        con = sqlite3.connect(str(db), timeout=1)
        try:
            return con.execute(f"SELECT COUNT({f'DISTINCT {distinct}' if distinct else '*'}) FROM results").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0
