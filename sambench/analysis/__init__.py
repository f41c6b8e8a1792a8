"""NUMBERS from stored rows: pandas only, no files, no figures, no model.

* :mod:`~sambench.analysis.summary` — the summary table (mIoU, boundary IoU, stability, CIs) and the
  per-object numbers everything else reuses;
* :mod:`~sambench.analysis.noc` — NoC / NoF of the interactive (click) protocols;
* :mod:`~sambench.analysis.compat` and :mod:`~sambench.analysis.compare` — whether two runs may be set side by
  side, and the ``compare`` regression gate;
* :mod:`~sambench.analysis.scores` and :mod:`~sambench.analysis.ranking` — the headline scores and the ranked
  board that reports and leaderboards write;
* :mod:`~sambench.analysis.settings` — each stored (protocol, level) as its card's setting;
* :mod:`~sambench.analysis.stats` — the stratified bootstrap and the paired tests every table shares.

Files a person reads are written one stage up, by :mod:`sambench.report` and :mod:`sambench.leaderboard`.
"""
