"""Reports, leaderboard and the regression gate, built only from results stores and manifests.

Public API:

* :func:`write_report` — tables (CSV/Markdown/LaTeX), figures (PNG/PDF), ``index.html`` and
  ``leaderboard.json`` of one or more run directories (``sambench report``).
* :func:`compare_runs` → :class:`CompareResult` — paired comparison of a candidate run against a baseline
  with bootstrap CIs, Wilcoxon p-values and a pass/fail verdict (``sambench compare``).
* :func:`model_colors` — the model → colour mapping every figure uses.

docs/reports.md documents every artefact and convention.
"""

from sambench.report.build import write_report
from sambench.report.common import model_colors
from sambench.analysis.compare import CompareRefused, CompareResult, compare_runs

__all__ = ["write_report", "compare_runs", "CompareResult", "CompareRefused", "model_colors"]
