"""Video numbers from stored rows: the J&F summary against hand-computed means, J over time, ``compare --metric
jf`` and the report's video section."""

import json
import shutil
import sqlite3

import pandas as pd
import pytest

import sambench
from sambench.analysis.compare import compare_runs
from sambench.analysis.video import j_over_time, video_summary

KEY = dict(dataset="d", protocol="video-noisy-box", level="0.5", corruption="none", severity=0)


def _rows_and_tracks():
    """Two tracks (v1/1 with draws 0 and 1, v2/1 with draw 0 ok and draw 1 failed) of one model and cell."""
    rows, tracks = [], []
    for video, draw, status, j, f, frames, jf_frames in (
            ("v1", 0, "ok", 0.8, 0.6, [1, 2], [0.9, 0.7]),
            ("v1", 1, "ok", 0.4, 0.2, [1, 2], [0.5, 0.3]),
            ("v2", 0, "ok", 0.1, 0.3, [2, 3], [0.1, 0.1]),
            ("v2", 1, "failed", None, None, None, None)):
        key = dict(model="m", image_id=video, object_id="1", draw=draw, **KEY)
        rows.append({**key, "status": status, "level_value": 0.5, "iou": j})
        if status == "ok":
            tracks.append({**key, "prompt_frame": 0 if video == "v1" else 1, "frames": json.dumps(frames),
                           "j_frames": json.dumps(jf_frames), "j_mean": j, "f_mean": f, "jf": (j + f) / 2,
                           "j_recall": float(j > 0.5), "f_recall": float(f > 0.5), "j_decay": 0.0, "f_decay": 0.0})
    return pd.DataFrame(rows), pd.DataFrame(tracks)


def test_video_summary_averages_draws_per_track_then_tracks():
    rows, tracks = _rows_and_tracks()
    (cell,) = video_summary(rows, tracks).to_dict("records")
    # v1: J (0.8 + 0.4) / 2 = 0.6, F 0.4; v2: J 0.1, F 0.3 (its failed draw is counted, not averaged)
    assert cell["n"] == 2 and cell["failed"] == 1
    assert cell["J"] == pytest.approx(100 * (0.6 + 0.1) / 2)
    assert cell["F"] == pytest.approx(100 * (0.4 + 0.3) / 2)
    assert cell["JF"] == pytest.approx((cell["J"] + cell["F"]) / 2)
    assert cell["J_recall"] == pytest.approx(100 * (0.5 + 0.0) / 2)


def test_j_over_time_is_indexed_by_the_offset_from_the_prompt_frame():
    _, tracks = _rows_and_tracks()
    series = j_over_time(tracks).set_index("offset")
    # offset 1: v1 frame 1 (draws 0.9, 0.5) and v2 frame 2 (0.1); offset 2: v1 frame 2 (0.7, 0.3), v2 frame 3 (0.1)
    assert series.loc[1, "J"] == pytest.approx(100 * (0.9 + 0.5 + 0.1) / 3) and series.loc[1, "n"] == 3
    assert series.loc[2, "J"] == pytest.approx(100 * (0.7 + 0.3 + 0.1) / 3)


@pytest.fixture(scope="module")
def mask_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("video") / "base"
    sambench.run(["mask-hold", "flow-warp"], "video-mask", "grabcut-video-sample", out=out, limit=2)
    return out


@pytest.mark.slow
def test_compare_jf_gates_a_drop_of_video_j_and_f(mask_run, tmp_path):
    cand = tmp_path / "cand"
    shutil.copytree(mask_run, cand)
    con = sqlite3.connect(str(cand / "results.sqlite"))
    with con:
        con.execute("UPDATE tracks SET jf = jf - 0.02 WHERE model = 'flow-warp'")
    con.close()
    result = compare_runs(mask_run, cand, metric="jf", tol=1.0)
    by_model = {g["model"]: g for g in result.groups}
    assert by_model["flow-warp"]["delta"] == pytest.approx(-2.0) and by_model["flow-warp"]["n"] == 2
    assert by_model["mask-hold"]["delta"] == pytest.approx(0.0)
    # two tracks cannot make a CI that excludes 0 at a 2-point drop: the gate needs delta < -tol AND ci_hi < 0
    assert result.exit_code == (1 if by_model["flow-warp"]["ci_hi"] < 0 else 0)
    assert compare_runs(mask_run, cand, metric="miou").groups[0]["delta"] == 0.0  # iou untouched


