"""Leaderboards: headline scores of models merged from many runs, ranked, traceable, verifiable.

Public API:

* :func:`write_board` — ``leaderboard.md``, ``leaderboard.html`` and ``leaderboard.json`` of any number of
  runs (``sambench leaderboard``).
* :func:`load_board` / :func:`find_runs` — the merged, checked runs of a board (``board.py``);
  :func:`build_board` — its ranked ``board`` section (``sambench.analysis.ranking``, which the report's
  ``leaderboard.json`` shares).
* :func:`verify_runs` — re-score every stored mask against the ground truth (``--verify``);
  :func:`verify` — that and, with ``rerun=N``, the recorded models re-run on N keyed images (``--rerun``).
* :data:`SCORES` / :func:`register` — the headline-score registry (``sambench.analysis.scores``).

Definitions: docs/metrics.md ("Headline scores"); artefacts and schema: docs/reports.md ("sambench leaderboard").
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable, Iterable, Optional

from sambench.analysis.ranking import BoardInput, BoardRefused, build_board, empty_run_note
from sambench.analysis.scores import SCORES, HeadlineScore, register
from sambench.analysis.summary import per_object, summarize
from sambench.leaderboard.board import find_runs, load_board
from sambench.leaderboard.render import render_html, render_markdown
from sambench.leaderboard.rerun import RerunCheck, Verification, rerun_runs, verify
from sambench.leaderboard.verify import VerifyResult, verify_runs
from sambench.report.leaderboard import build_leaderboard
from sambench.analysis.video import video_headline, video_protocols, video_summary
from sambench.files import atomic_write, ensure_dir
from sambench.store import load_objects, load_tracks

__all__ = ["write_board", "build_board", "load_board", "find_runs", "BoardInput", "BoardRefused", "verify_runs",
           "VerifyResult", "verify", "Verification", "RerunCheck", "rerun_runs", "SCORES", "HeadlineScore", "register"]


def board_document(board: BoardInput, rank_by: Optional[str] = None, n_boot: int = 1000,
                   out_dir: Optional[Path] = None) -> dict:
    """leaderboard.json (format 2, ``sambench.report.leaderboard``) with the ranked ``board`` section; the
    per-object table is computed once for the board and the summary, with the per-object stability the runs stored."""
    objects = per_object(board.rows, load_objects(board.run_dirs))
    ranked = build_board(board, rank_by=rank_by, n_boot=n_boot, out_dir=out_dir, objects=objects)
    summary = summarize(board.rows, n_boot=n_boot, objects=objects)
    doc = build_leaderboard(summary, board.rows, board.manifests, [str(d) for d in board.run_dirs], n_boot=n_boot,
                            ranked=ranked)
    if video_protocols(board.manifests):
        table = video_summary(board.rows, load_tracks(board.run_dirs))  # J&F of video rows (docs/video.md)
        doc["video_headline"] = json.loads(video_headline(table).to_json(orient="records"))
    return doc


def write_board(paths: Iterable[str | Path], out_dir: str | Path, rank_by: Optional[str] = None,
                n_boot: int = 1000, note: str = "", verification: Optional[dict] = None,
                warn: Optional[Callable[[str], None]] = None) -> dict[str, Path]:
    """Merge the runs under ``paths`` (refusing incomparable ones) and write the three board files into
    ``out_dir``; returns ``{file name: path}``. ``note`` is a closing paragraph for both pages;
    ``verification`` (:meth:`sambench.leaderboard.rerun.Verification.record`) is what ``--verify`` checked,
    kept in leaderboard.json and shown on both pages. ``out_dir`` is created only once the board is built
    and rendered (a refused board leaves nothing behind). A run that holds no row is named in the board's
    notes and ``empty_runs``, and passed to ``warn`` (default: :func:`warnings.warn`) as one line."""
    out = Path(out_dir)
    board = load_board(paths)
    doc = board_document(board, rank_by=rank_by, n_boot=n_boot, out_dir=out)
    if verification is not None:
        doc["verification"] = verification
    files = (("leaderboard.json", json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"),
             ("leaderboard.md", render_markdown(doc, note)),
             ("leaderboard.html", render_html(doc, note)))
    for run_dir in doc["board"]["empty_runs"]:
        (warn or warnings.warn)(empty_run_note(run_dir))
    ensure_dir(out, "--out directory")
    written = {}
    for name, text in files:
        written[name] = atomic_write(out / name, text)
    return written
