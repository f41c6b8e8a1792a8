"""The sections of a report page, each writing its own files: tables, comparison, degradation, clicks, provenance.

Each function takes the report's :class:`~sambench.report.context.ReportInputs` and
:class:`~sambench.report.context.ReportFiles`, writes its artefacts (docs/reports.md lists them) and returns
its part of ``index.html`` (a :class:`~sambench.report.html.Section`, or none when the runs hold nothing
for it, with a note saying why). The corruptions section is ``sambench.report.corruptions``, the visual
grid ``sambench.report.grid``.
"""

from __future__ import annotations

import html
import json
from typing import Callable, Optional

import pandas as pd

from sambench.analysis.noc import NOC_COLUMNS, noc_table
from sambench.analysis.ranking import BoardInput, build_board, check_runs
from sambench.analysis.summary import failure_reasons
from sambench.report import figures as F
from sambench.report.context import ReportFiles, ReportInputs
from sambench.report.html import Section, figure_html, legend_html
from sambench.report.leaderboard import build_leaderboard
from sambench.report.tables import (frame_cells, noc_cells, paper_cells, paper_csv_frame, summary_cells,
                                    summary_csv_frame)
from sambench.types import SambenchError


def write_tables(out: ReportFiles, inputs: ReportInputs):
    """summary.{csv,md,tex} and paper.{csv,md,tex}; returns both tables' cells for the page."""
    summary, settings = inputs.summary, inputs.settings
    s_cells = summary_cells(summary, inputs.all_settings)
    out.frame("summary.csv", summary_csv_frame(summary, inputs.all_settings))
    out.text("summary.md", s_cells.to_markdown())
    out.text("summary.tex", s_cells.to_latex())
    p_cells = paper_cells(summary, settings, inputs.scope)
    out.frame("paper.csv", paper_csv_frame(summary, settings))
    out.text("paper.md", p_cells.to_markdown())
    out.text("paper.tex", p_cells.to_latex())
    return s_cells, p_cells


def comparison_section(out: ReportFiles, inputs: ReportInputs, p_cells, reference_model: Optional[str]) -> Section:
    """The comparison figure (with its GT-box reference line) and the paper table."""
    summary, scope = inputs.summary, inputs.scope
    reference, why = F.find_reference(summary, inputs.settings, reference_model)
    if why:
        out.notes.append(why)
    body = legend_html(inputs.colors)
    if summary.empty:
        out.notes.append("no successful result in these runs: no figure")
    else:
        fig = F.comparison_figure(summary, inputs.settings, inputs.colors, reference, scope)
        files = out.figure(fig, "comparison")
        ref_text = (f" Dashed line: {reference.model} with GT boxes ({reference.setting.protocol}/{reference.setting.level}"
                    f"{', chosen automatically' if reference.automatic else ''})." if reference else " No reference line: " + why + ".")
        body += figure_html("comparison", out.pngs["comparison"], f"Average mIoU per prompt setting, {scope}; error bars: "
                            f"bootstrap 95% CI.{ref_text}", files)
    body += p_cells.to_html()
    return Section("comparison", "Comparison", body)


def degradation_sections(out: ReportFiles, inputs: ReportInputs) -> list[Section]:
    """One mIoU/mBIoU curve figure per protocol with a kind of >= 2 numeric levels."""
    body = _protocol_figures(
        out, sorted({s.protocol for s in inputs.settings}), "degradation",  # click protocols: clicks_sections
        lambda p: None if inputs.summary.empty else F.degradation_figure(inputs.summary, p, inputs.settings,
                                                                       inputs.colors, inputs.scope),
        "no prompt kind with two numeric levels, so no degradation curve",
        lambda p: f"mIoU and mBIoU against the level of protocol '{p}', {inputs.scope}; bands: bootstrap 95% CI "
                  f"over objects.")
    return [Section("degradation", "Degradation curves", body)] if body else []


def clicks_sections(out: ReportFiles, inputs: ReportInputs, n_boot: int) -> list[Section]:
    """Interactive protocols: the mIoU-vs-clicks curve per protocol and the NoC table (noc.csv/.md/.tex)."""
    if not inputs.click_protocols:
        return []
    body = _protocol_figures(  # a video protocol's J&F against clicks is the video section's figure
        out, [p for p in inputs.click_protocols if p not in inputs.video_protocols], "miou_vs_clicks",
        lambda p: None if inputs.summary.empty else F.clicks_figure(inputs.summary, p, inputs.colors, inputs.scope),
        "no successful click sequence, so no mIoU-vs-clicks curve",
        lambda p: f"mIoU@k against the number of clicks k, protocol '{p}', {inputs.scope}; bands: bootstrap 95% CI "
                  f"over objects; dotted: the NoC targets.")
    by_image = noc_table(inputs.df, inputs.click_protocols, n_boot=n_boot, by_corruption=True)
    clean = by_image["severity"].astype(int) == 0  # the clean cells are noc_table's clean table, CIs included
    noc = by_image[clean][NOC_COLUMNS].reset_index(drop=True)
    inputs.noc = noc
    cells = noc_cells(noc)
    out.frame("noc.csv", noc)
    out.text("noc.md", cells.to_markdown())
    out.text("noc.tex", cells.to_latex())
    body += cells.to_html()
    if not clean.all():  # click sequences on corrupted images too
        cells = noc_cells(by_image)
        cells.caption += " Each corrupted copy of an image has its own click sequences (same start, same rule)."
        out.frame("noc_corruptions.csv", by_image)
        out.text("noc_corruptions.md", cells.to_markdown())
        body += cells.to_html()
    if set(inputs.click_protocols) <= inputs.video_protocols:  # no mIoU figure; NoC over the tracks' mean J
        body = ('<p class="note">Video click protocols: NoC counts the clicks on the prompt frame until the '
                "track's mean J (its rows' IoU) reaches the target (docs/video.md).</p>") + body
        return [Section("clicks", "Interactive: NoC", body)]
    return [Section("clicks", "Interactive: mIoU vs clicks and NoC", body)]


