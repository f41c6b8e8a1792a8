"""Leaderboards: headline scores of models merged from many runs, ranked, traceable, verifiable.

Public API:

* :func:`write_board` — ``leaderboard.md``, ``leaderboard.html`` and ``leaderboard.json`` of any number of
  runs (``sambench leaderboard``).
* :func:`load_board` / :func:`find_runs` — the merged, checked runs of a board (``board.py``);
  :func:`build_board` — its ranked ``board`` section (``sambench.analysis.ranking``, which the report's
  ``leaderboard.json`` shares).
* :func:`verify_runs` — re-score every stored mask against the ground truth (``--verify``).
* :data:`SCORES` / :func:`register` — the headline-score registry (``sambench.analysis.scores``).

Definitions: docs/metrics.md ("Headline scores"); artefacts and schema: docs/reports.md ("sambench leaderboard").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

from sambench.analysis.ranking import BoardInput, BoardRefused, build_board
from sambench.analysis.scores import SCORES, HeadlineScore, register
from sambench.analysis.summary import per_object, summarize
from sambench.leaderboard.board import find_runs, load_board
from sambench.leaderboard.render import render_html, render_markdown
from sambench.leaderboard.verify import VerifyResult, verify_runs
from sambench.report.leaderboard import build_leaderboard
from sambench.analysis.video import video_headline, video_summary
from sambench.store import load_objects, load_tracks

__all__ = ["write_board", "build_board", "load_board", "find_runs", "BoardInput", "BoardRefused", "verify_runs",
           "VerifyResult", "SCORES", "HeadlineScore", "register"]


def board_document(board: BoardInput, rank_by: Optional[str] = None, n_boot: int = 1000,
                   out_dir: Optional[Path] = None) -> dict:
    """leaderboard.json (format 2, ``sambench.report.leaderboard``) with the ranked ``board`` section; the
    per-object table is computed once for the board and the summary, with the per-object stability the runs stored."""
    objects = per_object(board.rows, load_objects(board.run_dirs))
    ranked = build_board(board, rank_by=rank_by, n_boot=n_boot, out_dir=out_dir, objects=objects)
    summary = summarize(board.rows, n_boot=n_boot, objects=objects)
    doc = build_leaderboard(summary, board.rows, board.manifests, [str(d) for d in board.run_dirs], n_boot=n_boot,
                            ranked=ranked)
    if any(isinstance(p, dict) and (p.get("identity") or {}).get("video")
           for man in board.manifests for p in (man.get("protocols") or {}).values()):
        table = video_summary(board.rows, load_tracks(board.run_dirs))  # J&F of video rows (docs/video.md)
        doc["video_headline"] = json.loads(video_headline(table).to_json(orient="records"))
    return doc


def write_board(paths: Iterable[str | Path], out_dir: str | Path, rank_by: Optional[str] = None,
                n_boot: int = 1000, note: str = "") -> dict[str, Path]:
    """Merge the runs under ``paths`` (refusing incomparable ones) and write the three board files into
    ``out_dir``; returns ``{file name: path}``. ``note`` is a closing paragraph for both pages."""
    out = Path(out_dir)
    board = load_board(paths)
    out.mkdir(parents=True, exist_ok=True)
    doc = board_document(board, rank_by=rank_by, n_boot=n_boot, out_dir=out)
    written = {}
    for name, text in (("leaderboard.json", json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"),
                       ("leaderboard.md", render_markdown(doc, note)),
                       ("leaderboard.html", render_html(doc, note))):
        (out / name).write_text(text, encoding="utf-8")
        written[name] = out / name
    return written
