"""``write_report``: every artefact of ``sambench report`` from one or more run directories.

The report reads only the stores and manifests (``sambench.store.load_runs``); it never re-runs a model.
Its numbers come from ``sambench.analysis`` — the per-object table once (with the per-object stability the
runs stored, ``sambench.store.load_objects``), then the summary, NoC, corruption and ranked-board tables
from it — and each section writes its own files (``sections``, ``corruptions``,
``grid``); this module orders them and writes ``index.html``. docs/reports.md lists the artefacts and
their conventions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import pandas as pd

import sambench
from sambench.analysis.summary import per_object, summarize
from sambench.files import ensure_dir
from sambench.report.context import ReportFiles, ReportInputs
from sambench.report.corruptions import corruptions_section
from sambench.report.grid import DEFAULT_GRID_ROWS, grid_section
from sambench.report.html import Section, render_page
from sambench.report.video import video_section
from sambench.report.sections import (clicks_sections, comparison_section, degradation_sections,
                                      leaderboard_document, provenance_section, summary_section, write_tables)
from sambench.store import load_objects, load_runs
from sambench.types import SambenchError


def write_report(run_dirs: Iterable[str | Path], out_dir: Optional[str | Path] = None,
                 reference_model: Optional[str] = None, grid_objects: Optional[Sequence] = None,
                 formats: Sequence[str] = ("png", "pdf"), image_loader: Optional[Callable] = None,
                 n_grid: int = DEFAULT_GRID_ROWS, n_boot: int = 1000,
                 loaded: Optional[tuple[pd.DataFrame, list[dict]]] = None,
                 summary: Optional[pd.DataFrame] = None, mce_reference: Optional[str] = None,
                 objects: Optional[pd.DataFrame] = None) -> dict[str, Path]:
    """Write the report of the merged runs into ``out_dir`` (default ``<first run>/report``).

    Returns ``{file name: path}`` of every file written: ``summary.{csv,md,tex}``, ``paper.{csv,md,tex}``,
    ``comparison.<fmt>``, ``degradation_<protocol>.<fmt>``, ``grid.<fmt>``, ``leaderboard.json`` and
    ``index.html``. ``formats`` are matplotlib formats for the figure files (the page always inlines PNG).
    ``image_loader(dataset, image_id)`` may return an RGB array or a ``Sample`` (then its GT is used too).
    ``reference_model`` names the model whose GT-box mIoU is the dashed line (default: the first model
    by name with a GT-box setting). ``grid_objects``: ``dataset/image/object[@protocol:level:draw]``.
    ``loaded`` (what :func:`sambench.store.load_runs` returns for ``run_dirs``, masks included) and
    ``summary`` (:func:`sambench.analysis.summary.summarize` of its rows) and ``objects``
    (:func:`sambench.analysis.summary.per_object` of them) spare reading and summarising again.
    Runs with corrupted images add ``robustness.{csv,md}``, ``mce.csv``, ``corruption_heatmap.<fmt>`` and
    ``corruption_severity.<fmt>``; ``mce_reference`` names the mCE's reference model (default: grabcut,
    else box-fill; docs/corruptions.md).
    """
    run_dirs = _check_request(run_dirs, formats)
    out = ReportFiles(Path(out_dir) if out_dir is not None else run_dirs[0] / "report", formats)
    df, manifests = loaded if loaded is not None else load_runs(run_dirs, with_masks=True)
    ensure_dir(out.out, "report directory")  # after the runs loaded: a bad run creates nothing
    out.notes.extend(f"dataset notice: {n}" for man in manifests for d in (man.get("datasets") or {}).values()
                     if isinstance(d, dict) for n in d.get("notices") or [])  # unpaired files, EXIF, ...
    if objects is None:  # once: the summary and the ranked board both read it; stability as the runs stored it
        objects = per_object(df, load_objects(run_dirs))
    if summary is None:
        summary = summarize(df, n_boot=n_boot, objects=objects)
    inputs = ReportInputs(run_dirs, df, manifests, summary, objects)
    s_cells, p_cells = write_tables(out, inputs)
    sections = [comparison_section(out, inputs, p_cells, reference_model)] if inputs.settings else []
    sections += degradation_sections(out, inputs)
    sections += corruptions_section(out, inputs, mce_reference)
    sections += clicks_sections(out, inputs, n_boot)
    sections += video_section(out, inputs)
    sections.append(summary_section(inputs, s_cells))
    sections += grid_section(out, inputs, grid_objects, n_grid, image_loader)
    board = leaderboard_document(out, inputs, n_boot)
    sections.append(provenance_section(out, board))
    _write_page(out, inputs, board, sections)
    return out.written


def _check_request(run_dirs: Iterable[str | Path], formats: Sequence[str]) -> list[Path]:
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise SambenchError("report: no run directory given")
    bad = [str(f) for f in formats if f not in ("png", "pdf", "svg")]
    if bad:
        raise SambenchError(f"report: unsupported figure format(s) {', '.join(bad)} (use png, pdf, svg)")
    return run_dirs


def _write_page(out: ReportFiles, inputs: ReportInputs, board: dict, sections: list[Section]) -> None:
    df = inputs.df
    meta = [("runs", ", ".join(str(d) for d in inputs.run_dirs)),
            ("rows", f"{board['rows']['ok']} ok, {board['rows']['failed']} failed"),
            ("models", ", ".join(sorted(df["model"].unique()))),
            ("datasets", ", ".join(sorted(df["dataset"].unique()))),
            ("protocols", ", ".join(f"{p} v{v}" for p, v in sorted(board["versions"].items()))),
            ("run sambench / commit", "; ".join(f"{r.get('sambench_version', '?')} / {str(r.get('git_commit', '?'))[:12]}"
                                                 for r in board["runs"])),
            ("report", f"sambench {sambench.__version__}, {board['date']}"),
            ("files", "summary.csv/.md/.tex, paper.csv/.md/.tex, leaderboard.json")]
    out.text("index.html", render_page("sambench report", meta, list(dict.fromkeys(out.notes)), sections))
