"""Report tables: the summary table and the compact "paper table", as CSV, Markdown, LaTeX and HTML.

Conventions (docs/reports.md says the same):

* Values are **percent with one decimal** (``100 × fraction``, Python ``format(.1f)``); a missing value
  prints as an en dash in Markdown/HTML, ``--`` in LaTeX and an empty cell in CSV.
* **Bold rule**: in the summary table, within each (dataset, protocol, level) group of models, the highest
  mIoU, mBIoU, pairwise stability and union stability are bold; in the paper table, the highest mIoU of
  each column (prompt setting) is bold. Values are compared *as printed* (rounded to one decimal), so
  every model tied at the best printed value is bold. A group with fewer than two models with a value
  bolds nothing. ``n``, ``failed`` and CI bounds are never bold.
* The CSV of the summary carries the same rounded percent values (columns ``*_pct``) and a ``best``
  column naming the bold columns of the row; full-precision fractions are in ``leaderboard.json``.
* Paper table cells are the headline mIoU (cross-dataset mean when the runs hold several datasets). A
  cell averaged over fewer datasets than the runs hold is marked ``†`` (the average would not be
  comparable with the other models').
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

from sambench.config import Setting
from sambench.report.common import display_names, headline
from sambench.analysis.summary import ALL, SUMMARY_COLUMNS

METRIC_COLUMNS = ("miou", "mbiou", "stability_pairwise", "stability_union")
DASH = "\u2013"


def pct(v, missing: str = DASH) -> str:
    """``100·v`` with one decimal, or ``missing`` for None/NaN."""
    if v is None or pd.isna(v):
        return missing
    return f"{100.0 * float(v):.1f}"


def _rounded(v) -> Optional[float]:
    if v is None or pd.isna(v):
        return None
    return round(100.0 * float(v), 1)


def best_flags(values: list) -> list[bool]:
    """Which of ``values`` (fractions) are the best as printed; all False when < 2 values exist."""
    r = [_rounded(v) for v in values]
    present = [v for v in r if v is not None]
    if len(present) < 2:
        return [False] * len(values)
    top = max(present)
    return [v is not None and v == top for v in r]


@dataclass
class Cells:
    """A rendered-agnostic table: header, text cells, bold flags, rule positions, caption, notes."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    bold: list[list[bool]] = field(default_factory=list)
    breaks: list[int] = field(default_factory=list)  # a rule is drawn before these row indices
    align: str = ""
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    super_headers: Optional[list[tuple[str, int]]] = None  # (text, column span) row above the header

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown; bold as ``**x**``; the caption as a leading paragraph."""
        esc = lambda s: s.replace("|", "\\|")
        lines = []
        if self.caption:
            lines += [self.caption, ""]
        lines.append("| " + " | ".join(esc(h) for h in self.headers) + " |")
        lines.append("|" + "|".join("---:" if a == "r" else ":---" for a in self._align()) + "|")
        for row, bold in zip(self.rows, self.bold):
            lines.append("| " + " | ".join(f"**{esc(c)}**" if b else esc(c) for c, b in zip(row, bold)) + " |")
        for n in self.notes:
            lines += ["", n]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); bold as ``\\textbf``."""
        out = [f"% {latex_escape(self.caption)}" if self.caption else "% sambench table",
               "\\begin{tabular}{" + self._align() + "}", "\\toprule"]
        if self.super_headers:
            cells, rules, col = [], [], 1
            for text, span in self.super_headers:
                cells.append(f"\\multicolumn{{{span}}}{{c}}{{{latex_escape(text)}}}" if span > 1 else latex_escape(text))
                if text and span >= 1:
                    rules.append(f"\\cmidrule(lr){{{col}-{col + span - 1}}}")
                col += span
            out.append(" & ".join(cells) + " \\\\")
            out.append(" ".join(rules))
        out.append(" & ".join(latex_escape(h) for h in self.headers) + " \\\\")
        out.append("\\midrule")
        for i, (row, bold) in enumerate(zip(self.rows, self.bold)):
            if i in self.breaks and i > 0:
                out.append("\\midrule")
            cells = [latex_escape(c.replace(DASH, "--")) for c in row]
            out.append(" & ".join(f"\\textbf{{{c}}}" if b else c for c, b in zip(cells, bold)) + " \\\\")
        out.append("\\bottomrule")
        out.append("\\end{tabular}")
        for n in self.notes:
            out.append(f"% {latex_escape(n)}")
        return "\n".join(out) + "\n"

    def to_html(self, css_class: str = "table") -> str:
        """An HTML ``<table>``; bold as ``<b>``; rules as a ``group`` class on the first row of a group."""
        parts = [f'<table class="{css_class}">']
        if self.caption:
            parts.append(f"<caption>{html.escape(self.caption)}</caption>")
        parts.append("<thead>")
        if self.super_headers:
            parts.append("<tr>" + "".join(f'<th colspan="{span}">{html.escape(t)}</th>' for t, span in self.super_headers) + "</tr>")
        parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in self.headers) + "</tr></thead><tbody>")
        align = self._align()
        for i, (row, bold) in enumerate(zip(self.rows, self.bold)):
            cls = ' class="group"' if i in self.breaks and i > 0 else ""
            tds = []
            for c, b, a in zip(row, bold, align):
                text = f"<b>{html.escape(c)}</b>" if b else html.escape(c)
                tds.append(f'<td class="{"num" if a == "r" else "txt"}">{text}</td>')
            parts.append(f"<tr{cls}>" + "".join(tds) + "</tr>")
        parts.append("</tbody></table>")
        for n in self.notes:
            parts.append(f'<p class="note">{html.escape(n)}</p>')
        return "\n".join(parts)

    def _align(self) -> str:
        return self.align if len(self.align) == len(self.headers) else "l" * len(self.headers)


