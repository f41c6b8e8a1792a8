"""Shared helpers for tests that run the ``sambench`` command or read a run's results store directly (resume,
kill, Ray, clicks): the command line, the store's rows, and waiting for rows to SIGKILL a run at."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from sambench.execution.lifetime import descendants  # noqa: F401 - one /proc walk for the runner and the tests
from sambench.store import COLUMNS


def sambench_cli(*args: str) -> list[str]:
    """The ``sambench ARGS`` command line, run by this test's Python (``python -m sambench``)."""
    return [sys.executable, "-m", "sambench", *args]


def default_sigint() -> None:
    """``preexec_fn`` of a child a test interrupts with SIGINT: SIGINT's default action, whatever this process
    inherited. A suite started from a background job (``pytest &``, ``nohup``) runs with SIGINT ignored, and a
    child inherits that, so Ctrl-C would never reach it (the run finishes and exits 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def checkout_env() -> dict:
    """The environment for a ``sambench`` process (and the Ray workers it starts) that must import this
    checkout: the tests' own, with ``PYTHONPATH`` set to the working directory."""
    return {**os.environ, "PYTHONPATH": os.getcwd()}


def error_lines(stderr: str) -> list[str]:
    """The ``error: ...`` lines a command printed."""
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def stored_rows(run_dir) -> list[tuple]:
    """Every stored row of ``run_dir``'s results.sqlite, all columns, in one fixed order (for equality)."""
    con = sqlite3.connect(str(Path(run_dir) / "results.sqlite"))
    rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM results ORDER BY model, dataset, image_id, object_id, "
                       "protocol, level, draw, corruption, severity").fetchall()
    con.close()
    return rows


def stored_tracks(run_dir) -> list[tuple]:
    """Every entry of ``run_dir``'s ``tracks`` table (video runs), all columns, in one fixed order (for equality)."""
    con = sqlite3.connect(str(Path(run_dir) / "results.sqlite"))
    out = con.execute("SELECT * FROM tracks ORDER BY model, image_id, object_id, protocol, level, draw, corruption, "
                      "severity").fetchall()
    con.close()
    return out


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
            con.close()  # always: an open reader keeps the WAL files alive
    except sqlite3.OperationalError:
        return 0


# ------------------------------------------------------------------- interrupting a run, and its processes


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (not gone, not zombies)."""
    out = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.add(pid)
        except OSError:
            pass
    return out


def wait_gone(pids: set[int], seconds: float) -> set[int]:
    """Wait up to ``seconds`` for every one of ``pids`` to end; those still alive then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive(pids):
        time.sleep(0.1)
    return alive(pids)


def wait_for_rows(proc, run_dir, rows: int = 1, distinct: str = "",
                  ready: Optional[Callable[[set[int]], bool]] = None, timeout: float = 120.0) -> set[int]:
    """Wait, while ``proc`` (a ``sambench run`` into ``run_dir``) runs, until its store holds ``rows`` rows (or
    distinct values of column ``distinct``) and ``ready(live descendants of proc)`` holds; fail if the run ends
    or the time runs out first. Returns every descendant of ``proc`` seen meanwhile (Linux /proc; a test
    checks that none outlives a kill), so the caller can interrupt the run at that point."""
    track = sys.platform.startswith("linux")
    db = Path(run_dir) / "results.sqlite"
    kids: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if track:
            kids |= descendants(proc.pid)
        if (ready is None or ready(alive(kids))) and stored_count(db, distinct) >= rows:
            return kids | descendants(proc.pid) if track else kids
        time.sleep(0.05)
    raise AssertionError("the run ended (or hung) before it could be interrupted")


def sigkill(proc) -> None:
    """SIGKILL ``proc`` (nothing can be caught: as a power loss or the OOM killer) and reap it."""
    proc.kill()
    proc.wait()
