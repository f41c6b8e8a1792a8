"""The statistical tests every stage shares: the stratified bootstrap and the Wilcoxon signed-rank p-value.

* :func:`stratified_bootstrap` — resampled column means of several groups (objects resampled within their
  dataset), from a generator keyed by text: the cross-dataset CIs of the summary and NoC tables and the
  leaderboard's scores all draw from it, so the same objects give the same interval.
* :func:`stratified_ci` — the 95% percentile interval of the mean of group means.
* :func:`wilcoxon` — the two-sided Wilcoxon signed-rank p-value of paired differences, as scipy computes it
  (``compare``'s p-values and the leaderboard's paired tests).
"""

from __future__ import annotations

import warnings

import numpy as np

from sambench.types import keyed_rng


def stratified_bootstrap(groups: list[np.ndarray], key: str, n_boot: int = 1000) -> np.ndarray:
    """Resampled column means of each group: ``groups[i]`` is (n_i, k) (or (n_i,)); objects (rows) are
    resampled with replacement within their group, from a generator keyed by ``key``. Returns
    (len(groups), n_boot, k). The one bootstrap of the cross-dataset CIs and of the leaderboard's scores."""
    rng = keyed_rng("bootstrap-stratified", key, n_boot)
    out = []
    for g in groups:
        g2 = g.reshape(g.shape[0], -1)
        out.append(g2[rng.integers(0, g2.shape[0], size=(n_boot, g2.shape[0]))].mean(axis=1))
    return np.stack(out) if out else np.zeros((0, n_boot, 1))


def stratified_ci(groups: list[np.ndarray], key: str, n_boot: int = 1000) -> tuple[float, float]:
    """CI of the mean of group means, resampling within each group."""
    groups = [g for g in groups if g.size]
    if not groups:
        return float("nan"), float("nan")
    means = stratified_bootstrap(groups, key, n_boot)[..., 0].mean(axis=0)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def signflip_p(nz: np.ndarray) -> float:
    """Exact two-sided Wilcoxon signed-rank p-value by enumerating all 2^n sign flips of the non-zero
    differences ``nz`` (average ranks for ties) — what scipy's ``wilcoxon`` computes for n <= 13 with ties
    or zeros (a permutation test), vectorised."""
    # lazy: scipy.stats costs ~0.5 s to import and only a paired test needs it
    from scipy.stats import rankdata

    ranks = rankdata(np.abs(nz))
    observed = float(ranks[nz > 0].sum())
    n = nz.size
    signs = (np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1
    null = signs @ ranks
    eps = 1e-9 * max(1.0, abs(observed))
    less, greater = np.mean(null <= observed + eps), np.mean(null >= observed - eps)
    return float(min(1.0, 2.0 * min(less, greater)))


def wilcoxon(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences ``d`` (zeros dropped, scipy's
    ``zero_method="wilcox"``); 1.0 when every difference is 0, NaN when there is none."""
    if d.size == 0:
        return float("nan")
    nz = d[d != 0]
    if nz.size == 0:
        return 1.0
    ties = np.unique(np.abs(nz)).size < nz.size
    if d.size <= 13 and (ties or nz.size < d.size):
        return signflip_p(nz)  # = scipy's exact permutation test, without its per-permutation overhead
    # lazy: scipy.stats costs ~0.5 s to import and only a paired test needs it
    from scipy.stats import wilcoxon as scipy_wilcoxon

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # scipy's "auto": exact distribution without ties/zeros, else the normal approximation
            return float(scipy_wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
        except ValueError:
            return float("nan")
