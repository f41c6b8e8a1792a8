"""Video runs end to end on the shipped grabcut-video-sample with the weight-free baselines: rows and packed
per-frame J/F, J against hand-computed IoUs, resume, failed rows, keys independent of order and shard, encoder
calls independent of levels and draws, corrupted frames keyed per frame, and resume after SIGKILL (slow)."""

import json
import sqlite3
import subprocess

import numpy as np
import pytest

import sambench
from sambench.adapters.video.baselines import MaskHoldAdapter
from sambench.datasets.video import open_video_dataset
from sambench.execution.video import CorruptedFrames, VideoTruth, prompt_frame_of
from sambench.types import SambenchError

try:
    from run_fixtures import sambench_cli, sigkill, stored_rows, stored_tracks, wait_for_rows
except ImportError:  # run from the repository root
    from tests.run_fixtures import sambench_cli, sigkill, stored_rows, stored_tracks, wait_for_rows

SAMPLE = "grabcut-video-sample"


def _iou(a, b):
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def test_mask_hold_under_the_gt_mask_scores_the_iou_of_each_frame_with_the_prompt_frame(tmp_path):
    run = sambench.run(["mask-hold"], "video-mask", SAMPLE, out=tmp_path / "r", limit=1)
    rows = run.rows()
    assert len(rows) == 1 and rows["status"].tolist() == ["ok"] and rows["image_id"][0] == "v1-banana"
    ds = open_video_dataset(SAMPLE)
    first = ds.masks("v1-banana", 0)["1"]
    expected = [_iou(first, ds.masks("v1-banana", t)["1"]) for t in range(1, 10)]  # prompt frame 0 excluded
    (entry,) = stored_tracks(tmp_path / "r")
    con = sqlite3.connect(str(tmp_path / "r" / "results.sqlite"))
    cols = [c[1] for c in con.execute("PRAGMA table_info(tracks)")]
    con.close()
    e = dict(zip(cols, entry))
    assert e["prompt_frame"] == 0 and e["direction"] == "forward" and json.loads(e["frames"]) == list(range(1, 10))
    assert json.loads(e["j_frames"]) == pytest.approx(expected, abs=1e-12)
    assert e["j_mean"] == pytest.approx(np.mean(expected)) == pytest.approx(rows["iou"][0])
    assert e["jf"] == pytest.approx((e["j_mean"] + e["f_mean"]) / 2)
    assert rows["biou"].isna().all()  # F is not boundary IoU: the column stays empty


@pytest.mark.slow
def test_a_run_stores_one_row_per_track_setting_and_draw_and_resumes_to_identical_rows(tmp_path):
    out = tmp_path / "r"
    kw = dict(out=out, levels=["0", "1"], draws=2, limit=1)
    sambench.run(["mask-hold", "flow-warp"], "video-noisy-box", SAMPLE, **kw)
    full, full_tracks = stored_rows(out), stored_tracks(out)
    # 2 models x 1 video x 1 track x (level 0: one draw, the GT box; level 1: two draws)
    assert len(full) == len(full_tracks) == 6
    con = sqlite3.connect(str(out / "results.sqlite"))
    with con:
        con.execute("DELETE FROM results WHERE model='flow-warp' AND level='1' AND draw=1")
        con.execute("DELETE FROM tracks WHERE model='flow-warp' AND level='1' AND draw=1")
    con.close()
    again = sambench.run(["mask-hold", "flow-warp"], "video-noisy-box", SAMPLE, **kw)
    assert stored_rows(out) == full and stored_tracks(out) == full_tracks
    assert len(again.rows()) == 6 and set(again.rows()["status"]) == {"ok"}


def test_rows_do_not_depend_on_shard_or_order(tmp_path):
    kw = dict(levels=["1"], draws=2, limit=3)
    sambench.run(["mask-hold"], "video-noisy-box", SAMPLE, out=tmp_path / "all", **kw)
    parts = []
    for i in range(2):
        sambench.run(["mask-hold"], "video-noisy-box", SAMPLE, out=tmp_path / f"s{i}", shard=(i, 2), **kw)
        parts += stored_rows(tmp_path / f"s{i}")
    assert sorted(parts) == stored_rows(tmp_path / "all") and len(parts) == 3 * 2


@pytest.mark.slow
def test_encoder_calls_are_frames_times_videos_whatever_the_levels_and_draws(tmp_path):
    small = sambench.run(["flow-warp"], "video-noisy-box", SAMPLE, out=tmp_path / "a", levels=["0"], limit=1)
    big = sambench.run(["flow-warp"], "video-noisy-box", SAMPLE, out=tmp_path / "b", levels=["0", "1"], draws=3,
                       limit=1)
    counters = [r.manifests[0]["counters"]["flow-warp"] for r in (small, big)]
    assert [c["encoder_calls"] for c in counters] == [10, 10]  # 1 video x 10 frames, each converted once
    assert [c["video_frames"] for c in counters] == [10, 10]
    assert [c["propagations"] for c in counters] == [1, 1 + 3]


