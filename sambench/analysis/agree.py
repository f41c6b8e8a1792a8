"""Mask agreement between two runs on the same prompts (``sambench agree``; ``leaderboard --rerun`` too).

Conventions (docs/reports.md, "sambench agree", says the same):

* **Same prompts or nothing.** Two runs are compared only when they asked the same questions: the
  datasets' content hashes, the common protocols' version, seed and decoding, and the stored
  ``prompt_hash`` of every prompt key both hold (:func:`sambench.analysis.compat.find_mismatches`, the check
  ``compare`` and ``leaderboard`` share, plus the protocol seed). Otherwise :class:`AgreeRefused`, one line.
* **Pairs of models.** When both runs hold the same model names, each model is paired with its namesake
  (a model against an earlier run of itself); otherwise every model of A is paired with every model of B
  (``sam-vit-b`` against ``hf-sam-vit-base``).
* **Per prompt** (rows matched on the prompt key: dataset, image, object, protocol, level, draw, corruption,
  severity): ``agreement`` = the IoU of A's and B's masks (:func:`sambench.metrics.iou`, two empty masks
  agree: 1.0); ``score_diff`` = A's score − B's score. A prompt where one run failed and the other
  answered has agreement 0 (it cannot be the same answer); a prompt both failed is counted
  (``both_failed``) and has no agreement. Image-level failure rows (no object) are not prompts.
* **Per (model pair, dataset, protocol, level, corruption, severity)**: ``n`` prompts, ``mean`` and ``min``
  agreement, the fractions with agreement >= 0.99, >= 0.9 and < 0.5, the largest |score difference|, and the
  metric difference ``delta`` = mIoU(A) − mIoU(B) in points with its paired 95% CI and Wilcoxon p-value:
  the pairing unit is the object (its GT IoU averaged over the draws both runs hold, a failed row scoring 0),
  with the bootstrap and the test ``compare`` uses (:func:`sambench.metrics.bootstrap_ci`,
  :func:`sambench.analysis.stats.wilcoxon`).
* **Gate** (``--min-iou X``): the runs fail when ANY compared prompt agrees below X (a prompt one side failed
  counts 0): "did the port, the dtype or the upgrade change my masks?" is a per-mask question, and a mean
  hides one broken mask among thousands.

:func:`mask_agreement` is the one comparison of two sets of stored rows; ``leaderboard --rerun``
(:mod:`sambench.leaderboard.rerun`) calls it with the stored rows and the re-run rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from sambench.analysis.compat import find_mismatches
from sambench.analysis.stats import wilcoxon
from sambench.metrics import bootstrap_ci, decode_rle, iou
from sambench.store import LEVEL_COLUMNS, PROMPT_COLUMNS, load_runs, merge_manifests
from sambench.types import SambenchError, check_min

RunDirs = Union[str, Path, Sequence[Union[str, Path]]]
#: A prompt's key (the result key without the model).
PROMPT_KEY = list(PROMPT_COLUMNS)
#: One cell of agreement statistics: the model pair and the summary table's cell without the model.
GROUP = ["model_a", "model_b"] + [c for c in LEVEL_COLUMNS if c != "model"]
#: Agreement thresholds whose fractions every group reports: (column, test).
FRACTIONS = (("frac_ge_0.99", lambda v: v >= 0.99), ("frac_ge_0.9", lambda v: v >= 0.9),
             ("frac_lt_0.5", lambda v: v < 0.5))
N_WORST = 8


class AgreeRefused(SambenchError):
    """The two runs did not answer the same prompts (or share none); exit code 2."""


def _mask(rle) -> Optional[np.ndarray]:
    return decode_rle(json.loads(rle)) if isinstance(rle, str) and rle else None


def _pair_iou(status_a, rle_a, status_b, rle_b) -> float:
    """Agreement of one prompt (see the module docstring); NaN when both runs failed it."""
    ok_a, ok_b = status_a == "ok", status_b == "ok"
    if not ok_a and not ok_b:
        return float("nan")
    if ok_a != ok_b:
        return 0.0
    a, b = _mask(rle_a), _mask(rle_b)
    if a is None or b is None:
        return 1.0 if a is None and b is None else 0.0
    if a.shape != b.shape:
        return 0.0
    return float(iou(a, b))


def model_pairs(models_a: Sequence[str], models_b: Sequence[str]) -> list[tuple[str, str]]:
    """Namesakes when both sides hold the same models, else every (A, B) combination."""
    a, b = sorted(set(models_a)), sorted(set(models_b))
    if a == b:
        return [(m, m) for m in a]
    return [(x, y) for x in a for y in b]


def mask_agreement(rows_a: pd.DataFrame, rows_b: pd.DataFrame,
                   pairs: Optional[list[tuple[str, str]]] = None) -> pd.DataFrame:
    """One row per prompt both sides hold, per model pair: the prompt key, ``model_a``/``model_b``, their
    statuses, ``agreement`` (mask IoU), scores and ``score_diff``, GT IoUs, prompt hashes and masks' RLE
    (``mask_rle_a``/``_b``, for figures). ``rows_*`` are stored rows (``sambench.store.Row`` columns)."""
    pairs = pairs if pairs is not None else model_pairs(rows_a["model"].unique(), rows_b["model"].unique())
    cols = PROMPT_KEY + ["status", "mask_rle", "score", "iou", "prompt_hash", "prompt"]
    a_obj, b_obj = rows_a[rows_a["level"] != ""], rows_b[rows_b["level"] != ""]
    frames = []
    for ma, mb in pairs:
        m = a_obj[a_obj["model"] == ma][cols].merge(b_obj[b_obj["model"] == mb][cols], on=PROMPT_KEY,
                                                     suffixes=("_a", "_b"))
        m.insert(0, "model_b", mb)
        m.insert(0, "model_a", ma)
        frames.append(m)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model_a", "model_b"] + PROMPT_KEY)
    out["agreement"] = [_pair_iou(sa, ra, sb, rb) for sa, ra, sb, rb in
                        zip(out.get("status_a", []), out.get("mask_rle_a", []), out.get("status_b", []),
                            out.get("mask_rle_b", []))]
    if len(out):
        out["score_diff"] = pd.to_numeric(out["score_a"], errors="coerce") - pd.to_numeric(out["score_b"],
                                                                                          errors="coerce")
    else:
        out["score_diff"] = pd.Series(dtype=float)
    return out


def agreement_groups(per_prompt: pd.DataFrame, n_boot: int = 1000) -> list[dict]:
    """The per-group statistics of :func:`mask_agreement`'s table (see the module docstring)."""
    groups = []
    if per_prompt.empty:
        return groups
    for key, g in per_prompt.groupby(GROUP, sort=True):
        v = g["agreement"].dropna().to_numpy(dtype=float)
        both_failed = int(g["agreement"].isna().sum())
        sd = g["score_diff"].dropna().abs()
        entry = {**dict(zip(GROUP, key)), "n": int(v.size), "both_failed": both_failed,
                 "one_failed": int((g["status_a"] != g["status_b"]).sum()),
                 "mean": float(v.mean()) if v.size else float("nan"),
                 "min": float(v.min()) if v.size else float("nan"),
                 **{name: float(test(v).mean()) if v.size else float("nan") for name, test in FRACTIONS},
                 "max_abs_score_diff": float(sd.max()) if len(sd) else float("nan")}
        entry.update(_metric_difference(g, key, n_boot))
        groups.append(entry)
    return groups