def latex_escape(s: str) -> str:
    """Escape LaTeX special characters of plain text."""
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
           "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\u2020": r"$^\dagger$"}
    return "".join(rep.get(ch, ch) for ch in str(s))


# ------------------------------------------------------------------------------------------ summary


def order_summary(summary: pd.DataFrame, settings: list[Setting]) -> pd.DataFrame:
    """Rows ordered by dataset (``ALL`` last), then setting order, then model name."""
    if summary.empty:
        return summary
    rank = {(s.protocol, s.level): i for i, s in enumerate(settings)}
    t = summary.assign(_all=summary["dataset"] == ALL,
                       _rank=[rank.get((p, l), len(rank)) for p, l in zip(summary["protocol"], summary["level"])])
    t = t.sort_values(["_all", "dataset", "_rank", "model"], kind="stable")
    return t.drop(columns=["_all", "_rank"]).reset_index(drop=True)


def _summary_best(summary: pd.DataFrame) -> dict[tuple[int, str], bool]:
    flags: dict[tuple[int, str], bool] = {}
    for _, g in summary.groupby(["dataset", "protocol", "level"], sort=False):
        for col in METRIC_COLUMNS:
            for idx, f in zip(g.index, best_flags(list(g[col]))):
                flags[(idx, col)] = f
    return flags


def summary_cells(summary: pd.DataFrame, settings: list[Setting]) -> Cells:
    """The summary table (one row per dataset × protocol × level × model) as :class:`Cells`."""
    t = order_summary(summary, settings)
    best = _summary_best(t)
    cells = Cells(headers=["Dataset", "Protocol", "Level", "Model", "n", "Failed", "mIoU", "mIoU 95% CI", "mBIoU",
                           "mBIoU 95% CI", "Stab. pairwise", "Stab. union"],
                  align="llllrrrrrrrr",
                  caption="Per dataset, protocol level and model: mean IoU / boundary IoU (%) over objects, "
                          "percentile-bootstrap 95% CI over objects, stability across draws (%). Bold: best "
                          "of the models in each (dataset, protocol, level) group.")
    prev = None
    for i, r in t.iterrows():
        group = (r["dataset"], r["protocol"], r["level"])
        if group != prev:
            cells.breaks.append(len(cells.rows))
            prev = group
        dataset = "ALL (mean of datasets)" if r["dataset"] == ALL else str(r["dataset"])
        row = [dataset, str(r["protocol"]), str(r["level"]), str(r["model"]), str(int(r["n"])), str(int(r["failed"])),
               pct(r["miou"]), f"[{pct(r['miou_lo'])}, {pct(r['miou_hi'])}]", pct(r["mbiou"]),
               f"[{pct(r['mbiou_lo'])}, {pct(r['mbiou_hi'])}]", pct(r["stability_pairwise"]),
               pct(r["stability_union"])]
        bold = [False] * 6 + [best[(i, "miou")], False, best[(i, "mbiou")], False, best[(i, "stability_pairwise")],
                              best[(i, "stability_union")]]
        cells.rows.append(row)
        cells.bold.append(bold)
    return cells


