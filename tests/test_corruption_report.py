"""Corruption tables, mCE and heatmaps against hand-computed values (docs/corruptions.md)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sambench.report import corruptions as R


def summary_rows(model: str, clean: float, cells: dict) -> list[dict]:
    base = {"dataset": "d", "model": model, "protocol": "gt-box", "level": "gt-box", "level_value": np.nan, "n": 3}
    rows = [{**base, "corruption": "none", "severity": 0, "miou": clean}]
    rows += [{**base, "corruption": c, "severity": s, "miou": v} for (c, s), v in cells.items()]
    return rows


@pytest.fixture()
def table():
    # model a: clean 0.8; fog 1/2 → 0.6/0.4; snow 1 → 0.7.  reference g: clean 0.9; fog 0.7/0.5; snow 0.8.
    rows = summary_rows("a", 0.8, {("fog", 1): 0.6, ("fog", 2): 0.4, ("snow", 1): 0.7})
    rows += summary_rows("g", 0.9, {("fog", 1): 0.7, ("fog", 2): 0.5, ("snow", 1): 0.8})
    rows += summary_rows("b", 0.5, {("fog", 1): 0.5, ("fog", 2): 0.5, ("snow", 1): 0.5})  # box-fill-like: constant
    return R.corruption_table(pd.DataFrame(rows))


def test_relative_drop(table):
    row = table[(table.model == "a") & (table.corruption == "fog") & (table.severity == 2)].iloc[0]
    assert row["clean_miou"] == 0.8 and row["drop"] == pytest.approx((0.8 - 0.4) / 0.8)
    assert list(table[table.model == "a"].corruption) == ["none", "snow", "fog", "fog"]  # registry order, clean first


def test_mce_by_hand(table):
    t = R.mce_table(table, "g").set_index(["model", "corruption"])
    # CE_fog(a) = (0.4 + 0.6) / (0.3 + 0.5); CE_snow(a) = 0.3 / 0.2
    assert t.loc[("a", "fog"), "ce"] == pytest.approx(100 * 1.0 / 0.8)
    assert t.loc[("a", "snow"), "ce"] == pytest.approx(100 * 0.3 / 0.2)
    assert t.loc[("a", "mean"), "ce"] == pytest.approx(100 * (1.25 + 1.5) / 2)
    # relative: fog (0.2 + 0.4) / (0.2 + 0.4) = 1; snow 0.1 / 0.1 = 1
    assert t.loc[("a", "mean"), "relative_ce"] == pytest.approx(100.0)
    assert t.loc[("g", "mean"), "ce"] == pytest.approx(100.0)
    assert t.loc[("a", "fog"), "severities"] == "1,2"
    # a reference whose error does not move with the image has no relative CE
    tb = R.mce_table(table, "b").set_index(["model", "corruption"])
    assert math.isnan(tb.loc[("a", "mean"), "relative_ce"]) and tb.loc[("b", "mean"), "ce"] == pytest.approx(100.0)


def test_reference_choice():
    assert R.pick_reference(["box-fill", "grabcut"], None)[0] == "grabcut"
    assert R.pick_reference(["box-fill", "sam"], None)[0] == "box-fill"
    assert R.pick_reference(["sam"], None)[0] is None
    assert R.pick_reference(["sam"], "sam")[0] == "sam"
    assert R.pick_reference(["sam"], "x")[0] is None


def test_heatmaps_draw_every_cell(table):
    fig = R.heatmap_figure(table, {("gt-box", "gt-box"): "GT box"}, ["a", "b", "g"])
    assert len(fig.axes) == 4  # three panels and the colour bar
    assert len(fig.axes[0].texts) == 3  # clean, snow, fog
    fig = R.severity_figure(table, ("gt-box", "gt-box"), "GT box", ["a", "g"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["clean", "1", "2"]
    assert len(fig.axes[0].texts) == 5  # snow: clean, 1 (no 2); fog: clean, 1, 2
