"""The files of ``sambench agree --out DIR``: the per-prompt table, the per-group table and the grid of the
least-agreeing prompts (``sambench.analysis.agree`` computes them; docs/reports.md, "sambench agree").

* ``agree.csv`` — one row per compared prompt and model pair: the prompt key, both statuses, ``agreement``
  (IoU of A's and B's masks), both scores and ``score_diff`` (A − B), both GT IoUs;
* ``agree_summary.csv`` / ``agree_summary.md`` — one row per (model pair, dataset, protocol, level,
  condition): n, mean / min agreement, the fractions >= 0.99, >= 0.9, < 0.5, the largest |score difference|,
  mIoU A and B and their paired difference with its 95% CI and p (points);
* ``agree.json`` — the result (:meth:`AgreeResult.to_dict`), gate included;
* ``agree_grid.png`` — the least-agreeing prompts, one per row: photo with the prompt, GT, A's mask and B's
  mask side by side (:func:`sambench.report.figures.grid_figure`, photos and GT from
  :class:`sambench.report.grid.Images`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sambench.analysis.agree import GROUP, AgreeResult
from sambench.report import figures as F
from sambench.report.common import model_colors
from sambench.report.grid import GRID_KEY, Images, build_grid_items
from sambench.report.tables import Cells
from sambench.store import PROMPT_COLUMNS

PER_PROMPT = ["model_a", "model_b", *PROMPT_COLUMNS, "status_a", "status_b", "agreement", "score_a", "score_b",
              "score_diff", "iou_a", "iou_b"]
SIDES = ("A", "B")


def agreement_grid(result: AgreeResult, n_worst: int):
    """The figure of the ``n_worst`` least-agreeing prompts (None when no prompt has two masks), and its notes."""
    worst = result.worst(n_worst)
    worst = worst[(worst["status_a"] == "ok") | (worst["status_b"] == "ok")]
    if worst.empty:
        return None, []
    images = Images(result.manifests, None)
    items = []
    for _, r in worst.iterrows():
        sides = []
        for side, suffix in zip(SIDES, ("_a", "_b")):
            sides.append({**{k: r[k] for k in GRID_KEY}, "model": side, "status": r["status" + suffix],
                          "prompt": r["prompt" + suffix], "mask_rle": r["mask_rle" + suffix], "iou": r["iou" + suffix],
                          "extras": None})
        item = build_grid_items(pd.DataFrame(sides), [{k: r[k] for k in GRID_KEY}], images)[0]
        item.level = f"{r['level']}\nA-B mask IoU {r['agreement']:.4f}"
        items.append(item)
    fig = F.grid_figure(items, list(SIDES), model_colors(SIDES),
                        title=f"least-agreeing prompts: A = {result.run_a} ({', '.join(sorted(set(worst['model_a'])))}), "
                              f"B = {result.run_b} ({', '.join(sorted(set(worst['model_b'])))})")
    return fig, list(dict.fromkeys(images.notes))


def summary_frame(result: AgreeResult) -> pd.DataFrame:
    cols = GROUP + ["n", "both_failed", "one_failed", "mean", "min", "frac_ge_0.99", "frac_ge_0.9", "frac_lt_0.5",
                    "max_abs_score_diff", "objects", "miou_a", "miou_b", "delta", "ci_lo", "ci_hi", "p_value"]
    return pd.DataFrame(result.groups, columns=cols)


def write_agreement(result: AgreeResult, out_dir: str | Path, n_worst: int = 8) -> dict[str, Path]:
    """Write the files of the module docstring into ``out_dir``; returns ``{file name: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    pp = result.per_prompt.reindex(columns=PER_PROMPT)
    pp.to_csv(out / "agree.csv", index=False)
    summary = summary_frame(result)
    summary.to_csv(out / "agree_summary.csv", index=False)
    text = lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else (
        f"{v:.4f}" if isinstance(v, float) else str(v))
    table = Cells(headers=list(summary.columns), rows=[[text(v) for v in row] for row in summary.itertuples(index=False)],
                  caption=f"Mask agreement, A = `{result.run_a}`, B = `{result.run_b}`: agreement = IoU of A's and "
                          f"B's masks per prompt; delta = mIoU A − B in points, paired by object, with its 95% "
                          f"bootstrap CI.")
    table.bold = [[False] * len(table.headers) for _ in table.rows]
    (out / "agree_summary.md").write_text("# Mask agreement\n\n" + table.to_markdown(), encoding="utf-8")
    doc = result.to_dict(n_worst)
    fig, notes = agreement_grid(result, n_worst)
    doc["grid_notes"] = notes
    (out / "agree.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for name in ("agree.csv", "agree_summary.csv", "agree_summary.md", "agree.json"):
        written[name] = out / name
    if fig is not None:
        paths, _ = F.save_figure(fig, out, "agree_grid", ("png",), dpi=F.GRID_DPI)
        written.update({p.name: p for p in paths.values()})
    return written


__all__ = ["agreement_grid", "summary_frame", "write_agreement"]
