"""What every section of a report reads (:class:`ReportInputs`) and where it writes (:class:`ReportFiles`).

``sambench.report.build.write_report`` makes one of each; each section (``sections``, ``corruptions``,
``grid``) reads the inputs, writes its files through ``ReportFiles`` (every file by name, atomically) and
returns its part of ``index.html``. Numbers a later part needs (the NoC table, the mCE, the corruption
cells: ``leaderboard.json`` carries them) are kept on the inputs, so each is computed once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from sambench.analysis.noc import click_protocols
from sambench.analysis.settings import settings_info
from sambench.analysis.video import video_protocols
from sambench.files import atomic_write
from sambench.inputs.corruptions import CLEAN
from sambench.report import figures as F
from sambench.report.common import headline_scope, model_colors


class ReportFiles:
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


class ReportInputs:
    """What every section reads: the merged rows, manifests, per-object table, summary, settings, colours.

    ``objects`` is :func:`sambench.analysis.summary.per_object` of the rows, computed once for the summary
    and the ranked board. ``summary`` is the clean image's rows (corruption ``none``), which every classic
    table and figure shows; ``full_summary`` has every (corruption, severity) too, for the corruptions
    section."""

    def __init__(self, run_dirs: list[Path], df: pd.DataFrame, manifests: list[dict], summary: pd.DataFrame,
                 objects: pd.DataFrame) -> None:
        self.run_dirs, self.df, self.manifests, self.full_summary = run_dirs, df, manifests, summary
        self.objects = objects
        clean = (summary["corruption"] == CLEAN) & (summary["severity"] == 0)
        self.summary = summary[clean].drop(columns=["corruption", "severity"]).reset_index(drop=True)
        all_settings = settings_info(df, manifests)
        #: interactive (click) protocols get their own section; the comparison and paper table skip them
        self.click_protocols = sorted({s.protocol for s in all_settings if s.kind == "clicks"} | click_protocols(manifests))
        #: video protocols (their rows' iou is a track's mean J, they have no boundary IoU and no image to show):
        #: the video section shows them (J&F); the comparison, paper table, degradation curves and grid skip them
        self.video_protocols = video_protocols(manifests)
        self.settings = [s for s in all_settings if s.protocol not in self.click_protocols
                         and s.protocol not in self.video_protocols]
        self.all_settings = all_settings
        self.colors = model_colors(df["model"].unique())
        self.scope = headline_scope(summary)
        #: set by the sections that compute them, read by leaderboard.json
        self.noc: Optional[pd.DataFrame] = None
        self.mce: Optional[pd.DataFrame] = None
        self.mce_reference: Optional[str] = None
        self.corruption_cells: Optional[pd.DataFrame] = None
        #: the video summary (sambench.report.video), when the runs hold video rows
        self.video: Optional[pd.DataFrame] = None
