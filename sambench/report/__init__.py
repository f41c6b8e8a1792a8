"""Reports: the files a person reads about some runs, built only from their stores and manifests.

Public API:

* :func:`write_report` — tables (CSV/Markdown/LaTeX), figures (PNG/PDF/SVG), ``index.html`` and
  ``leaderboard.json`` of one or more run directories (``sambench report``).
* :func:`model_colors` — the model → colour mapping every figure uses.
* :func:`compare_runs`, :class:`CompareResult`, :class:`CompareRefused` — the regression gate
  (``sambench compare``), defined in ``sambench.analysis.compare`` and re-exported here, where
  docs/reports.md has always named it.

The numbers come from ``sambench.analysis`` (summary, NoC, the corruptions' mCE, the ranked board); the
ranked boards of many runs are ``sambench.leaderboard``. docs/reports.md documents every artefact and
convention.
"""

from sambench.analysis.compare import CompareRefused, CompareResult, compare_runs
from sambench.report.build import write_report
from sambench.report.common import model_colors

__all__ = ["write_report", "compare_runs", "CompareResult", "CompareRefused", "model_colors"]
