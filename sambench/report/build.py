"""``write_report``: every artefact of ``sambench report`` from one or more run directories.

The report reads only the stores and manifests (``sambench.store.load_runs``); it never re-runs a model.
Photos and GT masks for the visual grid come from an ``image_loader`` callable when given, else from the
datasets the manifest records (``manifest["datasets"][name]["spec"]`` reopened with
``sambench.datasets.DatasetSpec``); without either the grid shows masks on a grey canvas and the
page says so. docs/reports.md lists the artefacts and their conventions.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

import sambench
from sambench.inputs.corruptions import CLEAN, corrupt_keyed
from sambench.files import atomic_write, ensure_dir
from sambench.metrics import decode_rle
from sambench.report import figures as F
from sambench.report.common import display_names, headline_scope, model_colors, settings_info
from sambench.report.html import Section, figure_html, legend_html, render_page
from sambench.report.leaderboard import build_leaderboard
from sambench.analysis.noc import NOC_COLUMNS, click_protocols, noc_table
from sambench.report import robustness as R
from sambench.report.tables import (frame_cells, noc_cells, paper_cells, paper_csv_frame, summary_cells,
                                    summary_csv_frame)
from sambench.store import PROMPT_COLUMNS, load_runs
from sambench.analysis.summary import failure_reasons, summarize
from sambench.types import SambenchError

#: A grid row is one realised prompt, shown for every model.
GRID_KEY = list(PROMPT_COLUMNS)
DEFAULT_GRID_ROWS = 4


# ------------------------------------------------------------------------------------------ grid picks


def parse_grid_object(spec: str) -> dict:
    """``dataset/image/object`` (image ids may contain ``/``), optionally ``@protocol:level:draw``."""
    text, _, where = str(spec).partition("@")
    parts = text.split("/")
    if len(parts) < 3 or not parts[0] or not parts[-1]:
        raise SambenchError(f"grid object '{spec}': expected dataset/image/object[@protocol:level:draw]")
    out = {"dataset": parts[0], "image_id": "/".join(parts[1:-1]), "object_id": parts[-1]}
    if where:
        w = where.split(":")
        if len(w) != 3:
            raise SambenchError(f"grid object '{spec}': the part after '@' must be protocol:level:draw")
        try:
            out.update(protocol=w[0], level=w[1], draw=int(w[2]))
        except ValueError:
            raise SambenchError(f"grid object '{spec}': draw '{w[2]}' is not an integer") from None
    return out


def spread_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (object, prompt) key: IoU of each model and ``spread`` = max − min over models (with one model,
    1 − IoU: its worst results are the informative ones). Only successful rows; sorted by spread desc then key."""
    ok = df[(df["status"] == "ok") & (df["level"] != "") & df["iou"].notna()]
    if ok.empty:
        return pd.DataFrame(columns=GRID_KEY + ["spread", "n_models"])
    piv = ok.pivot_table(index=GRID_KEY, columns="model", values="iou", aggfunc="first")
    n_models = piv.notna().sum(axis=1)
    spread = piv.max(axis=1) - piv.min(axis=1) if piv.shape[1] > 1 else 1.0 - piv.iloc[:, 0]
    out = pd.DataFrame({"spread": spread, "n_models": n_models}).reset_index()
    full = out["n_models"] == piv.shape[1]
    out = out.assign(_full=full).sort_values(["_full", "spread"] + GRID_KEY, ascending=[False, False] + [True] * len(GRID_KEY),
                                             kind="stable")
    return out.drop(columns="_full").reset_index(drop=True)


