"""The ranked leaderboard scores video protocols by J&F (DAVIS's headline), not by the rows' iou (mean J): the
board's J&F columns against means of the stored tracks' J&F computed here from SQLite, their names on the
three board files, the default ranking, and a failed video draw scoring J&F 0."""

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

import sambench
from sambench.analysis.ranking import object_table

SAMPLE = "grabcut-video-sample"


@pytest.fixture(scope="module")
def box_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vboard") / "run"
    sambench.run(["mask-hold", "flow-warp"], "video-noisy-box", SAMPLE, out=out, levels=["0", "0.5"], draws=2,
                 limit=2)
    return out


def _stored_jf(run_dir) -> dict:
    """{(model, level): mean over tracks of the mean over draws of the stored J&F}, straight from SQLite."""
    con = sqlite3.connect(str(run_dir / "results.sqlite"))
    got = con.execute("SELECT model, level, image_id, object_id, jf FROM tracks WHERE severity = 0").fetchall()
    con.close()
    per_track: dict = {}
    for model, level, video, obj, jf in got:
        per_track.setdefault((model, level), {}).setdefault((video, obj), []).append(jf)
    return {k: float(np.mean([np.mean(v) for v in tracks.values()])) for k, tracks in per_track.items()}


@pytest.mark.slow
def test_the_board_ranks_a_video_run_by_the_stored_tracks_jf(box_run, tmp_path):
    from sambench.leaderboard import write_board

    expected = _stored_jf(box_run)
    assert set(expected) == {(m, lv) for m in ("mask-hold", "flow-warp") for lv in ("0", "0.5")}
    written = write_board([box_run], tmp_path / "board", n_boot=50)
    doc = json.loads(written["leaderboard.json"].read_text())
    board = doc["board"]
    ids = {c["id"] for c in board["columns"]}
    assert {"clean_jf@video-noisy-box", "degraded_jf@video-noisy-box"} <= ids
    assert not any("miou" in i for i in ids) and not any("mIoU" in c["title"] for c in board["columns"])
    assert board["rank_by"] == "degraded_jf@video-noisy-box"
    scores = {e["model"]: e["scores"] for e in board["entries"]}
    for model in ("mask-hold", "flow-warp"):
        assert scores[model]["clean_jf@video-noisy-box"]["value"] == pytest.approx(expected[(model, "0")], abs=1e-12)
        assert scores[model]["degraded_jf@video-noisy-box"]["value"] == pytest.approx(expected[(model, "0.5")],
                                                                                      abs=1e-12)
    order = sorted(("mask-hold", "flow-warp"), key=lambda m: -expected[(m, "0.5")])
    assert [e["model"] for e in board["entries"]] == order and board["entries"][0]["rank"] == 1
    # the mean J the rows' iou holds is another number: the board does not show it
    con = sqlite3.connect(str(box_run / "results.sqlite"))
    (mean_j,) = con.execute("SELECT AVG(iou) FROM results WHERE model = 'flow-warp' AND level = '0.5'").fetchone()
    con.close()
    assert abs(mean_j - expected[("flow-warp", "0.5")]) > 1e-3
    md, page = written["leaderboard.md"].read_text(), written["leaderboard.html"].read_text()
    assert "Ranked by **degraded J&F (video-noisy-box)**" in md and "clean J&F (video-noisy-box)" in md
    assert "degraded J&amp;F" in page and "mIoU (video" not in md + page
    assert f"{100 * expected[(order[0], '0.5')]:.1f}" in md


@pytest.mark.slow
def test_the_reports_leaderboard_json_ranks_video_by_jf_too(box_run, tmp_path):
    sambench.open_run(box_run).report(tmp_path / "rep")
    board = json.loads((tmp_path / "rep" / "leaderboard.json").read_text())["board"]
    assert board["rank_by"] == "degraded_jf@video-noisy-box"
    expected = _stored_jf(box_run)
    by_model = {e["model"]: e["scores"]["clean_jf@video-noisy-box"]["value"] for e in board["entries"]}
    assert by_model == pytest.approx({m: expected[(m, "0")] for m in ("mask-hold", "flow-warp")})


def test_a_failed_video_draw_scores_jf_0_in_the_object_table():
    key = dict(model="m", dataset="d", image_id="v1", object_id="1", protocol="video-noisy-box", level="0.5",
               corruption="none", severity=0)
    rows = pd.DataFrame([{**key, "draw": 0, "status": "ok", "iou": 0.5, "level_value": 0.5},
                         {**key, "draw": 1, "status": "failed", "iou": None, "level_value": 0.5},
                         {**key, "protocol": "noisy-box", "draw": 0, "status": "ok", "iou": 0.7, "level_value": 0.5}])
    tracks = pd.DataFrame([{**key, "draw": 0, "jf": 0.8}])
    stability = pd.DataFrame([{k: v for k, v in key.items() if k != "draw"} | {"protocol": p, "stability_pairwise": 1.0}
                              for p in ("video-noisy-box", "noisy-box")])  # per_object's column, not under test
    table = object_table(rows, stability, tracks=tracks, video={"video-noisy-box"}).set_index("protocol")
    assert table.loc["video-noisy-box", "jf"] == pytest.approx((0.8 + 0.0) / 2)
    assert table.loc["video-noisy-box", "iou"] == pytest.approx((0.5 + 0.0) / 2)  # the mean J, kept as it was
    assert np.isnan(table.loc["noisy-box", "jf"]) and table.loc["noisy-box", "iou"] == pytest.approx(0.7)


@pytest.mark.slow
def test_the_gt_mask_is_the_boards_ceiling_column_not_a_degraded_level(tmp_path):
    from sambench.leaderboard import write_board

    run = tmp_path / "mask"
    sambench.run(["mask-hold", "flow-warp"], "video-mask", SAMPLE, out=run, limit=2)
    expected = _stored_jf(run)
    board = json.loads(write_board([run], tmp_path / "board", n_boot=50)["leaderboard.json"].read_text())["board"]
    assert [c["id"] for c in board["columns"]] == ["mask_jf@video-mask"]  # no clean/degraded J&F of a GT mask
    assert board["rank_by"] == "mask_jf@video-mask"
    for e in board["entries"]:
        assert e["scores"]["mask_jf@video-mask"]["value"] == pytest.approx(expected[(e["model"], "gt-mask")])
