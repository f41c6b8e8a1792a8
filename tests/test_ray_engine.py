"""The Ray engine on a local 2-CPU Ray instance: same rows as a local run, a killed actor's images are
retried exactly once, nothing outlives a SIGKILLed driver, and actors share the embedding cache."""

import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

# Ray is in the `test` extra (pyproject.toml): a missing Ray is a broken test install, not a skip.
from sambench.datasets import DatasetSpec
from sambench.execution import RunConfig, run
from sambench.execution.lifetime import cmdline
try:
    from run_fixtures import alive, checkout_env, sambench_cli, sigkill, stored_rows, wait_for_rows, wait_gone
except ImportError:  # tests/ imported as a package
    from tests.run_fixtures import alive, checkout_env, sambench_cli, sigkill, stored_rows, wait_for_rows, wait_gone

pytestmark = pytest.mark.slow


def _config(out, **kw):
    base = dict(models=["sam-tiny", "box-fill"], protocols=["noisy-box"], datasets=[DatasetSpec("grabcut-sample")],
                out=out, levels=["0", "0.5"], draws=1, limit=3, workers=1, progress=False, device="cpu")
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture
def one_thread():
    """Ray gives each 1-CPU actor one torch thread (OMP_NUM_THREADS=1). CPU float reductions depend on
    the thread count (scores move by ~1e-7), so the local reference runs with one thread as well."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_ray_rows_equal_local_rows_and_actors_fill_a_shared_cache(tmp_path, one_thread):
    local = run(_config(tmp_path / "local", protocols=["stable-sam-paper"], levels=None, draws=1))
    cache = tmp_path / "shared-cache"
    ray_res = run(_config(tmp_path / "ray", protocols=["stable-sam-paper"], levels=None, draws=1, engine="ray",
                          workers=2, cache_dir=str(cache)))
    assert stored_rows(tmp_path / "ray") == stored_rows(tmp_path / "local") and len(stored_rows(tmp_path / "local")) == 2 * 3 * 4
    assert ray_res.counters["sam-tiny"]["encoder_calls"] == local.counters["sam-tiny"]["encoder_calls"] == 3
    assert ray_res.counters["sam-tiny"]["cache_writes"] == 3
    m = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert m["config"]["engine"] == "ray" and m["counters"]["sam-tiny"]["cache_misses"] == 3
    # the entries the actors wrote serve a later local run: 0 encoder calls, identical rows
    warm = run(_config(tmp_path / "warm", protocols=["stable-sam-paper"], levels=None, draws=1,
                       cache_dir=str(cache)))
    assert warm.counters["sam-tiny"]["encoder_calls"] == 0 and warm.counters["sam-tiny"]["cache_hits"] == 3
    assert stored_rows(tmp_path / "warm") == stored_rows(tmp_path / "local")


RAY_ARGS = ["run", "-m", "sam-tiny", "-p", "noisy-box", "--levels", "0,0.5", "--draws", "1", "--device", "cpu",
            "--engine", "ray", "--workers", "2", "--no-cache", "-q", "--no-report"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_actor_s_images_are_retried_and_every_row_exists_once(tmp_path, one_thread):
    limit = ["--limit", "5"]
    proc = subprocess.Popen(sambench_cli(*RAY_ARGS, *limit, "--out", str(tmp_path / "ray")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=checkout_env())
    busy: list[int] = []

    def an_actor_at_work(live: set[int]) -> bool:
        busy[:] = [p for p in live if "ray::_Worker.work" in cmdline(p)]
        return bool(busy)

    wait_for_rows(proc, tmp_path / "ray", distinct="image_id", ready=an_actor_at_work, timeout=300)  # one image in
    os.kill(busy[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    run(_config(tmp_path / "local", models=["sam-tiny"], limit=5))
    rows = stored_rows(tmp_path / "ray")
    assert rows == stored_rows(tmp_path / "local") and len(rows) == 5 * 2
    con = sqlite3.connect(str(tmp_path / "ray" / "results.sqlite"))
    assert con.execute("SELECT COUNT(*) FROM (SELECT DISTINCT model, dataset, image_id, object_id, protocol, level, "
                       "draw FROM results)").fetchone()[0] == len(rows)
    con.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_ray_process_outlives_a_sigkilled_driver(tmp_path):
    proc = subprocess.Popen(sambench_cli(*RAY_ARGS, "--limit", "13", "--out", str(tmp_path / "r")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=checkout_env())
    try:
        kids = wait_for_rows(proc, tmp_path / "r", distinct="image_id", timeout=300)
        workers = {p for p in kids if "ray::_Worker" in cmdline(p)}
        core = {p for p in kids if "raylet" in cmdline(p) or "gcs_server" in cmdline(p)}
        assert len(alive(workers)) == 2 and len(alive(core)) == 2
    finally:
        sigkill(proc)
    assert not wait_gone(workers | core, 30), "Ray actors or the local Ray instance outlived the driver"
    # (Ray's dashboard / runtime-env agents are killed with the driver by sambench's reaper:
    # tests/test_hardening_3.py::test_no_ray_process_of_the_session_outlives_a_killed_driver_by_more_than_seconds.)