def pick_grid_keys(df: pd.DataFrame, grid_objects: Optional[Sequence] = None, n: int = DEFAULT_GRID_ROWS) -> list[dict]:
    """The (object, prompt) keys of the grid rows.

    Default: the ``n`` keys with the largest spread of IoU between models (keys every model answered
    first), at most one per object, ties broken by key order — deterministic. Named objects
    (``dataset/image/object[@protocol:level:draw]`` strings or dicts) take their own largest-spread
    prompt unless the prompt is named too.
    """
    table = spread_table(df)
    picks: list[dict] = []
    if grid_objects:
        for spec in grid_objects:
            want = parse_grid_object(spec) if isinstance(spec, str) else dict(spec)
            sel = table
            for k, v in want.items():
                sel = sel[sel[k].astype(str) == str(v)]
            if sel.empty:
                raise SambenchError(f"grid object '{spec}': no successful result for it in these runs")
            picks.append({k: sel.iloc[0][k] for k in GRID_KEY})
        return picks
    corrupted = table["severity"] > 0 if "severity" in table.columns else pd.Series(False, index=table.index)
    # Runs with corrupted images show both: half the rows on clean images, half on corrupted ones.
    quota = [(table[~corrupted], n - n // 2 if corrupted.any() else n), (table[corrupted], n // 2)]
    for part, k in quota:
        seen = set()
        for _, r in part.iterrows():
            obj = (r["dataset"], r["image_id"], r["object_id"])
            if len(seen) >= k or obj in seen:
                continue
            seen.add(obj)
            picks.append({c: r[c] for c in GRID_KEY})
    return picks


# ------------------------------------------------------------------------------------------ images


class _Images:
    """Photo + GT objects per (dataset, image): from ``image_loader``, else the manifest's dataset spec."""

    def __init__(self, manifests: list[dict], image_loader: Optional[Callable]) -> None:
        self.manifests = manifests
        self.specs: dict = {}
        for man in manifests:
            for name, entry in (man.get("datasets") or {}).items():
                if isinstance(entry, dict) and isinstance(entry.get("spec"), dict):
                    self.specs.setdefault(name, entry["spec"])
        self.loader = image_loader
        self.opened: dict = {}
        self.notes: list[str] = []

    def _dataset(self, name: str):
        if name in self.opened:
            return self.opened[name]
        ds, reason = None, ""
        spec = self.specs.get(name)
        if spec is None:
            reason = "the manifest records no dataset spec"
        else:
            try:
                from sambench.datasets import DatasetSpec

                ds = DatasetSpec.from_dict(spec).open()
            except Exception as exc:  # any failure to reopen is reported, the grid still renders
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if ds is None:
            self.notes.append(f"dataset '{name}' could not be reopened ({reason}); the grid shows its masks "
                              f"without {'GT' if self.loader else 'photo or GT'}")
        self.opened[name] = ds
        return ds

    def corrupted(self, image: np.ndarray, dataset: str, image_id: str, corruption: tuple[str, int]) -> Optional[np.ndarray]:
        """The image the model saw: ``image`` under ``corruption`` with the runs' corruption seed (from the
        manifest), or None (with a note) when that cannot be reproduced."""
        seeds = {m.get("corruptions", {}).get("seed") for m in self.manifests if m.get("corruptions")}
        seeds.discard(None)
        if len(seeds) != 1:
            self.notes.append(f"the manifests do not give one corruption seed ({sorted(seeds)}); corrupted grid rows "
                              f"show no photo")
            return None
        try:
            return corrupt_keyed(image, corruption[0], corruption[1], seeds.pop(), dataset, image_id)
        except SambenchError as exc:
            self.notes.append(f"could not corrupt {dataset}/{image_id} for the grid ({exc})")
            return None

    def load(self, dataset: str, image_id: str) -> tuple[Optional[np.ndarray], Optional[dict]]:
        """(RGB image or None, {object_id: bool mask} or None)."""
        image, objects = None, None
        if self.loader is not None:
            try:
                res = self.loader(dataset, image_id)
            except Exception as exc:
                self.notes.append(f"image_loader failed on {dataset}/{image_id} ({type(exc).__name__}: {exc})")
                res = None
            if res is not None and hasattr(res, "image"):
                image = np.asarray(res.image)
                objects = {str(o.id): np.asarray(o.mask, dtype=bool) for o in getattr(res, "objects", [])} or None
            elif res is not None:
                image = np.asarray(res)
        if objects is None:
            ds = self._dataset(dataset)
            if ds is not None:
                try:
                    sample = ds.load(image_id)
                    image = image if image is not None else np.asarray(sample.image)
                    objects = {str(o.id): np.asarray(o.mask, dtype=bool) for o in sample.objects}
                except Exception as exc:
                    self.notes.append(f"could not load {dataset}/{image_id} for the grid ({type(exc).__name__}: {exc})")
        if image is not None and (image.ndim == 2):
            image = np.repeat(image[..., None], 3, axis=2)
        if image is not None and image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        return image, objects


def build_grid_items(df: pd.DataFrame, keys: list[dict], images: _Images) -> list[F.GridItem]:
    """Decode each model's mask (RLE from the store) and attach photo/GT for every grid key."""
    items = []
    for key in keys:
        sel = df
        for k in GRID_KEY:
            sel = sel[sel[k] == key[k]]
        sel = sel[sel["status"] == "ok"]
        prompt = json.loads(sel["prompt"].dropna().iloc[0]) if sel["prompt"].notna().any() else {}
        masks, ious, extras, shape = {}, {}, {}, None
        for _, r in sel.iterrows():
            if isinstance(r["mask_rle"], str) and r["mask_rle"]:
                rle = json.loads(r["mask_rle"])
                masks[r["model"]] = decode_rle(rle)
                shape = tuple(int(v) for v in rle["size"])
            ious[r["model"]] = None if pd.isna(r["iou"]) else float(r["iou"])
            try:
                extras[r["model"]] = json.loads(r["extras"]) if isinstance(r["extras"], str) and r["extras"] else None
            except ValueError:
                extras[r["model"]] = None
        image, objects = images.load(str(key["dataset"]), str(key["image_id"]))
        corruption = (str(key.get("corruption", CLEAN)), int(key.get("severity", 0)))
        if image is not None and corruption[1]:
            image = images.corrupted(image, str(key["dataset"]), str(key["image_id"]), corruption)
        gt = (objects or {}).get(str(key["object_id"]))
        if shape is None:
            shape = gt.shape if gt is not None else (image.shape[:2] if image is not None else (1, 1))
        if image is not None and image.shape[:2] != shape:
            images.notes.append(f"{key['dataset']}/{key['image_id']}: reopened image is {image.shape[:2]}, the stored "
                                f"masks are {shape}; the photo is not shown")
            image = None
        if gt is not None and gt.shape != shape:
            gt = None
        items.append(F.GridItem(dataset=str(key["dataset"]), image_id=str(key["image_id"]),
                                object_id=str(key["object_id"]), protocol=str(key["protocol"]), level=str(key["level"]),
                                draw=int(key["draw"]), prompt=prompt, shape=shape, masks=masks, ious=ious,
                                extras=extras, image=image, gt=gt, corruption=corruption))
    return items


# ------------------------------------------------------------------------------------------ report


class _Out:
    """The report directory being written: every file by name, the PNG of every figure, the notes."""

    def __init__(self, out: Path, formats: Sequence[str]) -> None:
        self.out, self.formats = out, formats
        self.written: dict[str, Path] = {}
        self.pngs: dict[str, bytes] = {}
        self.notes: list[str] = []

    def text(self, name: str, text: str) -> None:
        self.written[name] = atomic_write(self.out / name, text)  # temp file + rename: never half a file

    def frame(self, name: str, frame: pd.DataFrame) -> None:
        self.text(name, frame.to_csv(index=False))

    def figure(self, fig, stem: str, dpi: int = F.PNG_DPI) -> list[str]:
        paths, png = F.save_figure(fig, self.out, stem, self.formats, dpi=dpi)
        self.written.update(paths)
        self.pngs[stem] = png
        return list(paths)


class _Inputs:
    """What every section reads: the merged rows, manifests, summary table, settings, colours, scope.

    ``summary`` is the clean image's rows (corruption ``none``), which every classic table and figure
    shows; ``full_summary`` has every (corruption, severity) too, for the robustness section."""

    def __init__(self, run_dirs: list[Path], df: pd.DataFrame, manifests: list[dict], summary: pd.DataFrame) -> None:
        self.run_dirs, self.df, self.manifests, self.full_summary = run_dirs, df, manifests, summary
        clean = (summary["corruption"] == CLEAN) & (summary["severity"] == 0)
        self.summary = summary[clean].drop(columns=["corruption", "severity"]).reset_index(drop=True)
        all_settings = settings_info(df, manifests)
        #: interactive (click) protocols get their own section; the comparison and paper table skip them
        self.click_protocols = sorted({s.protocol for s in all_settings if s.kind == "clicks"} | click_protocols(manifests))
        self.settings = [s for s in all_settings if s.protocol not in self.click_protocols]
        self.all_settings = all_settings
        self.noc: Optional[pd.DataFrame] = None
        self.colors = model_colors(df["model"].unique())
        self.scope = headline_scope(summary)


def write_report(run_dirs: Iterable[str | Path], out_dir: Optional[str | Path] = None,
                 reference_model: Optional[str] = None, grid_objects: Optional[Sequence] = None,
                 formats: Sequence[str] = ("png", "pdf"), image_loader: Optional[Callable] = None,
                 n_grid: int = DEFAULT_GRID_ROWS, n_boot: int = 1000,
                 loaded: Optional[tuple[pd.DataFrame, list[dict]]] = None,
                 summary: Optional[pd.DataFrame] = None, mce_reference: Optional[str] = None) -> dict[str, Path]:
    """Write the report of the merged runs into ``out_dir`` (default ``<first run>/report``).

    Returns ``{file name: path}`` of every file written: ``summary.{csv,md,tex}``, ``paper.{csv,md,tex}``,
    ``comparison.<fmt>``, ``degradation_<protocol>.<fmt>``, ``grid.<fmt>``, ``leaderboard.json`` and
    ``index.html``. ``formats`` are matplotlib formats for the figure files (the page always inlines PNG).
    ``image_loader(dataset, image_id)`` may return an RGB array or a ``Sample`` (then its GT is used too).
    ``reference_model`` names the model whose GT-box mIoU is the dashed line (default: the first model
    by name with a GT-box setting). ``grid_objects``: ``dataset/image/object[@protocol:level:draw]``.
    ``loaded`` (what :func:`sambench.store.load_runs` returns for ``run_dirs``, masks included) and
    ``summary`` (:func:`sambench.analysis.summary.summarize` of its rows) spare reading and summarising again.
    Runs with corrupted images add ``robustness.{csv,md}``, ``mce.csv``, ``corruption_heatmap.<fmt>`` and
    ``corruption_severity.<fmt>``; ``mce_reference`` names the mCE's reference model (default: grabcut,
    else box-fill; docs/corruptions.md).
    """
    run_dirs = _check_request(run_dirs, formats)
    out = _Out(Path(out_dir) if out_dir is not None else run_dirs[0] / "report", formats)
    df, manifests = loaded if loaded is not None else load_runs(run_dirs, with_masks=True)
    ensure_dir(out.out, "report directory")  # after the runs loaded: a bad run creates nothing
    out.notes.extend(f"dataset notice: {n}" for man in manifests for d in (man.get("datasets") or {}).values()
                     if isinstance(d, dict) for n in d.get("notices") or [])  # unpaired files, EXIF, ...
    inputs = _Inputs(run_dirs, df, manifests, summary if summary is not None else summarize(df, n_boot=n_boot))
    s_cells, p_cells = _write_tables(out, inputs)
    sections = [_comparison_section(out, inputs, p_cells, reference_model)] if inputs.settings else []
    sections += _degradation_sections(out, inputs)
    sections += _robustness_sections(out, inputs, mce_reference)
    sections += _clicks_sections(out, inputs, n_boot)
    sections.append(_summary_section(inputs, s_cells))
    sections += _grid_sections(out, inputs, grid_objects, n_grid, image_loader)
    board = build_leaderboard(inputs.summary, df, manifests, [str(d) for d in run_dirs], n_boot=n_boot,
                              ranked=_ranked_board(inputs, n_boot, out))
    if inputs.mce is not None:
        board["corruptions"] = {"reference": inputs.mce_reference,
                                "mce": json.loads(inputs.mce.to_json(orient="records")),
                                "cells": json.loads(inputs.robustness.to_json(orient="records"))}
    if inputs.noc is not None:  # NoC per model → dataset → protocol, full precision (NaN → null)
        for _, r in inputs.noc.iterrows():
            cell = {k: (None if pd.isna(r[k]) else float(r[k])) for k in NOC_COLUMNS[3:]}
            board.setdefault("noc", {}).setdefault(r["model"], {}).setdefault(r["dataset"], {})[r["protocol"]] = cell
    sections.append(_leaderboard_section(out, board))
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


def _write_tables(out: _Out, inputs: _Inputs):
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


def _comparison_section(out: _Out, inputs: _Inputs, p_cells, reference_model: Optional[str]) -> Section:
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


def _degradation_sections(out: _Out, inputs: _Inputs) -> list[Section]:
    """One mIoU/mBIoU curve figure per protocol with a kind of >= 2 numeric levels."""
    body = ""
    for protocol in sorted({s.protocol for s in inputs.settings}):  # click protocols: _clicks_sections
        fig = None if inputs.summary.empty else F.degradation_figure(inputs.summary, protocol, inputs.settings,
                                                                    inputs.colors, inputs.scope)
        if fig is None:
            out.notes.append(f"protocol '{protocol}': no prompt kind with two numeric levels, so no degradation curve")
            continue
        stem = f"degradation_{_safe(protocol)}"
        files = out.figure(fig, stem)
        body += figure_html(stem, out.pngs[stem], f"mIoU and mBIoU against the level of protocol '{protocol}', "
                            f"{inputs.scope}; bands: bootstrap 95% CI over objects.", files)
    return [Section("degradation", "Degradation curves", body)] if body else []


def _robustness_sections(out: _Out, inputs: _Inputs, reference: Optional[str]) -> list[Section]:
    """Per corruption and severity mIoU and drop, the mCE, and the two heatmaps (docs/corruptions.md)."""
    inputs.mce, inputs.mce_reference, inputs.robustness = None, None, None
    full = inputs.full_summary
    # click protocols' robustness is their NoC by corruption (_clicks_sections), not 20 mIoU@k columns here
    full = full[~full["protocol"].isin(list(inputs.click_protocols))] if not full.empty else full
    if full.empty or not ((full["corruption"] != CLEAN).any()):
        return []
    scope_rows = full[full["dataset"] == ("ALL" if (full["dataset"] == "ALL").any() else full["dataset"].iloc[0])]
    table = R.robustness_table(scope_rows)
    inputs.robustness = table
    out.frame("robustness.csv", _pct_frame(R.robustness_table(full), ["miou", "clean_miou", "drop"]))
    models = sorted(table["model"].unique())
    ref, why = R.pick_reference(models, reference)
    out.notes.append(why)
    body = legend_html(inputs.colors)
    names = {(s.protocol, s.level): display_names(inputs.settings).get((s.protocol, s.level), f"{s.protocol} {s.level}")
             for s in inputs.settings}
    fig = R.heatmap_figure(table, names, models)
    files = out.figure(fig, "corruption_heatmap")
    body += figure_html("corruption_heatmap", out.pngs["corruption_heatmap"],
                        f"mIoU (%) by corruption (rows; clean first) and prompt setting (columns), mean over the "
                        f"severities run, {inputs.scope}; one panel per model.", files)
    first = next(((s.protocol, s.level) for s in inputs.settings
                  if ((table["protocol"] == s.protocol) & (table["level"] == s.level) & (table["severity"] > 0)).any()),
                 None)
    if first is not None:
        fig = R.severity_figure(table, first, names.get(first, "/".join(first)), models)
        files = out.figure(fig, "corruption_severity")
        body += figure_html("corruption_severity", out.pngs["corruption_severity"],
                            f"mIoU (%) by corruption and severity (0 = clean) at {names.get(first, first)}, "
                            f"{inputs.scope}.", files)
    if ref is not None:
        mce = R.mce_table(table, ref)
        inputs.mce, inputs.mce_reference = mce, ref
        out.frame("mce.csv", mce.round({"ce": 1, "relative_ce": 1}))
        summary_rows = mce[mce["corruption"] == "mean"][["model", "protocol", "level", "reference", "ce", "relative_ce"]]
        body += frame_cells(summary_rows.rename(columns={"ce": "mCE (%)", "relative_ce": "relative mCE (%)"}).round(1),
                            f"mCE over the corruptions run, normalised by {ref} (= 100); lower is better; per-corruption "
                            f"CE in mce.csv.").to_html()
    drop = table[table["severity"] > 0].groupby(["model", "corruption"], sort=False)["drop"].mean().unstack("model")
    body += frame_cells((100 * drop).round(1).reset_index(), "Mean relative drop from clean (%) over severities, "
                        "per corruption and model (robustness.csv has every cell).").to_html()
    out.text("robustness.md", frame_cells(_pct_frame(table, ["miou", "clean_miou", "drop"]), "").to_markdown())
    return [Section("corruptions", "Corruptions", body)]


def _pct_frame(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    f = frame.copy()
    for c in cols:
        f[c + "_pct"] = (100 * f.pop(c)).round(1)
    return f


def _clicks_sections(out: _Out, inputs: _Inputs, n_boot: int) -> list[Section]:
    """Interactive protocols: the mIoU-vs-clicks curve per protocol and the NoC table (noc.csv/.md/.tex)."""
    if not inputs.click_protocols:
        return []
    body = ""
    for protocol in inputs.click_protocols:
        fig = None if inputs.summary.empty else F.clicks_figure(inputs.summary, protocol, inputs.colors, inputs.scope)
        if fig is None:
            out.notes.append(f"protocol '{protocol}': no successful click sequence, so no mIoU-vs-clicks curve")
            continue
        stem = f"miou_vs_clicks_{_safe(protocol)}"
        files = out.figure(fig, stem)
        body += figure_html(stem, out.pngs[stem], f"mIoU@k against the number of clicks k, protocol '{protocol}', "
                            f"{inputs.scope}; bands: bootstrap 95% CI over objects; dotted: the NoC targets.", files)
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
    return [Section("clicks", "Interactive: mIoU vs clicks and NoC", body)]


def _summary_section(inputs: _Inputs, s_cells) -> Section:
    """The summary table and the failures by reason."""
    body = s_cells.to_html()
    reasons = failure_reasons(inputs.df)
    if not reasons.empty:
        body += "<h3>Failures</h3>" + frame_cells(reasons, "Failed rows by model, dataset, protocol and error "
                                                  "(counted in the 'Failed' column, never dropped silently).").to_html()
    return Section("summary", "Summary table", body)


def _grid_sections(out: _Out, inputs: _Inputs, grid_objects, n_grid: int, image_loader) -> list[Section]:
    """The visual grid: photo + prompt, GT and every model's mask for the chosen prompts."""
    keys = pick_grid_keys(inputs.df, grid_objects, n_grid)
    if not keys:
        out.notes.append("no successful result with a mask: no visual grid")
        return []
    images = _Images(inputs.manifests, image_loader)
    items = build_grid_items(inputs.df, keys, images)
    fig = F.grid_figure(items, sorted(inputs.df["model"].unique()), inputs.colors)
    files = out.figure(fig, "grid", dpi=F.GRID_DPI)
    out.notes.extend(dict.fromkeys(images.notes))
    how = "named objects" if grid_objects else "the objects whose IoU differs most between models (one prompt each)"
    return [Section("grid", "Visual comparison", figure_html(
        "grid", out.pngs["grid"], f"Rows: {how}. Columns: photo with the prompt (box; green + / red − points), "
        "GT (amber), each model's mask in its colour with its IoU; cyan circles: sampling locations "
        "(sized by weight) when the model records them.", files))]


def _leaderboard_section(out: _Out, board: dict) -> Section:
    """leaderboard.json and the provenance section; disagreeing runs become notes."""
    for c in board["conflicts"]:
        out.notes.append(f"runs disagree on {c['section']} '{c['name']}' (run {c['run']}); leaderboard.json keeps the first")
    out.text("leaderboard.json", json.dumps(board, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return Section("provenance", "Provenance", _provenance_html(board))


def _write_page(out: _Out, inputs: _Inputs, board: dict, sections: list[Section]) -> None:
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


def _ranked_board(inputs: _Inputs, n_boot: int, out: _Out) -> dict:
    """leaderboard.json's ``board`` (``sambench.leaderboard``), or why these runs cannot be ranked together."""
    from sambench.leaderboard.board import BoardInput, build_board, check_runs

    board = BoardInput(inputs.df, inputs.manifests, inputs.run_dirs)
    try:
        check_runs(board)
        return build_board(board, n_boot=n_boot, out_dir=out.out)
    except SambenchError as exc:
        out.notes.append(f"leaderboard.json ranks nothing: {exc}")
        return {"refused": str(exc)}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def _provenance_html(board: dict) -> str:
    def block(title: str, obj) -> str:
        return f"<h3>{html.escape(title)}</h3><pre>{html.escape(json.dumps(obj, indent=1, sort_keys=True))}</pre>"

    return (block("protocols", board["protocols"] or board["versions"]) + block("datasets", board["datasets"]) +
            block("models", board["models"]) + block("runs", board["runs"]) +
            '<p class="note">Every number above is in <a href="leaderboard.json">leaderboard.json</a> at full precision.</p>')