@pytest.mark.slow
def test_the_report_has_a_video_section(mask_run, tmp_path):
    written = sambench.open_run(mask_run).report(tmp_path / "rep")
    assert {"video_summary.csv", "j_over_time.csv"} <= set(written)
    table = pd.read_csv(written["video_summary.csv"])
    assert set(table["model"]) == {"mask-hold", "flow-warp"} and (table["level"] == "gt-mask").all()
    api = sambench.open_run(mask_run).video_summary()  # the same table from the Python API
    assert api["JF"].round(9).tolist() == table["JF"].round(9).tolist()
    page = (tmp_path / "rep" / "index.html").read_text()
    assert 'id="video"' in page and "video_j_over_time" in page
    board = json.loads((tmp_path / "rep" / "leaderboard.json").read_text())
    assert {(c["model"], c["level"]) for c in board["video"]} == {("mask-hold", "gt-mask"), ("flow-warp", "gt-mask")}


@pytest.mark.slow
def test_leaderboard_verify_rescores_video_rows_and_finds_a_changed_frame(mask_run, tmp_path):
    from sambench.leaderboard.verify import verify_run

    clean = verify_run(mask_run)
    assert clean.ok and clean.checked == 4  # 2 models x 2 videos, each with its per-frame masks (draw 0)
    bad = tmp_path / "bad"
    shutil.copytree(mask_run, bad)
    con = sqlite3.connect(str(bad / "results.sqlite"))
    (frames,) = con.execute("SELECT j_frames FROM tracks WHERE model='flow-warp' AND image_id='v1-banana'").fetchone()
    j = json.loads(frames)
    j[2] += 0.01  # one frame's J no longer what its stored mask scores (and no longer the mean's)
    with con:
        con.execute("UPDATE tracks SET j_frames=? WHERE model='flow-warp' AND image_id='v1-banana'", (json.dumps(j),))
    con.close()
    found = verify_run(bad)
    assert not found.ok
    assert any("frame 3: stored J/F" in m for m in found.mismatches)
    assert any("stored j_mean" in m for m in found.mismatches)


def test_video_headline_is_the_first_level_and_the_mean_over_levels_on_clean_frames():
    from sambench.analysis.video import video_headline

    cells = pd.DataFrame([
        {"model": "m", "dataset": "d", "protocol": "p", "level": lv, "level_value": v, "severity": sev, "JF": jf,
         "failed": failed}
        for lv, v, sev, jf, failed in (("0.5", 0.5, 0, 40.0, 1), ("0", 0.0, 0, 70.0, 0), ("1", 1.0, 0, 10.0, 2),
                                       ("0", 0.0, 3, 5.0, 0))])  # the severity-3 cell is not clean: left out
    (h,) = video_headline(cells).to_dict("records")
    assert (h["first_level"], h["jf_first"], h["levels"], h["failed"]) == ("0", 70.0, 3, 3)
    assert h["jf_mean"] == pytest.approx((40.0 + 70.0 + 10.0) / 3)


@pytest.mark.slow
def test_the_leaderboard_lists_video_j_and_f(mask_run, tmp_path):
    from sambench.leaderboard import write_board

    written = write_board([mask_run], tmp_path / "board")
    doc = json.loads(written["leaderboard.json"].read_text())
    assert {(v["model"], v["protocol"]) for v in doc["video_headline"]} == {("mask-hold", "video-mask"),
                                                                            ("flow-warp", "video-mask")}
    assert "## Video" in written["leaderboard.md"].read_text()


def test_the_strip_shows_each_models_worst_and_best_draw_where_draws_spread_most():
    from sambench.report.video import strip_rows

    def e(model, video, draw, jf):
        return {"model": model, "dataset": "d", "image_id": video, "object_id": "1", "protocol": "p", "level": "1",
                "draw": draw, "corruption": "none", "severity": 0, "jf": jf, "masks_rle": "[]", "frames": "[]"}

    tracks = pd.DataFrame([e("a", "v1", 0, 0.5), e("a", "v1", 1, 0.6),              # spread 0.1
                           e("a", "v2", 0, 0.9), e("a", "v2", 1, 0.1), e("a", "v2", 2, 0.4),  # spread 0.8
                           e("b", "v2", 0, 0.3), e("b", "v2", 1, 0.35)])
    rows = strip_rows(tracks)
    assert [(r["model"], r["image_id"], r["which"], r["draw"]) for r in rows] == [
        ("a", "v2", "worst", 1), ("a", "v2", "best", 0), ("b", "v2", "worst", 0), ("b", "v2", "best", 1)]