def summary_csv_frame(summary: pd.DataFrame, settings: list[Setting]) -> pd.DataFrame:
    """The summary in percent (one decimal) with a ``best`` column naming the row's bold metrics."""
    t = order_summary(summary, settings)
    best = _summary_best(t)
    # dataset ... level_value, n, failed: the clean image's rows (the report's corruptions section has the rest)
    out = t[[c for c in SUMMARY_COLUMNS[:SUMMARY_COLUMNS.index("failed") + 1] if c not in ("corruption", "severity")]].copy()
    for col in ("miou", "miou_lo", "miou_hi", "mbiou", "mbiou_lo", "mbiou_hi", "stability_pairwise", "stability_union"):
        out[col + "_pct"] = [_rounded(v) for v in t[col]]
    if "n_stability" in t:
        out["n_stability"] = t["n_stability"].astype(int)
    out["best"] = [";".join(c for c in METRIC_COLUMNS if best[(i, c)]) for i in t.index]
    return out


# ------------------------------------------------------------------------------------------ paper table


def paper_frame(summary: pd.DataFrame, settings: list[Setting]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(values, partial): models × settings headline mIoU (fractions) and a same-shape boolean frame that
    is True where the cross-dataset mean covers fewer datasets than the runs hold."""
    head = headline(summary)
    cols = [(s.protocol, s.level) for s in settings]
    models = sorted(summary["model"].unique()) if not summary.empty else []
    values = pd.DataFrame(index=models, columns=pd.MultiIndex.from_tuples(cols, names=["protocol", "level"]), dtype=float)
    partial = pd.DataFrame(False, index=models, columns=values.columns)
    per_ds = summary[summary["dataset"] != ALL]
    n_datasets = per_ds["dataset"].nunique()
    per_ds = per_ds[per_ds["n"] > 0]  # a dataset whose every image failed does not cover the average
    for _, r in head.iterrows():
        key = (r["protocol"], r["level"])
        if key in values.columns:
            values.loc[r["model"], key] = r["miou"]
            covered = per_ds[(per_ds["model"] == r["model"]) & (per_ds["protocol"] == r["protocol"]) &
                             (per_ds["level"] == r["level"])]["dataset"].nunique()
            partial.loc[r["model"], key] = n_datasets > 1 and covered < n_datasets
    return values, partial


def paper_cells(summary: pd.DataFrame, settings: list[Setting], scope: str) -> Cells:
    """The paper table (rows = models, columns = prompt settings, cells = headline mIoU %)."""
    values, partial = paper_frame(summary, settings)
    names = display_names(settings)
    protocols = [p for p, _ in values.columns]
    supers: list[tuple[str, int]] = [("", 1)]
    for p in protocols:
        if supers[-1][0] == p:
            supers[-1] = (p, supers[-1][1] + 1)
        else:
            supers.append((p, 1))
    cells = Cells(headers=["Model"] + [names[c] for c in values.columns], align="l" + "r" * len(values.columns),
                  caption=f"mIoU (%) per prompt setting — {scope}. Bold: best model per column.",
                  super_headers=supers)
    bold_cols = {c: dict(zip(values.index, best_flags(list(values[c])))) for c in values.columns}
    for m in values.index:
        row, bold = [str(m)], [False]
        for c in values.columns:
            text = pct(values.loc[m, c])
            row.append(text + ("\u2020" if partial.loc[m, c] else ""))
            bold.append(bold_cols[c][m])
        cells.rows.append(row)
        cells.bold.append(bold)
    if partial.to_numpy().any():
        cells.notes.append("\u2020 averaged over fewer datasets than the runs hold: not comparable with the other rows.")
    return cells


def paper_csv_frame(summary: pd.DataFrame, settings: list[Setting]) -> pd.DataFrame:
    """The paper table for CSV: ``model`` then one ``protocol/level`` column per setting (percent, 1 dp)."""
    values, partial = paper_frame(summary, settings)
    out = pd.DataFrame({"model": list(values.index)})
    for c in values.columns:
        out[f"{c[0]}/{c[1]}"] = [_rounded(v) for v in values[c]]
    if partial.to_numpy().any():
        out["partial_settings"] = [";".join(f"{c[0]}/{c[1]}" for c in values.columns if partial.loc[m, c]) for m in values.index]
    return out


def noc_cells(noc: pd.DataFrame) -> Cells:
    """The NoC table (one row per dataset × protocol × model): NoC@85/90/95 with CIs and NoF. Bold: the
    lowest NoC of each (dataset, protocol) group, compared as printed (two decimals). A table by corruption
    (``noc_table(..., by_corruption=True)``) adds an Image column (clean, or corruption and severity) and
    groups by it too."""
    by_image = "severity" in noc.columns
    image = ["Image"] if by_image else []
    cells = Cells(headers=["Dataset", "Protocol", *image, "Model", "n", "Failed", "NoC@85", "NoC@90", "NoC@95",
                           "NoF@85", "NoF@90", "NoF@95"], align="lll" + "l" * len(image) + "rrrrrrrr",
                  caption="Interactive protocols: mean number of clicks to reach IoU 85/90/95 % (an object that "
                          "never does counts as the click limit) with percentile-bootstrap 95% CI over objects; "
                          "NoF: objects that never reach it. Bold: fewest clicks in each (dataset, protocol"
                          + (", image" if by_image else "") + ").")
    group = ["dataset", "protocol"] + (["severity_", "corruption"] if by_image else [])
    t = noc.assign(_all=noc["dataset"] == ALL)
    if by_image:
        t = t.assign(severity_=t["severity"].astype(int))
    t = t.sort_values(["_all"] + group + ["model"], kind="stable")
    best = {}
    for _, g in t.groupby(group, sort=False):
        for k in ("85", "90", "95"):
            vals = [None if pd.isna(v) else round(float(v), 2) for v in g[f"noc{k}"]]
            present = [v for v in vals if v is not None]
            for idx, v in zip(g.index, vals):
                best[(idx, k)] = len(present) >= 2 and v is not None and v == min(present)
    prev = None
    for i, r in t.iterrows():
        if tuple(r[c] for c in group) != prev:
            cells.breaks.append(len(cells.rows))
            prev = tuple(r[c] for c in group)
        noc_text = [DASH if pd.isna(r[f"noc{k}"]) else f"{r[f'noc{k}']:.2f} [{r[f'noc{k}_lo']:.2f}, {r[f'noc{k}_hi']:.2f}]"
                    for k in ("85", "90", "95")]
        seen = ["clean" if not int(r["severity"]) else f"{r['corruption']} {int(r['severity'])}"] if by_image else []
        cells.rows.append(["ALL (mean of datasets)" if r["dataset"] == ALL else str(r["dataset"]), str(r["protocol"]),
                           *seen, str(r["model"]), str(int(r["n"])), str(int(r["failed"]))] + noc_text
                          + [f"{r[f'nof{k}']:g}" for k in ("85", "90", "95")])
        cells.bold.append([False] * (5 + len(image)) + [best[(i, k)] for k in ("85", "90", "95")] + [False] * 3)
    return cells


def frame_cells(df: pd.DataFrame, caption: str = "") -> Cells:
    """Any small DataFrame as plain :class:`Cells` (no bold), e.g. the failure reasons."""
    cells = Cells(headers=[str(c) for c in df.columns], caption=caption,
                  align="".join("r" if pd.api.types.is_numeric_dtype(df[c]) else "l" for c in df.columns))
    for _, r in df.iterrows():
        cells.rows.append(["" if pd.isna(v) else str(v) for v in r])
        cells.bold.append([False] * len(df.columns))
    return cells