class _Flaky(MaskHoldAdapter):
    """mask-hold that takes no points and fails every second propagation."""

    capabilities = frozenset({"box", "mask"})

    def propagate(self, session, prompt_frame, prompt=None, mask=None, direction="forward"):
        if self.propagations % 2 == 1:
            self.propagations += 1
            raise RuntimeError("out of memory")
        yield from super().propagate(session, prompt_frame, prompt, mask, direction)


def test_failures_are_failed_rows_with_their_reason(tmp_path):
    run = sambench.run([_Flaky("flaky")], ["video-noisy-box"], SAMPLE, out=tmp_path / "box", levels=["0", "1"],
                       draws=2, limit=1)
    rows = run.rows().sort_values(["level", "draw"])
    assert rows["status"].tolist() == ["ok", "failed", "ok"]
    assert rows["error"].tolist()[1] == "model 'flaky' failed to propagate on grabcut-video-sample/v1-banana: " \
                                        "RuntimeError: out of memory"
    run = sambench.run([_Flaky("flaky")], ["video-points"], SAMPLE, out=tmp_path / "points", levels=["1"], draws=2,
                       limit=1)
    assert set(run.rows()["error"]) == {"model 'flaky' cannot take a 'points' prompt"} and len(run.rows()) == 2


def test_video_and_image_protocols_cannot_share_a_run(tmp_path):
    with pytest.raises(SambenchError, match="video protocols .* and image protocols cannot share a run"):
        sambench.run(["mask-hold"], ["video-mask", "noisy-box"], SAMPLE, out=tmp_path / "r")
    with pytest.raises(SambenchError, match="model 'box-fill' is an image model"):
        sambench.run(["box-fill"], ["video-mask"], SAMPLE, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before the run directory exists


def test_corrupted_frames_are_keyed_per_frame():
    ds = open_video_dataset(SAMPLE)
    a, b = (CorruptedFrames(ds, "v1-banana", ("gaussian-noise", 3), 0) for _ in range(2))
    assert np.array_equal(a[4], b[4]) and not np.array_equal(a[4], ds.frame("v1-banana", 4))
    noise4 = a[4].astype(int) - ds.frame("v1-banana", 4)
    noise5 = a[5].astype(int) - ds.frame("v1-banana", 5)
    assert not np.array_equal(noise4, noise5)  # each frame has its own key, so its own noise
    assert CorruptedFrames(ds, "v1-banana", ("none", 0), 0)[3] is ds.frame("v1-banana", 3)


def test_prompt_frames_first_largest_and_middle():
    ds = open_video_dataset(SAMPLE)
    truth = VideoTruth(ds, "v5-two-objects")
    present = [t for t in range(10) if ds.masks("v5-two-objects", t)["2"].any()]
    areas = [int(ds.masks("v5-two-objects", t)["2"].sum()) for t in present]
    assert prompt_frame_of(truth, "2", "first", 3) == (3, "forward") and present[0] == 3
    assert prompt_frame_of(truth, "2", "largest", 3) == (present[areas.index(max(areas))], "both")
    assert prompt_frame_of(truth, "2", "middle", 3) == (present[(len(present) - 1) // 2], "both")


@pytest.mark.slow
def test_a_process_pool_over_videos_stores_the_rows_tracks_and_counters_of_one_process(tmp_path):
    kw = dict(levels=["0", "1"], draws=2, limit=2)
    one = sambench.run(["mask-hold", "flow-warp"], "video-noisy-box", SAMPLE, out=tmp_path / "one", **kw)
    pool = sambench.run(["mask-hold", "flow-warp"], "video-noisy-box", SAMPLE, out=tmp_path / "pool", workers=2, **kw)
    assert stored_rows(tmp_path / "one") == stored_rows(tmp_path / "pool") and len(stored_rows(tmp_path / "one")) == 12
    assert stored_tracks(tmp_path / "one") == stored_tracks(tmp_path / "pool")
    assert one.manifests[0]["counters"] == pool.manifests[0]["counters"]


@pytest.mark.slow
def test_a_video_run_killed_mid_video_resumes_to_identical_rows(tmp_path):
    args = ("run", "-m", "flow-warp", "-p", "video-noisy-box", "-d", SAMPLE, "--levels", "0,0.5,1", "--draws", "6",
            "--no-report")
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(sambench_cli(*args, "--out", str(full)), check=True, capture_output=True)
    proc = subprocess.Popen(sambench_cli(*args, "--out", str(killed)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for_rows(proc, killed, rows=20)  # the first track's 13 rows and part of the next video's
    sigkill(proc)
    partial = stored_rows(killed)
    assert 13 <= len(partial) < len(stored_rows(full))
    subprocess.run(sambench_cli(*args, "--out", str(killed)), check=True, capture_output=True)
    assert stored_rows(killed) == stored_rows(full) and stored_tracks(killed) == stored_tracks(full)


def test_masks_are_kept_for_draw_0_and_the_worst_and_best_draw_of_each_setting():
    from sambench.execution.video import kept_masks
    from sambench.store import TRACKS_COLUMNS

    def entry(level, draw, jf):
        values = dict.fromkeys(TRACKS_COLUMNS)
        values.update(protocol="p", level=level, draw=draw, jf=jf, masks_rle=f"rle{level}/{draw}")
        return tuple(values[c] for c in TRACKS_COLUMNS)

    entries = [entry("1", d, jf) for d, jf in enumerate([0.5, 0.2, 0.9, 0.2, 0.6])] + [entry("2", 0, 0.3)]
    kept = {(e[TRACKS_COLUMNS.index("level")], e[TRACKS_COLUMNS.index("draw")])
            for e in kept_masks(entries) if e[TRACKS_COLUMNS.index("masks_rle")] is not None}
    # level 1: draw 0 (verified), draw 1 (worst; draw 3 ties it but comes later), draw 2 (best); level 2: draw 0
    assert kept == {("1", 0), ("1", 1), ("1", 2), ("2", 0)}


def test_a_video_lost_by_its_ray_actor_is_one_failed_row_per_model_protocol_and_condition_not_yet_stored():
    from sambench.datasets import DatasetSpec
    from sambench.execution import RunConfig
    from sambench.execution.video import VideoWorker

    config = RunConfig(models=["mask-hold", "flow-warp"], protocols=["video-mask", "video-points"],
                       datasets=[DatasetSpec(SAMPLE)], out=None, corruptions=["gaussian-noise:2"])
    work = VideoWorker(config, {})
    done = {"mask-hold": {("", "video-mask", "", -1, "none", 0)}, "flow-warp": set()}
    (result,) = work.lost([(0, "v2-flower", done)], "Ray worker died 4 times on this video (RayActorError)")
    rows = [(model, r.image_id, r.object_id, r.protocol, r.level, r.draw, r.corruption, r.severity, r.status, r.error)
            for model, found, tracks, delta in result for r in found]
    why = "Ray worker died 4 times on this video (RayActorError)"
    expected = [(m, "v2-flower", "", p, "", -1, c, s, "failed", why) for m in ("mask-hold", "flow-warp")
                for p in ("video-mask", "video-points") for c, s in (("none", 0), ("gaussian-noise", 2))]
    expected.remove(("mask-hold", "v2-flower", "", "video-mask", "", -1, "none", 0, "failed", why))  # stored already
    assert sorted(rows) == sorted(expected)
    assert all(tracks == [] and delta == {} for _, _, tracks, delta in result)


def test_a_davis2017_frame_is_scored_without_its_void_pixels_as_davis_semi_supervised_evaluation_does(tmp_path):
    try:
        from test_video_datasets import _frame, _idx, _palette_png
    except ImportError:  # run from the repository root
        from tests.test_video_datasets import _frame, _idx, _palette_png
    root = tmp_path / "DAVIS"
    # frame 0: object 1 in columns 0-3; frame 1: it moved to columns 2-5 and columns 0-1 are void (255)
    for t, a in enumerate([_idx((1, 0, 4, 0, 4)), _idx((1, 0, 4, 2, 6), (255, 0, 4, 0, 2))]):
        _frame(root / "JPEGImages" / "480p" / "dogs" / f"{t:05d}.jpg", 10 * t)
        _palette_png(root / "Annotations" / "480p" / "dogs" / f"{t:05d}.png", a)
    sambench.run(["mask-hold"], "video-mask", f"davis2017:{root}", out=tmp_path / "r")
    (entry,) = stored_tracks(tmp_path / "r")
    con = sqlite3.connect(str(tmp_path / "r" / "results.sqlite"))
    cols = [c[1] for c in con.execute("PRAGMA table_info(tracks)")]
    con.close()
    # the held columns 0-3 against the GT's 2-5: 8 shared of 24 pixels; with void excluded it would be 8 of 16
    assert json.loads(dict(zip(cols, entry))["j_frames"]) == [pytest.approx(8 / 24)]


def test_a_sparse_split_scores_only_the_frames_whose_annotation_names_the_object(tmp_path):
    from sambench.datasets import DatasetSpec

    try:
        from test_video_datasets import _ytvos
    except ImportError:  # run from the repository root
        from tests.test_video_datasets import _ytvos
    # YouTube-VOS valid: frame 0's PNG holds object 1, frame 2's only object 2 (object 1 is not annotated there)
    root = _ytvos(tmp_path / "ytvos")
    run = sambench.run(["mask-hold"], "video-mask", DatasetSpec(spec=f"ytvos:{root}", options={"split": "valid"}),
                       out=tmp_path / "r")
    row = run.rows().set_index("object_id").loc["1"]
    # before, frame 2 was scored as "object absent" (an ok row of J = 0); it has no ground truth for object 1
    assert row["status"] == "failed" and "no annotated frame to score" in row["error"]