def _metric_difference(g: pd.DataFrame, key: tuple, n_boot: int) -> dict:
    """mIoU(A) − mIoU(B) in points, paired by object (as ``compare``): per object the GT IoU averaged over
    the draws of this table (failed = 0), the bootstrap CI of the mean difference and its Wilcoxon p."""
    va = np.where(g["status_a"] == "ok", pd.to_numeric(g["iou_a"], errors="coerce").fillna(0.0), 0.0)
    vb = np.where(g["status_b"] == "ok", pd.to_numeric(g["iou_b"], errors="coerce").fillna(0.0), 0.0)
    per_obj = g.assign(va=va, vb=vb).groupby(["image_id", "object_id"], sort=True)[["va", "vb"]].mean()
    d = (per_obj["va"] - per_obj["vb"]).to_numpy(dtype=float, copy=True)
    d[np.abs(d) < 1e-12] = 0.0
    lo, hi = bootstrap_ci(d, n_boot=n_boot, key="agree|" + "|".join(map(str, key)))
    return {"objects": int(len(per_obj)), "miou_a": 100.0 * float(per_obj["va"].mean()),
            "miou_b": 100.0 * float(per_obj["vb"].mean()), "delta": 100.0 * float(d.mean()),
            "ci_lo": 100.0 * lo, "ci_hi": 100.0 * hi, "p_value": wilcoxon(d)}


