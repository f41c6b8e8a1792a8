"""Headline scores of the leaderboard: the registry, each score's definition, and how scores aggregate.

Every score is defined once, here; docs/metrics.md ("Headline scores") describes the same definitions for
readers, and ``sambench.analysis.ranking`` ranks models by them. A score is computed for one model on one
protocol, first per dataset, from that model's stored rows:

1. **Per object and level** (:class:`ScoreInput`): ``iou`` = the mean over the object's draws at that
   level, a failed draw scoring 0 (as ``compare`` counts it: a model never climbs the board by failing on
   hard objects; an image-level failure stands for every prompt the other models answered on that image);
   ``stability`` = pairwise stability (``sambench.metrics.stability``) over its successful draws, NaN when
   none succeeded.
2. **Per object**, the score's ``values``: one or more columns (a DataFrame indexed by object). An object
   with a NaN column is left out of that score.
3. **Per dataset**: ``statistic`` of the column means (the identity for a mean-like score; degraded/clean
   for the robustness ratio).
4. **Across datasets**: the plain mean of the dataset values (as HQ-SAM and Stable-SAM report), over every
   dataset the board holds for the protocol; a model missing one gets no cross-dataset figure.

The CI is a stratified percentile bootstrap over objects (``sambench.analysis.stats.stratified_bootstrap``:
objects resampled within each dataset, steps 3–4 repeated on each resample), 95%, keyed by the score:
every model is resampled with the same object indices, so equal values give equal intervals.

Registry: :data:`SCORES` maps a name to its :class:`HeadlineScore`, in column order: ``clean_miou``,
``degraded_miou``, ``robustness`` (the ratio degraded/clean: a prompt-robustness score, not the corruption
tables of ``sambench.report.corruptions``), ``auc``, ``stability``, ``noc90`` (interactive protocols, from
the raw rows' click sequences via ``sambench.analysis.noc``) and ``paper_avg``. A score whose rows a
protocol lacks returns ``None`` from ``values`` and is simply not a column for it. :func:`register` adds
a score: it may read the raw store rows (``ScoreInput.rows``, with ``prompt`` and ``extras``) and declares
``higher_is_better`` / ``unit`` (``"percent"`` for fractions in [0, 1] printed × 100, ``"ratio"`` printed
with two decimals, ``"number"`` for raw values such as clicks).

**Video protocols** (``ScoreInput.video``) are scored by **J&F**, DAVIS's headline, not by the rows' ``iou``
(which holds a track's mean J): the per-object value is the track's J&F (``tracks.jf``: the mean over the
scored frames of J and of F, halved) averaged over draws, a failed draw scoring 0, read from the object table's
``jf`` column. A score applies to one kind of protocol (``HeadlineScore.video``): the image scores above to
image protocols; ``clean_jf``, ``degraded_jf``, ``jf_robustness``, ``jf_auc`` and ``mask_jf`` (the GT-mask
ceiling) to video protocols. They reuse the image scores' definitions with J&F in place of IoU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd

from sambench.analysis.noc import object_noc
from sambench.analysis.stats import stratified_bootstrap, wilcoxon
from sambench.config import Setting
from sambench.store import LEVEL_COLUMNS, OBJECT_COLUMNS

OBJECT = [c for c in OBJECT_COLUMNS if c not in LEVEL_COLUMNS]  # image_id, object_id
STABLE_SAM_PAPER = "stable-sam-paper"
PAPER_LEVELS = ("gt-box", "noisy-box", "1-point", "3-points")


@dataclass(frozen=True)
class ScoreInput:
    """What a score may read for one (model, dataset, protocol).

    ``settings``: the protocol's settings in card order. ``objects``: one row per (image_id, object_id,
    level) with ``iou`` (failed draws score 0), ``stability`` (pairwise, successful draws; NaN if none),
    ``draws`` and ``failed``, and for a video protocol ``jf`` (the track's J&F, failed draws 0). ``rows``: the
    raw store rows (extras, prompts) for scores that need more. ``video``: a video protocol (scored by J&F).
    """

    model: str
    dataset: str
    protocol: str
    settings: tuple
    objects: pd.DataFrame
    rows: pd.DataFrame
    video: bool = False

    @property
    def metric(self) -> str:
        """The per-object column a score's mean-like value reads: ``jf`` for a video protocol, else ``iou``."""
        return "jf" if self.video else "iou"

    def matrix(self, levels: list[str], column: Optional[str] = None) -> pd.DataFrame:
        """``column`` (default :attr:`metric`) per object (rows) and level (columns, in the order given)."""
        column = column or self.metric
        sel = self.objects[self.objects["level"].isin(levels)]
        piv = sel.pivot_table(index=OBJECT, columns="level", values=column, aggfunc="first", dropna=False)
        return piv.reindex(columns=levels)

    @property
    def clean(self) -> Optional[Setting]:
        """The protocol's GT-box setting (a level labelled ``gt-box`` first, else a box level of value 0)."""
        gt = [s for s in self.settings if s.is_gt_box]
        gt.sort(key=lambda s: s.level != "gt-box")
        return gt[0] if gt else None

    @property
    def degraded(self) -> list[Setting]:
        """Every setting of the protocol except the GT-box ones and the GT mask (video's ceiling)."""
        return [s for s in self.settings if not s.is_gt_box and s.kind != "gt-mask"]

    @property
    def gt_mask(self) -> Optional[Setting]:
        """The protocol's GT-mask setting (kind ``gt-mask``, video only), if it has one."""
        return next((s for s in self.settings if s.kind == "gt-mask"), None)


def _identity(means: np.ndarray) -> np.ndarray:
    return means[..., 0]


@dataclass(frozen=True)
class HeadlineScore:
    """One headline score (see the module docstring for how every score is aggregated).

    ``values(inp)`` returns per-object columns (DataFrame indexed by image_id, object_id) or None when the
    protocol lacks what the score needs; ``statistic`` maps column means (..., k) to the score (...).
    ``video``: the score applies to video protocols (and only to them; False: image protocols only).
    """

    name: str
    title: str
    definition: str
    values: Callable[[ScoreInput], Optional[pd.DataFrame]]
    statistic: Callable[[np.ndarray], np.ndarray] = _identity
    higher_is_better: bool = True
    unit: str = "percent"
    video: bool = False

    @property
    def paired_test(self) -> bool:
        """A Wilcoxon test on per-object differences exists only for a mean of one per-object value."""
        return self.statistic is _identity


SCORES: dict[str, HeadlineScore] = {}


def register(score: HeadlineScore) -> HeadlineScore:
    """Add a score (its name must be new); columns follow registration order."""
    if score.name in SCORES:
        raise ValueError(f"headline score '{score.name}' is already registered")
    SCORES[score.name] = score
    return score


# ------------------------------------------------------------------------------------------ definitions


def _clean_values(inp: ScoreInput) -> Optional[pd.DataFrame]:
    c = inp.clean
    return None if c is None else inp.matrix([c.level]).set_axis(["clean"], axis=1)


def _degraded_values(inp: ScoreInput) -> Optional[pd.DataFrame]:
    levels = [s.level for s in inp.degraded]
    if not levels:
        return None
    return inp.matrix(levels).mean(axis=1, skipna=False).to_frame("degraded")


def _robustness_values(inp: ScoreInput) -> Optional[pd.DataFrame]:
    clean, degraded = _clean_values(inp), _degraded_values(inp)
    if clean is None or degraded is None:
        return None
    return clean.join(degraded, how="inner")


def _ratio(means: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(means[..., 0] > 0, means[..., 1] / np.where(means[..., 0] > 0, means[..., 0], 1.0), np.nan)


def curve_points(settings) -> Optional[list[tuple[float, str]]]:
    """(x, level) of a protocol's degradation curve, sorted by x: every setting must be of one family
    (boxes, where a GT box sits at s = 0, or points) with a numeric value, and there must be two distinct x."""
    families = {s.family for s in settings}
    if len(families) != 1:
        return None
    pts = []
    for s in settings:
        x = 0.0 if (s.is_gt_box and s.level_value is None) else s.level_value
        if x is None:
            return None
        pts.append((float(x), s.level))
    if len({x for x, _ in pts}) < 2:
        return None
    return sorted(pts)


def _auc_values(inp: ScoreInput) -> Optional[pd.DataFrame]:
    pts = curve_points(inp.settings)
    if pts is None:
        return None
    m = inp.matrix([lv for _, lv in pts])
    xs = np.array([x for x, _ in pts])
    # levels sharing an x (a gt-box label and a box level 0) are averaged into one curve point
    ux = np.unique(xs)
    ys = np.stack([m.to_numpy()[:, xs == x].mean(axis=1) for x in ux], axis=1)
    area = ((ys[:, 1:] + ys[:, :-1]) / 2 * np.diff(ux)).sum(axis=1) / (ux[-1] - ux[0])
    return pd.DataFrame({"auc": area}, index=m.index)


def _stability_values(inp: ScoreInput) -> Optional[pd.DataFrame]:
    levels = [s.level for s in inp.degraded]
    if not levels:
        return None
    return inp.matrix(levels, "stability").mean(axis=1, skipna=True).to_frame("stability")


def _paper_values(inp: ScoreInput) -> Optional[pd.DataFrame]:
    if inp.protocol != STABLE_SAM_PAPER or not set(PAPER_LEVELS) <= {s.level for s in inp.settings}:
        return None
    return inp.matrix(list(PAPER_LEVELS)).mean(axis=1, skipna=False).to_frame("paper_avg")


register(HeadlineScore(
    "clean_miou", "clean mIoU",
    "mIoU with the tight GT box: the protocol's level labelled gt-box, else its box level of noise 0.",
    _clean_values))
register(HeadlineScore(
    "degraded_miou", "degraded mIoU",
    "Mean over the protocol's degraded levels (every level except the GT box) of the level's mIoU "
    "(per object: the mean over those levels of its mean IoU over draws).",
    _degraded_values))
register(HeadlineScore(
    "robustness", "robustness ratio",
    "degraded mIoU / clean mIoU, per dataset (undefined when clean mIoU is 0).",
    _robustness_values, statistic=_ratio, unit="ratio"))
register(HeadlineScore(
    "auc", "AUC",
    "Area under the degradation curve (mIoU against the level's value: noise scale s, or k points; the GT "
    "box at s = 0), trapezoidal, divided by the width of the level range: a mean mIoU over the range. "
    "Only for a protocol whose levels are one kind of prompt with at least two values.",
    _auc_values))
register(HeadlineScore(
    "stability", "stability",
    "Pairwise stability (mean IoU between the masks of an object's draws) averaged over the degraded "
    "levels, per object over the levels where it had a successful draw.",
    _stability_values))


def _noc90_values(inp: ScoreInput) -> Optional[pd.DataFrame]:
    if not any(s.kind == "clicks" for s in inp.settings):
        return None
    return object_noc(inp.rows, inp.protocol, "90")


register(HeadlineScore(
    "noc90", "NoC@90",
    "Interactive (clicks) protocols: mean number of corrective clicks to reach IoU 90 %, an object that "
    "never does (or whose sequence failed) counting as the click limit (sambench.analysis.noc). Lower is better.",
    _noc90_values, higher_is_better=False, unit="number"))
register(HeadlineScore(
    "paper_avg", "Stable-SAM avg",
    "Stable-SAM's headline average: mean of the mIoU with GT box, noisy box, 1 point and 3 points "
    "(protocol stable-sam-paper only).",
    _paper_values))


def _mask_values(inp: ScoreInput) -> Optional[pd.DataFrame]:
    m = inp.gt_mask
    return None if m is None else inp.matrix([m.level]).set_axis(["gt_mask"], axis=1)


# Video: the same definitions with J&F (ScoreInput.metric) in place of IoU (module docstring).
register(HeadlineScore(
    "clean_jf", "clean J&F",
    "Video: J&F with the tight GT box on the prompt frame (the protocol's gt-box level, else its box level of "
    "noise 0); per track the mean over draws of its J&F (prompt frame excluded, docs/video.md).",
    _clean_values, video=True))
register(HeadlineScore(
    "degraded_jf", "degraded J&F",
    "Video: mean over the protocol's degraded levels (every level except the GT box and the GT mask) of the "
    "level's J&F (per track: the mean over those levels of its J&F averaged over draws).",
    _degraded_values, video=True))
register(HeadlineScore(
    "jf_robustness", "J&F robustness ratio",
    "Video: degraded J&F / clean J&F, per dataset (undefined when clean J&F is 0).",
    _robustness_values, statistic=_ratio, unit="ratio", video=True))
register(HeadlineScore(
    "jf_auc", "J&F AUC",
    "Video: area under the J&F degradation curve (J&F against the level's value; the GT box at s = 0), "
    "trapezoidal, divided by the width of the level range: a mean J&F over the range.",
    _auc_values, video=True))
register(HeadlineScore(
    "mask_jf", "GT-mask J&F",
    "Video: J&F propagated from the GT mask on the prompt frame (kind gt-mask): the ceiling of the prompts.",
    _mask_values, video=True))


# ------------------------------------------------------------------------------------------ aggregation


def dataset_value(score: HeadlineScore, values: pd.DataFrame) -> float:
    """The score on one dataset from its per-object values (objects with a NaN column left out)."""
    v = values.dropna().to_numpy(dtype=float)
    if v.shape[0] == 0:
        return float("nan")
    return float(score.statistic(v.mean(axis=0)))


def aggregate(score: HeadlineScore, per_dataset: dict[str, pd.DataFrame], key: str, n_boot: int = 1000) -> dict:
    """``{"value", "ci": [lo, hi], "datasets": {name: value}, "n": objects}`` over the datasets given."""
    names = sorted(per_dataset)
    mats = [per_dataset[d].dropna().to_numpy(dtype=float) for d in names]
    by_ds = {d: dataset_value(score, per_dataset[d]) for d in names}
    n = int(sum(m.shape[0] for m in mats))
    if not names or any(m.shape[0] == 0 for m in mats):
        return {"value": float("nan"), "ci": [float("nan"), float("nan")], "datasets": by_ds, "n": n}
    value = float(np.mean([by_ds[d] for d in names]))
    boot = score.statistic(stratified_bootstrap(mats, key, n_boot))  # (datasets, n_boot)
    means = np.nanmean(boot, axis=0) if np.isfinite(boot).any() else boot[0]
    lo, hi = (float("nan"), float("nan")) if not np.isfinite(means).any() else \
        (float(v) for v in np.nanquantile(means, [0.025, 0.975]))
    return {"value": value, "ci": [lo, hi], "datasets": by_ds, "n": n}


def paired(score: HeadlineScore, a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame], key: str,
           n_boot: int = 1000) -> dict:
    """Model a minus model b on the objects both have, per dataset then the plain mean over datasets:
    ``{"delta", "ci": [lo, hi], "p_value", "n"}``. The CI resamples objects jointly for both models
    (paired, stratified by dataset); ``p_value`` is ``compare``'s two-sided Wilcoxon signed-rank test on the
    per-object differences (pooled over datasets) for a mean-like score, else None."""
    names = sorted(set(a) & set(b))
    mats, deltas, diffs = [], [], []
    for d in names:
        j = a[d].add_suffix("_a").join(b[d].add_suffix("_b"), how="inner").dropna()
        if j.empty:
            continue
        k = a[d].shape[1]
        m = j.to_numpy(dtype=float)
        mats.append(m)
        deltas.append(float(score.statistic(m[:, :k].mean(axis=0)) - score.statistic(m[:, k:].mean(axis=0))))
        if score.paired_test:
            diffs.append(m[:, 0] - m[:, k])
    if not mats:
        nan = float("nan")
        return {"delta": nan, "ci": [nan, nan], "p_value": None, "n": 0}
    k = a[names[0]].shape[1]
    boot = stratified_bootstrap(mats, key, n_boot)
    d_boot = np.nanmean(score.statistic(boot[..., :k]) - score.statistic(boot[..., k:]), axis=0)
    lo, hi = np.nanquantile(d_boot, [0.025, 0.975])
    p = None
    if diffs:
        d = np.concatenate(diffs)
        d[np.abs(d) < 1e-12] = 0.0
        p = float(wilcoxon(d))
    return {"delta": float(np.mean(deltas)), "ci": [float(lo), float(hi)], "p_value": p,
            "n": int(sum(m.shape[0] for m in mats))}
