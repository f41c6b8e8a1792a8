"""Video runs on Ray actors (a local 2-CPU instance): videos are the unit of work, the rows, per-frame tracks and
counters equal a local run's, and a killed actor's videos are retried so that every row exists once."""

import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

import sambench
from sambench.execution.lifetime import cmdline

try:
    from run_fixtures import checkout_env, sambench_cli, stored_rows, stored_tracks, wait_for_rows
except ImportError:  # tests/ imported as a package
    from tests.run_fixtures import checkout_env, sambench_cli, stored_rows, stored_tracks, wait_for_rows

pytestmark = pytest.mark.slow

SAMPLE = "grabcut-video-sample"
BASELINES = ["mask-hold", "flow-warp"]


@pytest.fixture
def local_ray():
    """A 2-CPU local Ray instance without GPUs, which the run joins (and leaves running)."""
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_ray_video_run_stores_the_rows_tracks_and_counters_of_a_local_run(tmp_path, local_ray):
    kw = dict(levels=["0", "0.5"], draws=2, progress=False)
    local = sambench.run(BASELINES, "video-noisy-box", SAMPLE, out=tmp_path / "local", workers=1, **kw)
    on_ray = sambench.run(BASELINES, "video-noisy-box", SAMPLE, out=tmp_path / "ray", engine="ray", workers=2, **kw)
    rows = stored_rows(tmp_path / "local")
    # 5 videos, 6 tracks (v5 has two objects) x 2 models x (level 0: the GT box, one draw; level 0.5: two draws)
    assert len(rows) == 6 * 2 * 3 and set(_statuses(tmp_path / "local")) == {"ok"}
    assert stored_rows(tmp_path / "ray") == rows
    assert stored_tracks(tmp_path / "ray") == stored_tracks(tmp_path / "local") and len(stored_tracks(tmp_path / "local")) == 36
    counters = [r.manifests[0]["counters"] for r in (local, on_ray)]
    assert counters[0] == counters[1]
    # flow-warp converts each of the 50 frames once; each model propagates once per (track, level, draw)
    assert counters[1]["flow-warp"]["encoder_calls"] == 50 and counters[1]["flow-warp"]["propagations"] == 18
    assert counters[1]["mask-hold"]["video_frames"] == 50
    m = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert m["config"]["engine"] == "ray" and local_ray.is_initialized()  # a cluster it joined is left running


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_actor_s_videos_are_retried_and_every_row_exists_once(tmp_path):
    args = ["run", "-m", "flow-warp", "-p", "video-noisy-box", "-d", SAMPLE, "--levels", "0,0.5,1", "--draws", "4",
            "--no-report", "-q"]
    proc = subprocess.Popen(sambench_cli(*args, "--engine", "ray", "--workers", "2", "--out", str(tmp_path / "ray")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=checkout_env())
    busy: list[int] = []

    def an_actor_at_work(live: set[int]) -> bool:
        busy[:] = [p for p in live if "ray::_Worker.work" in cmdline(p)]
        return bool(busy)

    try:
        wait_for_rows(proc, tmp_path / "ray", rows=1, ready=an_actor_at_work, timeout=120)  # one video in
        os.kill(busy[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    subprocess.run(sambench_cli(*args, "--workers", "1", "--out", str(tmp_path / "local")), check=True,
                   capture_output=True, env=checkout_env())
    rows = stored_rows(tmp_path / "ray")
    assert rows == stored_rows(tmp_path / "local") and len(rows) == 6 * (1 + 4 + 4)
    assert stored_tracks(tmp_path / "ray") == stored_tracks(tmp_path / "local")
    assert set(_statuses(tmp_path / "ray")) == {"ok"}  # the killed actor's video was re-run, not recorded failed
    # the killed attempt returned nothing, so its encoder calls and propagations are not counted twice
    counters = [json.loads((tmp_path / d / "manifest.json").read_text())["counters"] for d in ("ray", "local")]
    assert counters[0] == counters[1] and counters[0]["flow-warp"]["encoder_calls"] == 50
    con = sqlite3.connect(str(tmp_path / "ray" / "results.sqlite"))
    assert con.execute("SELECT COUNT(*) FROM (SELECT DISTINCT model, dataset, image_id, object_id, protocol, level, "
                       "draw FROM results)").fetchone()[0] == len(rows)
    con.close()


def _statuses(run_dir):
    con = sqlite3.connect(str(run_dir / "results.sqlite"))
    out = [s for (s,) in con.execute("SELECT status FROM results")]
    con.close()
    return out