def summary_section(inputs: ReportInputs, s_cells) -> Section:
    """The summary table and the failures by reason."""
    body = s_cells.to_html()
    reasons = failure_reasons(inputs.df)
    if not reasons.empty:
        body += "<h3>Failures</h3>" + frame_cells(reasons, "Failed rows by model, dataset, protocol and error "
                                                  "(counted in the 'Failed' column, never dropped silently).").to_html()
    return Section("summary", "Summary table", body)


def _protocol_figures(out: ReportFiles, protocols, stem: str, draw: Callable, missing: str, caption: Callable) -> str:
    """One figure per protocol (``draw(protocol)``, None: a note saying ``missing``), as page HTML."""
    body = ""
    for protocol in protocols:
        fig = draw(protocol)
        if fig is None:
            out.notes.append(f"protocol '{protocol}': {missing}")
            continue
        name = f"{stem}_{safe_name(protocol)}"
        files = out.figure(fig, name)
        body += figure_html(name, out.pngs[name], caption(protocol), files)
    return body


def leaderboard_document(out: ReportFiles, inputs: ReportInputs, n_boot: int) -> dict:
    """leaderboard.json's content: every number of the report (``sambench.report.leaderboard``), the ranked
    board of these runs, the mCE and corruption cells, and the NoC table."""
    board = build_leaderboard(inputs.summary, inputs.df, inputs.manifests, [str(d) for d in inputs.run_dirs],
                              n_boot=n_boot, ranked=ranked_board(out, inputs, n_boot))
    if inputs.mce is not None:
        board["corruptions"] = {"reference": inputs.mce_reference,
                                "mce": json.loads(inputs.mce.to_json(orient="records")),
                                "cells": json.loads(inputs.corruption_cells.to_json(orient="records"))}
    if inputs.video is not None:  # J, F, J&F per video cell (sambench.report.video), full precision (NaN → null)
        board["video"] = json.loads(inputs.video.to_json(orient="records"))
    if inputs.noc is not None:  # NoC per model → dataset → protocol, full precision (NaN → null)
        for _, r in inputs.noc.iterrows():
            cell = {k: (None if pd.isna(r[k]) else float(r[k])) for k in NOC_COLUMNS[3:]}
            board.setdefault("noc", {}).setdefault(r["model"], {}).setdefault(r["dataset"], {})[r["protocol"]] = cell
    return board


def ranked_board(out: ReportFiles, inputs: ReportInputs, n_boot: int) -> dict:
    """leaderboard.json's ``board`` (``sambench.analysis.ranking``, from the report's per-object table), or
    why these runs cannot be ranked together."""
    board = BoardInput(inputs.df, inputs.manifests, inputs.run_dirs)
    try:
        check_runs(board)
        return build_board(board, n_boot=n_boot, out_dir=out.out, objects=inputs.objects)
    except SambenchError as exc:
        out.notes.append(f"leaderboard.json ranks nothing: {exc}")
        return {"refused": str(exc)}


def provenance_section(out: ReportFiles, board: dict) -> Section:
    """leaderboard.json and the provenance section; disagreeing runs become notes."""
    for c in board["conflicts"]:
        out.notes.append(f"runs disagree on {c['section']} '{c['name']}' (run {c['run']}); leaderboard.json keeps the first")
    out.text("leaderboard.json", json.dumps(board, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return Section("provenance", "Provenance", _provenance_html(board))


def safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def _provenance_html(board: dict) -> str:
    def block(title: str, obj) -> str:
        return f"<h3>{html.escape(title)}</h3><pre>{html.escape(json.dumps(obj, indent=1, sort_keys=True))}</pre>"

    return (block("protocols", board["protocols"] or board["versions"]) + block("datasets", board["datasets"]) +
            block("models", board["models"]) + block("runs", board["runs"]) +
            '<p class="note">Every number above is in <a href="leaderboard.json">leaderboard.json</a> at full precision.</p>')
