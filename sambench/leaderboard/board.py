"""The runs of a leaderboard: run directories found under the paths given, merged, and checked comparable.

:func:`find_runs` takes each path as a run directory (it holds ``results.sqlite``) or searches it for run
directories at any depth; :func:`load_board` merges their rows (``sambench.store.load_runs``: the same key
in two runs must agree) and refuses runs that cannot share a board
(:func:`sambench.analysis.ranking.check_runs`). The ranking itself is :mod:`sambench.analysis.ranking`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from sambench.analysis.ranking import BoardInput, check_runs
from sambench.store import DB_NAME, load_runs
from sambench.types import SambenchError


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories of ``paths``: each is a run (holds results.sqlite) or is searched at any depth."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if (p / DB_NAME).is_file():
            runs.append(p)
        elif p.is_dir():
            found = sorted(q.parent for q in p.rglob(DB_NAME))
            if not found:
                raise SambenchError(f"{p}: holds no sambench run directory (no {DB_NAME} at any depth)")
            runs.extend(found)
        else:
            raise SambenchError(f"{p}: {'not a directory' if p.exists() else 'no such directory'}")
    seen, out = set(), []
    for r in runs:
        if r.resolve() not in seen:
            seen.add(r.resolve())
            out.append(r)
    return out


def load_board(paths: Iterable[str | Path], check: bool = True) -> BoardInput:
    """Find, merge and (``check``) refuse incomparable runs; see the module docstring."""
    run_dirs = find_runs(paths)
    if not run_dirs:
        raise SambenchError("leaderboard: no run directory given")
    rows, manifests = load_runs(run_dirs, with_masks=True)
    board = BoardInput(rows, manifests, run_dirs)
    if check:
        check_runs(board)
    return board