@dataclass
class AgreeResult:
    """Outcome of :func:`agree_runs`: ``per_prompt`` (:func:`mask_agreement`), ``groups``
    (:func:`agreement_groups`), and the gate (``min_iou``; None: no gate)."""

    run_a: str
    run_b: str
    per_prompt: pd.DataFrame
    groups: list[dict] = field(default_factory=list)
    min_iou: Optional[float] = None
    manifests: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def below(self) -> pd.DataFrame:
        """Prompts under the gate's threshold (empty without a gate)."""
        if self.min_iou is None:
            return self.per_prompt.iloc[:0]
        return self.per_prompt[self.per_prompt["agreement"] < self.min_iou]

    @property
    def passed(self) -> bool:
        return self.below.empty

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def worst(self, n: int = N_WORST) -> pd.DataFrame:
        """The ``n`` least-agreeing prompts (lowest agreement first; ties in key order)."""
        pp = self.per_prompt.dropna(subset=["agreement"])
        return pp.sort_values(["agreement"] + GROUP[:2] + PROMPT_KEY, kind="mergesort").head(n)

    def to_dict(self, n_worst: int = N_WORST) -> dict:
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v
        keep = GROUP[:2] + PROMPT_KEY + ["status_a", "status_b", "agreement", "score_diff"]
        return {"run_a": self.run_a, "run_b": self.run_b, "min_iou": self.min_iou, "passed": self.passed,
                "exit_code": self.exit_code, "prompts": int(len(self.per_prompt)), "below": int(len(self.below)),
                "groups": [{k: clean(v) for k, v in g.items()} for g in self.groups],
                "least_agreeing": [{k: clean(_plain(r[k])) for k in keep} for _, r in self.worst(n_worst).iterrows()],
                "warnings": self.warnings}

    def format_table(self, n_worst: int = N_WORST) -> str:
        """The terminal report: one line per group, the least-agreeing prompts, the verdict."""
        f = lambda v, spec: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)
        rows = [{"A": g["model_a"], "B": g["model_b"], "dataset": g["dataset"], "protocol": g["protocol"],
                 "level": g["level"], **({"condition": f"{g['corruption']}:{g['severity']}"} if g["severity"] else {}),
                 "n": g["n"], "mean IoU": f(g["mean"], ".6f"), "min IoU": f(g["min"], ".6f"),
                 ">=.99": f(g["frac_ge_0.99"], ".3f"), ">=.9": f(g["frac_ge_0.9"], ".3f"),
                 "<.5": f(g["frac_lt_0.5"], ".3f"), "max|dscore|": f(g["max_abs_score_diff"], ".2g"),
                 "mIoU A-B": f(g["delta"], "+.2f"), "95% CI": f"[{f(g['ci_lo'], '+.2f')}, {f(g['ci_hi'], '+.2f')}]"}
                for g in self.groups]
        lines = [f"mask agreement (IoU of A's and B's masks per prompt), A = {self.run_a}, B = {self.run_b}",
                 pd.DataFrame(rows).to_string(index=False) if rows else "(no prompt in common)"]
        worst = self.worst(n_worst)
        if len(worst):
            lines.append(f"least-agreeing prompts (lowest {len(worst)}):")
            for _, r in worst.iterrows():
                lines.append(f"  {r['agreement']:.6f}  {r['model_a']} vs {r['model_b']}: " + prompt_text(r))
        lines += [f"warning: {w}" for w in self.warnings]
        if self.min_iou is not None:
            if self.passed:
                lines.append(f"PASS: every one of {len(self.per_prompt)} prompt(s) agrees at IoU >= {self.min_iou:g}")
            else:
                lines.append(f"FAIL: {len(self.below)} of {len(self.per_prompt)} prompt(s) agree below IoU "
                             f"{self.min_iou:g} (worst {self.below['agreement'].min():.6f})")
        return "\n".join(lines)


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def prompt_text(r) -> str:
    """``dataset/image/object protocol level draw [corruption:severity]`` of a per-prompt row."""
    cond = f" {r['corruption']}:{r['severity']}" if int(r["severity"]) else ""
    return f"{r['dataset']}/{r['image_id']}/{r['object_id']} {r['protocol']} level {r['level']} draw {r['draw']}{cond}"


