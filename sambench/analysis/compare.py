"""``sambench compare``: the regression gate between a baseline run and a candidate run.

Statistics (docs/reports.md says the same):

* **Pairing unit: the object.** Rows are matched on the full key (model, dataset, image_id, object_id,
  protocol, level, draw, corruption, severity); for every object of a group (model, dataset, protocol,
  level, corruption, severity: a corrupted cell is gated on its own) the metric is
  averaged over the draws present in *both* runs, giving one paired value per object and run. The delta
  is the mean over objects of (candidate − baseline), in points (percent: × 100) — the same weighting as
  the summary table's mIoU.
* **Failures score 0.** A failed row (status ``failed``) counts as IoU = boundary IoU = 0, so a model that
  starts failing shows up as a drop; an image-level failure (``object_id = ''``) stands for every object
  row of that image, model and protocol that the other run has. Failed rows are counted per group
  (``base_failed``, ``cand_failed``, ``new_failures`` = ok → failed, ``fixed`` = failed → ok).
* **CI**: paired percentile bootstrap over objects (the differences are resampled), 1000 resamples, keyed
  by the group (reproducible). **p-value**: two-sided Wilcoxon signed-rank test
  (``scipy.stats.wilcoxon``, zero differences dropped: exact without ties, normal approximation with ties
  beyond 13 objects; with ties among <= 13 objects the exact sign-flip permutation p-value scipy would
  compute, enumerated in numpy); all-zero differences give p = 1.
* **Gate**: a group *regresses* when its delta < −``tol`` points AND the CI's upper bound < 0. Exit code
  0 = no regression, 1 = at least one regression, 2 = refused (different prompts or datasets, nothing in
  common) or bad input.
* **Refusals** (:mod:`sambench.analysis.compat`, the check ``leaderboard`` shares): prompts must be the
  same — the stored ``prompt_hash`` (and ``protocol_version``) of every common prompt key, and the
  manifests' protocol ``version`` and decoding of common protocols; datasets must be the same — the
  manifests' ``content_hash`` of common datasets. ``allow_prompt_mismatch`` /
  ``allow_dataset_mismatch`` turn a refusal into a warning.
* Keys present in only one run are counted (per group and in total) and listed (first few) — never
  silently ignored; they do not enter the deltas. A group measured by one run only is listed with
  ``n = 0`` and no statistics (verdict "only in baseline/candidate"); it cannot fail the gate.
* **Interactive protocols** (``kind: clicks``): a click after the first depends on the model's own
  previous mask, so only the first level's prompts (first click or start box) must match. ``metric``
  ``noc85`` / ``noc90`` / ``noc95`` gates on NoC instead of mIoU: per object the NoC (sambench.analysis.noc) is
  averaged over the sequences (draws) present in both runs, a failed sequence counts as the click limit,
  the group is (model, dataset, protocol) with level ``NoC@t``, values are in **clicks** (lower is
  better), and a group regresses when its delta > ``tol`` clicks AND the CI's lower bound > 0.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pandas as pd

from sambench.metrics import bootstrap_ci
from sambench.analysis.noc import SEQUENCE, click_protocols, sequences
from sambench.analysis.compat import expand_image_failures, key_text, manifest_mismatches, prompt_mismatches
from sambench.analysis.stats import wilcoxon
from sambench.store import KEY_COLUMNS, LEVEL_COLUMNS, OBJECT_COLUMNS, load_runs, load_tracks, merge_manifests
from sambench.types import SambenchError

#: metric → the row column it averages. ``jf``: a video row's J&F (its ``tracks`` entry, sambench.analysis.video),
#: gated like mIoU over the video protocols only (the unit is the track; a failed propagation counts 0).
METRICS = {"miou": "iou", "mbiou": "biou", "jf": "jf"}
#: NoC gates of interactive protocols: metric → NoC target column suffix (sambench.analysis.noc).
NOC_METRICS = {"noc85": "85", "noc90": "90", "noc95": "95"}
RunDirs = Union[str, Path, Sequence[Union[str, Path]]]
GROUP = list(LEVEL_COLUMNS)
N_EXAMPLES = 5


class CompareRefused(SambenchError):
    """The two runs cannot be compared (prompts or datasets differ, or nothing in common); exit code 2."""


@dataclass
class CompareResult:
    """Outcome of :func:`compare_runs`; ``groups`` holds one dict per (model, dataset, protocol, level).

    Group values are in points (percent): ``baseline``/``candidate`` are the paired means, ``delta`` their
    difference, ``ci_lo``/``ci_hi`` its bootstrap 95% CI, ``p_value`` the Wilcoxon p-value, ``n`` the
    number of paired objects (0 for a group only one run measured: its statistics are NaN), ``regression``
    the gate's verdict for the group.
    """

    baseline: str
    candidate: str
    metric: str
    tol: float
    groups: list[dict] = field(default_factory=list)
    only_baseline: int = 0
    only_candidate: int = 0
    only_examples: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    pairing: str = "object (per-object mean over the draws present in both runs; failed rows score 0)"

    @property
    def regressions(self) -> list[dict]:
        return [g for g in self.groups if g["regression"]]

    @property
    def passed(self) -> bool:
        return not self.regressions

    @property
    def exit_code(self) -> int:
        """0 when no group regresses, 1 otherwise."""
        return 0 if self.passed else 1

    def to_dict(self) -> dict:
        """JSON-able dict (NaN → None)."""
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v
        return {"baseline": self.baseline, "candidate": self.candidate, "metric": self.metric, "tol_points": self.tol,
                "pairing": self.pairing, "passed": self.passed, "exit_code": self.exit_code,
                "regressions": [{k: g[k] for k in GROUP} for g in self.regressions],
                "groups": [{k: clean(v) for k, v in g.items()} for g in self.groups],
                "only_baseline": self.only_baseline, "only_candidate": self.only_candidate,
                "only_examples": self.only_examples, "failures": self.failures, "warnings": self.warnings}

    def format_table(self) -> str:
        """The terminal report: one line per group, then counts and the verdict."""
        noc = self.metric in NOC_METRICS
        name = {"miou": "mIoU (points)", "mbiou": "mBIoU (points)", "jf": "J&F of video tracks (points)"}.get(
            self.metric, f"NoC@{self.metric[3:]} (clicks)")
        head = f"{name}, baseline {self.baseline} vs candidate {self.candidate}; pairing unit: {self.pairing}"
        rows = []
        corrupted = any(g["severity"] for g in self.groups)
        for g in self.groups:
            f = lambda v: "  -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.2f}"
            p = g["p_value"]
            where = {"corruption": "none" if not g["severity"] else f"{g['corruption']}:{g['severity']}"} \
                if corrupted else {}
            rows.append({"model": g["model"], "dataset": g["dataset"], "protocol": g["protocol"], "level": g["level"],
                         **where, "n": g["n"], "base": f(g["baseline"]), "cand": f(g["candidate"]), "delta": f(g["delta"]),
                         "95% CI": f"[{f(g['ci_lo'])}, {f(g['ci_hi'])}]",
                         "p": "  -  " if p is None or math.isnan(p) else f"{p:.3g}",
                         "failed b/c": f"{g['base_failed']}/{g['cand_failed']}",
                         "only b/c": f"{g['only_baseline']}/{g['only_candidate']}",
                         "verdict": _verdict(g)})
        lines = [head, pd.DataFrame(rows).to_string(index=False) if rows else "(no paired results)"]
        fl = self.failures
        lines.append(f"failed rows: baseline {fl.get('baseline', 0)}, candidate {fl.get('candidate', 0)} "
                     f"(new failures {fl.get('new', 0)}, fixed {fl.get('fixed', 0)}); failed rows score 0")
        lines.append(f"keys only in baseline: {self.only_baseline}; only in candidate: {self.only_candidate}")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        if self.passed and noc:
            lines.append(f"PASS: no group needs more than {self.tol:g} clicks more with its CI lower bound above 0")
        elif self.passed:
            lines.append(f"PASS: no group dropped by more than {self.tol:g} points with its CI upper bound below 0")
        else:
            which = "; ".join("/".join(str(g[k]) for k in GROUP) + f" {g['delta']:+.2f}" for g in self.regressions)
            lines.append(f"FAIL: {len(self.regressions)} regression(s) beyond {self.tol:g} {'clicks' if noc else 'points'}: {which}")
        return "\n".join(lines)


def _verdict(g: dict) -> str:
    if g["n"] == 0:
        return "only in baseline" if g["only_baseline"] else "only in candidate"
    if g["regression"]:
        return "REGRESSION"
    if g.get("lower_is_better"):
        return "better" if g["ci_hi"] < 0 else "ok"
    return "better" if g["ci_lo"] > 0 else "ok"


def _dirs(run: RunDirs) -> list[Path]:
    return [Path(d) for d in run] if isinstance(run, (list, tuple)) else [Path(run)]


def _load(run: RunDirs, metric: str = "miou") -> tuple[pd.DataFrame, dict]:
    """Rows of one run (or of its shards, merged by ``load_runs``) and their merged manifest sections; for
    ``metric`` jf, only the rows of video protocols, with their J&F (``jf``) joined from the tracks table."""
    dirs = _dirs(run)
    df, manifests = load_runs(dirs, with_masks=False)
    merged, _ = merge_manifests(manifests, [str(d) for d in dirs])
    df = df.drop(columns=["run"])
    if metric == "jf":
        tracks = load_tracks(dirs)
        df = df[df["protocol"].isin(set(tracks["protocol"]))]
        df = df.merge(tracks[list(KEY_COLUMNS) + ["jf"]], on=list(KEY_COLUMNS), how="left")
    return df, merged


def _name(run: RunDirs) -> str:
    return "+".join(str(d) for d in _dirs(run))


def compare_runs(baseline_dir: RunDirs, candidate_dir: RunDirs, metric: str = "miou", tol: float = 0.5,
                 allow_prompt_mismatch: bool = False, allow_dataset_mismatch: bool = False,
                 n_boot: int = 1000) -> CompareResult:
    """Compare ``candidate_dir`` against ``baseline_dir`` (see the module docstring for every convention).

    Either side may be a list of run directories (shards of one run), merged with ``load_runs``.

    Raises :class:`CompareRefused` (one line, naming the keys/datasets) when prompts or datasets differ
    and that is not allowed, or when the runs share no result key.
    """
    _check_arguments(metric, tol)
    base, bman = _load(baseline_dir, metric)
    cand, cman = _load(candidate_dir, metric)
    if metric == "jf" and (base.empty or cand.empty):
        raise CompareRefused(f"compare --metric jf: {'the baseline' if base.empty else 'the candidate'} holds no "
                             f"video rows (a video protocol's tracks)")
    result = CompareResult(_name(baseline_dir), _name(candidate_dir), metric, float(tol))
    found = manifest_mismatches(bman, cman)
    _refuse_or_warn(result, "datasets", found.datasets, allow_dataset_mismatch, "--allow-dataset-mismatch")
    merged = _pair_keys(result, base, cand)
    both = merged[merged["_merge"] == "both"]
    interactive = click_protocols([bman, cman])
    _refuse_or_warn(result, "prompts", found.prompts + prompt_mismatches(base, cand, interactive), allow_prompt_mismatch,
                    "--allow-prompt-mismatch")
    only_b, only_c = merged[merged["_merge"] == "left_only"], merged[merged["_merge"] == "right_only"]
    _count_unpaired(result, only_b, only_c)
    _count_failures(result, base, cand, both)
    if metric in NOC_METRICS:
        if not interactive:
            raise CompareRefused(f"compare --metric {metric}: neither run holds an interactive (clicks) protocol")
        result.pairing = "object (per-object mean NoC over the sequences present in both runs; failed = click limit)"
        result.groups = _noc_groups(base, cand, interactive, NOC_METRICS[metric], tol, n_boot)
    else:
        result.groups = _group_statistics(both, only_b, only_c, metric, tol, n_boot)
    return result


def _check_arguments(metric: str, tol) -> None:
    if metric not in METRICS and metric not in NOC_METRICS:
        raise SambenchError(f"compare: unknown metric '{metric}' (use {', '.join([*METRICS, *NOC_METRICS])})")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise SambenchError(f"compare: --tol must be >= 0 points, got {tol!r}")


def _refuse_or_warn(result: CompareResult, what: str, problems: list[str], allowed: bool, flag: str) -> None:
    """Refuse (or, when allowed, warn about) runs whose ``what`` (prompts, datasets) differ."""
    if not problems:
        return
    msg = f"{what} differ between {result.baseline} and {result.candidate}: {'; '.join(problems)}"
    if not allowed:
        raise CompareRefused(f"{msg} — refusing to compare ({flag} to override)")
    result.warnings.append(msg)


def _pair_keys(result: CompareResult, base: pd.DataFrame, cand: pd.DataFrame) -> pd.DataFrame:
    """Outer merge of both runs on the result key (image failures expanded); refuses when none pairs."""
    base_x = expand_image_failures(base, cand)
    cand_x = expand_image_failures(cand, base)
    key = list(KEY_COLUMNS)
    cols = ["status", "iou", "biou", "prompt_hash", "protocol_version"] + (["jf"] if "jf" in base_x.columns else [])
    m = base_x[key + cols].merge(cand_x[key + cols], on=key, how="outer", suffixes=("_b", "_c"), indicator=True)
    if not (m["_merge"] == "both").any():
        raise CompareRefused(f"{result.baseline} and {result.candidate} share no result key "
                             f"({', '.join(KEY_COLUMNS)}): nothing to compare")
    return m


def _count_unpaired(result: CompareResult, only_b: pd.DataFrame, only_c: pd.DataFrame) -> None:
    result.only_baseline, result.only_candidate = int(len(only_b)), int(len(only_c))
    result.only_examples = {"baseline": [key_text(r) for _, r in only_b.head(N_EXAMPLES).iterrows()],
                            "candidate": [key_text(r) for _, r in only_c.head(N_EXAMPLES).iterrows()]}
    if len(only_b) or len(only_c):
        result.warnings.append(f"{len(only_b)} key(s) only in the baseline and {len(only_c)} only in the candidate "
                               f"are not compared (examples in the JSON)")


def _count_failures(result: CompareResult, base: pd.DataFrame, cand: pd.DataFrame, both: pd.DataFrame) -> None:
    fb, fc = both["status_b"] == "failed", both["status_c"] == "failed"
    result.failures = {"baseline": int((base["status"] == "failed").sum()),
                       "candidate": int((cand["status"] == "failed").sum()),
                       "new": int((~fb & fc).sum()), "fixed": int((fb & ~fc).sum())}


def _group_statistics(both: pd.DataFrame, only_b: pd.DataFrame, only_c: pd.DataFrame, metric: str, tol: float,
                      n_boot: int) -> list[dict]:
    """One dict per (model, dataset, protocol, level): paired per-object means, delta, CI, p, counts."""
    col = METRICS[metric]
    fb, fc = both["status_b"] == "failed", both["status_c"] == "failed"
    vals = both.assign(vb=np.where(fb, 0.0, both[f"{col}_b"].fillna(0.0)),
                       vc=np.where(fc, 0.0, both[f"{col}_c"].fillna(0.0)), fb=fb, fc=fc)
    vals = vals[vals["level"] != ""]
    per_obj = vals.groupby(list(OBJECT_COLUMNS), sort=True).agg(
        vb=("vb", "mean"), vc=("vc", "mean"), fb=("fb", "sum"), fc=("fc", "sum")).reset_index()
    counts = {"new_failures": vals[~vals["fb"] & vals["fc"]].groupby(GROUP).size(),
              "fixed": vals[vals["fb"] & ~vals["fc"]].groupby(GROUP).size(),
              "only_baseline": only_b[only_b["level"] != ""].groupby(GROUP).size(),
              "only_candidate": only_c[only_c["level"] != ""].groupby(GROUP).size()}
    groups = [_paired_group(key, g, counts, metric, tol, n_boot) for key, g in per_obj.groupby(GROUP, sort=True)]
    # groups measured by one run only: listed (n = 0, no statistics) so that nothing disappears silently
    paired = {tuple(g[k] for k in GROUP) for g in groups}
    nan = float("nan")
    for key in sorted(set(counts["only_baseline"].index) | set(counts["only_candidate"].index)):
        if key not in paired:
            groups.append({**dict(zip(GROUP, key)), "n": 0, "baseline": nan, "candidate": nan, "delta": nan,
                           "ci_lo": nan, "ci_hi": nan, "p_value": nan, "base_failed": 0, "cand_failed": 0,
                           "new_failures": 0, "fixed": 0, "only_baseline": int(counts["only_baseline"].get(key, 0)),
                           "only_candidate": int(counts["only_candidate"].get(key, 0)), "regression": False})
    return sorted(groups, key=lambda g: tuple(str(g[k]) for k in GROUP))


def _paired_group(key: tuple, g: pd.DataFrame, counts: dict, metric: str, tol: float, n_boot: int) -> dict:
    d = (g["vc"] - g["vb"]).to_numpy(dtype=float, copy=True)
    d[np.abs(d) < 1e-12] = 0.0
    lo, hi = bootstrap_ci(d, n_boot=n_boot, key="compare|" + "|".join(map(str, key)) + f"|{metric}")
    delta = 100.0 * float(d.mean())
    ci_lo, ci_hi = 100.0 * lo, 100.0 * hi
    return {**dict(zip(GROUP, key)), "n": int(len(g)),
            "baseline": 100.0 * float(g["vb"].mean()), "candidate": 100.0 * float(g["vc"].mean()),
            "delta": delta, "ci_lo": ci_lo, "ci_hi": ci_hi, "p_value": wilcoxon(d),
            "base_failed": int(g["fb"].sum()), "cand_failed": int(g["fc"].sum()),
            **{k: int(v.get(key, 0)) for k, v in counts.items()},
            "regression": bool(delta < -tol and ci_hi < 0.0)}


def _noc_groups(base: pd.DataFrame, cand: pd.DataFrame, protocols, target: str, tol: float,
                n_boot: int) -> list[dict]:
    """One dict per (model, dataset, protocol, corruption, severity) of the click ``protocols``: paired
    per-object NoC@target, level ``NoC@target`` (a corrupted cell is gated on its own, as for mIoU)."""
    cols = SEQUENCE + [f"noc{target}"]

    def per_sequence(df: pd.DataFrame) -> pd.DataFrame:
        s = sequences(df, protocols)
        s[f"noc{target}"] = np.where(s["failed"], s["click_limit"], s[f"noc{target}"])  # failed = never reached
        return s[cols + ["failed"]]

    m = per_sequence(base).merge(per_sequence(cand), on=SEQUENCE, suffixes=("_b", "_c"), how="inner")
    cell = ["model", "dataset", "protocol", "corruption", "severity"]
    per_obj = m.groupby(cell + ["image_id", "object_id"], sort=True).agg(
        vb=(f"noc{target}_b", "mean"), vc=(f"noc{target}_c", "mean"), fb=("failed_b", "sum"),
        fc=("failed_c", "sum")).reset_index()
    groups = []
    for (model, dataset, protocol, corruption, severity), g in per_obj.groupby(cell, sort=True):
        where = {"model": model, "dataset": dataset, "protocol": protocol, "level": f"NoC@{target}",
                 "corruption": corruption, "severity": int(severity)}
        key = (model, dataset, protocol, f"NoC@{target}") + ((corruption, str(int(severity))) if severity else ())
        d = (g["vc"] - g["vb"]).to_numpy(dtype=float, copy=True)
        lo, hi = bootstrap_ci(d, n_boot=n_boot, key="compare|" + "|".join(key))
        delta = float(d.mean())
        groups.append({**{k: where[k] for k in GROUP}, "n": int(len(g)), "baseline": float(g["vb"].mean()),
                       "candidate": float(g["vc"].mean()), "delta": delta, "ci_lo": lo, "ci_hi": hi,
                       "p_value": wilcoxon(d), "base_failed": int(g["fb"].sum()), "cand_failed": int(g["fc"].sum()),
                       "new_failures": 0, "fixed": 0, "only_baseline": 0, "only_candidate": 0,
                       "lower_is_better": True, "regression": bool(delta > tol and lo > 0.0)})
    return groups


def write_json(result: CompareResult, path: str | Path) -> Path:
    """Write ``result.to_dict()`` as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
