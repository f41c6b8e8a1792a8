"""NoC / NoF from hand-made store rows: counting, the click limit for failures, failed sequences, CIs."""

import math

import pandas as pd
import pytest

from sambench.analysis.noc import noc_table, sequences


def _rows(dataset, model, image, ious, draw=0, status=None, first=1):
    out = []
    for i, v in enumerate(ious):
        lv = first + i
        st = (status or {}).get(lv, "ok")
        out.append({"dataset": dataset, "model": model, "protocol": "clicks", "image_id": image, "object_id": "0",
                    "level": str(lv), "level_value": float(lv), "draw": draw, "status": st,
                    "iou": None if st != "ok" else v})
    return out


def _frame():
    rows = []
    rows += _rows("d", "m", "a", [0.50, 0.86, 0.91, 0.96])   # NoC 2 / 3 / 4
    rows += _rows("d", "m", "b", [0.80, 0.84, 0.88, 0.89])   # NoC 3 / 4 (never: the limit) / 4 (never)
    rows += _rows("d", "m", "c", [0.9, 0.9, None, None], status={3: "failed", 4: "failed"})  # failed: left out
    rows += _rows("d", "other", "a", [0.95, 0.95, 0.95, 0.95])
    # a points protocol with the same key shape must not be read as a click sequence
    rows += [dict(r, protocol="points") for r in _rows("d", "m", "a", [0.1, 0.1, 0.1, 0.1])]
    return pd.DataFrame(rows)


def test_noc_counts_first_reaching_click_and_the_limit_for_failures():
    seqs = sequences(_frame(), {"clicks"})
    assert len(seqs) == 4 and seqs["failed"].tolist() == [False, False, True, False]
    a, b = seqs.iloc[0], seqs.iloc[1]
    assert (a.noc85, a.noc90, a.noc95) == (2, 3, 4) and (a.nof85, a.nof90, a.nof95) == (0.0, 0.0, 0.0)
    assert (b.noc85, b.noc90, b.noc95) == (3, 4, 4) and (b.nof85, b.nof90, b.nof95) == (0.0, 1.0, 1.0)
    assert b.click_limit == 4

    t = noc_table(_frame(), {"clicks"}, n_boot=200).set_index("model")
    m = t.loc["m"]
    assert m.n == 2 and m.failed == 1 and m.click_limit == 4
    assert m.noc85 == pytest.approx(2.5) and m.noc90 == pytest.approx(3.5) and m.noc95 == pytest.approx(4.0)
    assert (m.nof85, m.nof90, m.nof95) == (0.0, 1.0, 1.0)
    assert m.noc85_lo <= m.noc85 <= m.noc85_hi and m.noc85_lo == 2.0 and m.noc85_hi == 3.0
    o = t.loc["other"]
    assert o.noc85 == 1.0 and o.noc95 == 1.0 and o.nof95 == 0.0


def test_draws_are_averaged_per_object_and_datasets_pool_into_all():
    rows = _rows("d1", "m", "a", [0.9, 0.9], draw=0, first=0) + _rows("d1", "m", "a", [0.5, 0.5], draw=1, first=0)
    rows += _rows("d2", "m", "x", [0.5, 0.86], first=0)
    t = noc_table(pd.DataFrame(rows), ["clicks"], n_boot=100).set_index("dataset")
    assert t.loc["d1", "noc85"] == pytest.approx((0 + 1) / 2)   # a start box reaching 0.85 counts 0 clicks
    assert t.loc["d1", "nof85"] == pytest.approx(0.5)           # one of two draws never reaches it
    assert t.loc["d2", "noc85"] == 1.0
    assert t.loc["ALL", "noc85"] == pytest.approx((0.5 + 1.0) / 2) and t.loc["ALL", "n"] == 2
    assert not math.isnan(t.loc["ALL", "noc85_lo"])


def test_object_noc_counts_failed_sequences_as_the_limit_for_the_leaderboard():
    from sambench.analysis.scores import SCORES
    from sambench.analysis.noc import object_noc

    m = _frame()
    per_obj = object_noc(m[m["model"] == "m"], "clicks", "90")
    assert per_obj["noc90"].to_dict() == {("a", "0"): 3.0, ("b", "0"): 4.0, ("c", "0"): 4.0}  # c failed: limit
    assert not SCORES["noc90"].higher_is_better and SCORES["noc90"].unit == "number"