def _dirs(run: RunDirs) -> list[Path]:
    return [Path(d) for d in run] if isinstance(run, (list, tuple)) else [Path(run)]


def _load(run: RunDirs) -> tuple[pd.DataFrame, dict, list[dict]]:
    dirs = _dirs(run)
    df, manifests = load_runs(dirs, with_masks=True)
    merged, _ = merge_manifests(manifests, [str(d) for d in dirs])
    return df, merged, manifests


def check_same_prompts(rows_a: pd.DataFrame, man_a: dict, rows_b: pd.DataFrame, man_b: dict, what: str) -> None:
    """Refuse (:class:`AgreeRefused`, one line naming ``what``) unless both answered the same prompts."""
    found = find_mismatches(rows_a, man_a, rows_b, man_b)
    problems = found.datasets + found.prompts
    pa, pb = man_a.get("protocols") or {}, man_b.get("protocols") or {}
    for name in sorted(set(pa) & set(pb)):
        sa = ((pa[name] or {}).get("identity") or {}).get("seed")
        sb = ((pb[name] or {}).get("identity") or {}).get("seed")
        if sa is not None and sb is not None and sa != sb:
            problems.append(f"protocol '{name}' seed {sa} vs {sb}")
    if problems:
        raise AgreeRefused(f"{what}: the prompts are not identical ({'; '.join(problems)}): refusing to compare masks")


def agree_runs(run_a: RunDirs, run_b: RunDirs, min_iou: Optional[float] = None, n_boot: int = 1000) -> AgreeResult:
    """Compare the masks of two runs prompt by prompt (see the module docstring for every convention)."""
    if min_iou is not None:
        check_min(min_iou, 0.0, "--min-iou", "agree")
        if min_iou > 1.0:
            raise SambenchError(f"agree: --min-iou must be <= 1 (an IoU), got {min_iou!r}")
    name_a, name_b = "+".join(map(str, _dirs(run_a))), "+".join(map(str, _dirs(run_b)))
    rows_a, man_a, mans_a = _load(run_a)
    rows_b, man_b, mans_b = _load(run_b)
    check_same_prompts(rows_a, man_a, rows_b, man_b, f"agree {name_a} {name_b}")
    per_prompt = mask_agreement(rows_a, rows_b)
    if per_prompt.empty:
        raise AgreeRefused(f"agree {name_a} {name_b}: the runs share no prompt key ({', '.join(PROMPT_KEY)})")
    result = AgreeResult(name_a, name_b, per_prompt, agreement_groups(per_prompt, n_boot), min_iou,
                         manifests=mans_a + mans_b)
    only_a = len(rows_a[rows_a["level"] != ""].drop_duplicates(PROMPT_KEY)) - len(per_prompt.drop_duplicates(PROMPT_KEY))
    if only_a > 0:
        result.warnings.append(f"{only_a} prompt key(s) of A are not in B and are not compared")
    return result


__all__ = ["AgreeRefused", "AgreeResult", "FRACTIONS", "GROUP", "agree_runs", "agreement_groups",
           "check_same_prompts", "mask_agreement", "model_pairs", "prompt_text"]
