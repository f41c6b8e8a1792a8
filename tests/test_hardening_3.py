"""Issue 22 (Hardening 3), items 2, 3, 4, 8, 9, 12, 13: Ray refuses what would hang, the embedding cache
deletes only its own files and never turns a cache fault into failed rows, a killed pool worker is one
line, values that mean nothing are refused, fog's memory follows the image's area, and no Ray process
outlives a killed driver."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from sambench.cli.main import main
from sambench.config.vocabulary import parse_spec
from sambench.datasets import DatasetSpec
from sambench.execution import RunConfig, run
from sambench.execution.cache import MARKER, EmbeddingCache
from sambench.execution.lifetime import cmdline
from sambench.types import SambenchError

try:
    from run_fixtures import checkout_env, error_lines, sambench_cli, sigkill, stored_count, \
        wait_for_rows, wait_gone
except ImportError:  # tests/ imported as a package
    from tests.run_fixtures import checkout_env, error_lines, sambench_cli, sigkill, \
        stored_count, wait_for_rows, wait_gone

try:
    from test_cache import _ArrayAdapter  # the minimal cacheable adapter (an array as its state)
except ImportError:  # tests/ imported as a package
    from tests.test_cache import _ArrayAdapter

KEY = "ab" + "0" * 62  # an entry's key: 64 hex digits, its directory the first two


def _config(out, **kw):
    base = dict(models=["box-fill"], protocols=["noisy-box"], datasets=[DatasetSpec("grabcut-sample")], out=out,
                levels=["0"], draws=1, limit=2, workers=1, progress=False, device="cpu")
    base.update(kw)
    return RunConfig(**base)


def _cli(*args):
    return CliRunner().invoke(main, list(args))


# ------------------------------------------------------------------------ item 9: values that mean nothing


@pytest.mark.parametrize("spec", ["fog:5-1", "fog:3-2,4"])
def test_an_empty_corruption_severity_range_is_refused_in_one_line(spec):
    with pytest.raises(SambenchError, match=r"^--corruption '.*': the range \d-\d is empty"):
        parse_spec(spec)
    assert parse_spec("fog:2-3") == [("fog", 2), ("fog", 3)]  # a range still means its severities


def test_cache_max_gb_zero_is_refused_not_taken_for_the_default(tmp_path):
    res = _cli("run", "-m", "box-fill", "-p", "noisy-box", "--levels", "0", "--draws", "1", "--limit", "1", "-q",
               "--no-report", "--out", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "--cache-max-gb", "0")
    assert res.exit_code == 2 and "--cache-max-gb must be > 0" in res.output and "--no-cache" in res.output
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_cache_max_gb_inf_means_no_limit(tmp_path):
    cache = EmbeddingCache(tmp_path / "c", max_gb=float("inf"))
    for i in range(3):
        cache.put(_ArrayAdapter(), f"img{i}", "sam", np.full((4, 5), i, dtype=np.float32))
    assert len(cache.entries()) == 3 and cache.stats.evicted == 0 and cache.fork().max_bytes == float("inf")
    res = _cli("run", "-m", "box-fill", "-p", "noisy-box", "--levels", "0", "--draws", "1", "--limit", "1", "-q",
               "--no-report", "--workers", "1", "--out", str(tmp_path / "r"), "--cache", str(tmp_path / "c"),
               "--cache-max-gb", "inf")
    assert res.exit_code == 0, res.output
    import json
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["config"]["cache_max_gb"] == "inf"


# ----------------------------------------------------- item 3: clear / verify touch only the cache's own files


def _user_dir_with_a_model(root):
    (root / "sam2").mkdir(parents=True)
    (root / "sam2" / "model.safetensors").write_bytes(b"user weights")
    (root / "notes.txt").write_text("mine")


def test_cache_clear_refuses_a_directory_it_does_not_own_and_deletes_nothing(tmp_path):
    _user_dir_with_a_model(tmp_path)
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / f"{KEY}.safetensors").write_bytes(b"looks like an entry")
    for args in (["cache", "clear"], ["cache", "verify", "--remove"]):
        res = _cli(*args, "--cache", str(tmp_path))
        assert res.exit_code == 2 and res.output.count("\n") == 1 and "is not a sambench cache" in res.output
    assert (tmp_path / "sam2" / "model.safetensors").read_bytes() == b"user weights"
    assert (tmp_path / "notes.txt").exists() and (tmp_path / "ab" / f"{KEY}.safetensors").exists()
    assert not (tmp_path / MARKER).exists()


def test_cache_clear_in_its_own_directory_deletes_entries_only(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    cache.claim()
    assert (tmp_path / "c" / MARKER).is_file()
    cache.put(_ArrayAdapter(), "img0", "sam", np.zeros((2, 2), np.float32))
    entry = cache.entries()[0].path
    # files a user put there later, some under an entry directory, one with an entry-like but wrong name
    (entry.parent / "model.safetensors").write_bytes(b"x")
    (entry.parent / f"{'cd' + '0' * 62}.safetensors").write_bytes(b"x")  # directory and key disagree
    (tmp_path / "c" / "sam2").mkdir()
    (tmp_path / "c" / "sam2" / "model.safetensors").write_bytes(b"x")
    res = _cli("cache", "clear", "--cache", str(tmp_path / "c"))
    assert res.exit_code == 0 and res.output.strip().endswith("removed 1 entries")
    assert not entry.exists() and (entry.parent / "model.safetensors").exists()
    assert (entry.parent / f"{'cd' + '0' * 62}.safetensors").exists()
    assert (tmp_path / "c" / "sam2" / "model.safetensors").exists()


def test_a_cache_written_before_markers_is_adopted_by_clear(tmp_path):
    old = EmbeddingCache(tmp_path)  # writes entries without claiming: as versions before the marker did
    for i in range(2):
        old.put(_ArrayAdapter(), f"img{i}", "sam", np.zeros((2, 2), np.float32))
    assert not (tmp_path / MARKER).exists()
    res = _cli("cache", "clear", "--cache", str(tmp_path))
    assert res.exit_code == 0 and res.output.strip().endswith("removed 2 entries") and (tmp_path / MARKER).is_file()


# ------------------------------------------------ item 4: a bad --cache is refused; an unreadable entry is a miss


def test_a_cache_path_that_is_a_file_is_refused_before_the_run_directory_exists(tmp_path):
    (tmp_path / "f").write_text("not a directory")
    with pytest.raises(SambenchError, match=r"^--cache .*/f: is a file"):
        run(_config(tmp_path / "r", cache_dir=str(tmp_path / "f")))
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes whatever the permissions say")
def test_an_unwritable_cache_is_refused_before_the_run_directory_exists(tmp_path):
    (tmp_path / "c").mkdir()
    os.chmod(tmp_path / "c", 0o500)
    try:
        with pytest.raises(SambenchError, match=r"^--cache .*/c: "):
            run(_config(tmp_path / "r", cache_dir=str(tmp_path / "c")))
    finally:
        os.chmod(tmp_path / "c", 0o700)
    assert not (tmp_path / "r").exists()


def test_a_cache_path_under_a_file_is_refused_before_the_run_directory_exists(tmp_path):
    (tmp_path / "f").write_text("not a directory")
    with pytest.raises(SambenchError, match=r"^--cache .*/f/c: cannot be used as a cache"):
        run(_config(tmp_path / "r", cache_dir=str(tmp_path / "f" / "c")))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("fault", ["permission", "directory"])
def test_an_unreadable_entry_is_a_miss_warned_once(tmp_path, caplog, fault):
    cache = EmbeddingCache(tmp_path)
    ad = _ArrayAdapter()
    path = cache.put(ad, "img0", "sam", np.ones((2, 2), np.float32))
    if fault == "permission":
        if os.geteuid() == 0:
            pytest.skip("root reads whatever the permissions say")
        os.chmod(path, 0)
    else:  # reading it fails with an OSError other than FileNotFoundError, even as root
        path.unlink()
        path.mkdir()
    try:
        with caplog.at_level("WARNING", logger="sambench.execution.cache"):
            assert cache.get(ad, "img0", "sam") is None and cache.get(ad, "img0", "sam") is None
    finally:
        if fault == "permission":
            os.chmod(path, 0o600)
    assert cache.stats.misses == 2 and cache.stats.corrupt == 2
    assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == 1


# ------------------------------------------------------------- item 8: a pool worker killed by the OOM killer


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_pool_worker_ends_the_run_in_one_line_with_exit_2_and_keeps_the_rows(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen(sambench_cli("run", "-m", "grabcut", "-p", "noisy-box", "--levels", "0,0.5", "--draws", "2",
                                         "--workers", "2", "--no-cache", "-q", "--no-report", "--out", str(out)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=checkout_env())
    workers: list[int] = []

    def two_workers(live: set[int]) -> bool:
        workers[:] = [p for p in live if "resource_tracker" not in cmdline(p)]
        return len(workers) >= 2

    try:
        wait_for_rows(proc, out, rows=1, ready=two_workers, timeout=120)
        kept = stored_count(out / "results.sqlite")
        os.kill(workers[0], 9)  # SIGKILL, as the out-of-memory killer sends
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            sigkill(proc)
    assert proc.returncode == 2, err
    assert len(error_lines(err)) == 1 and err.strip().splitlines()[-1].startswith("error:") and "Traceback" not in err
    assert "worker process of the pool died" in err and "rows written so far are kept" in err
    assert 0 < kept <= stored_count(out / "results.sqlite") < 16 * 4


# --------------------------------------------- items 2 and 13: Ray refuses what would hang; nothing outlives it


RAY_RUN = ["run", "-m", "box-fill", "-p", "noisy-box", "--levels", "0", "--draws", "1", "--limit", "2", "-q",
           "--no-report", "--no-cache", "--engine", "ray"]


@pytest.mark.slow
@pytest.mark.parametrize("address", ["127.0.0.1:1", "auto"])
def test_ray_refuses_an_unreachable_address_within_seconds_and_leaves_no_run_directory(tmp_path, address):
    if address == "auto" and (os.environ.get("RAY_ADDRESS") or os.path.exists("/tmp/ray/ray_current_cluster")):
        pytest.skip("a Ray cluster is running on this machine")
    env = {k: v for k, v in checkout_env().items() if k != "RAY_ADDRESS"}
    res = subprocess.run(sambench_cli(*RAY_RUN, "--address", address, "--out", str(tmp_path / "r")),
                         capture_output=True, text=True, env=env, timeout=60)  # it waited 120 s and more
    assert res.returncode == 2 and len(error_lines(res.stderr)) == 1, res.stderr
    assert f"--address {address}: " in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def local_ray():
    """One 2-CPU local Ray instance without GPUs for the refusal tests (each run finds it initialised)."""
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("ask, message", [
    ({"gpus_per_worker": 1.0}, r"^--gpus-per-worker 1: the Ray instance this process had joined has 0 GPUs, room for 0 worker"),
    ({"workers": 5}, r"^--workers 5: the Ray instance this process had joined has 2 CPUs, room for 2 worker\(s\) of 1 CPU"),
])
def test_ray_refuses_actors_the_cluster_cannot_place_and_leaves_no_run_directory(tmp_path, local_ray, ask, message):
    kw = {"workers": None, **ask}
    with pytest.raises(SambenchError, match=message):
        run(_config(tmp_path / "r", engine="ray", ray_address=None, **kw))
    assert not (tmp_path / "r").exists()
    assert local_ray.is_initialized()  # a cluster the run did not start is left alone


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_ray_process_of_the_session_outlives_a_killed_driver_by_more_than_seconds(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen(sambench_cli(*RAY_RUN, "--limit", "16", "--workers", "1", "--out", str(out)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=checkout_env())
    agents: dict[int, str] = {}

    def agents_up(live: set[int]) -> bool:
        agents.clear()
        agents.update({p: cmdline(p).strip() for p in live if "Agent" in cmdline(p)})
        return len(agents) >= 2

    try:
        kids = wait_for_rows(proc, out, rows=1, ready=agents_up, timeout=120)
    finally:
        sigkill(proc)
    assert {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= set(agents.values())
    left = wait_gone(kids, 10)  # the agents lived 60 s more
    assert not left, [cmdline(p) for p in left]


# ------------------------------------------------------------------ item 12: fog's memory follows the area


@pytest.mark.parametrize("h, w", [(64, 5), (5, 64), (100, 3), (33, 7), (1, 2), (17, 17)])
def test_fog_fractal_row_by_row_is_bit_identical_to_the_whole_map(h, w):
    from sambench.inputs.imagenet_c import _next_pow2, plasma_crop, plasma_fractal
    from sambench.types import keyed_rng

    for decay in (1.7, 2.0, 3.0):  # fog's wibble decays (severities 5..1 use 1.7..3)
        mapsize = _next_pow2(max(h, w))
        whole_rng, rows_rng = keyed_rng("fog-test", h, w, decay), keyed_rng("fog-test", h, w, decay)
        whole = plasma_fractal(mapsize, decay, whole_rng)[:h, :w]
        rows = plasma_crop(mapsize, decay, rows_rng, h, w, by_rows=True)
        assert np.array_equal(whole, rows, equal_nan=True)
        assert whole_rng.bit_generator.state == rows_rng.bit_generator.state  # the stream ends where it did


@pytest.mark.slow
def test_fog_on_a_long_thin_image_peaks_with_its_area_not_its_longest_side_squared():
    import tracemalloc

    from sambench.inputs.corruptions import corrupt_keyed

    image = (np.arange(1024 * 4 * 3) % 251).astype(np.uint8).reshape(1024, 4, 3)
    tracemalloc.start()
    try:
        out = corrupt_keyed(image, "fog", 5, 0, "d", "long")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the whole 1024² float64 map alone is 8.4 MB (with its temporaries ~3x that); the image is 12 KB.
    # Measured: 0.68 MB (a 10000×10 image: 87 MB resident instead of 5709 MB, docs/corruptions.md)
    assert out.shape == image.shape and peak < 3e6, peak


def test_a_marked_cache_that_cannot_be_written_is_read_not_refused(tmp_path, monkeypatch, caplog):
    # A shared, pre-filled cache mounted read-only: its entries still serve the run, nothing is written, and
    # `cache clear` refuses. Root can write anywhere, so the kernel's answer is simulated at os.access and open.
    cache = EmbeddingCache(tmp_path / "c")
    cache.claim()
    ad = _ArrayAdapter()
    cache.put(ad, "img0", "sam", np.ones((2, 2), np.float32))
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    shared = EmbeddingCache(tmp_path / "c")
    with caplog.at_level("WARNING", logger="sambench.execution.cache"):
        shared.claim()
    assert shared.read_only and "not writable" in caplog.text
    assert np.array_equal(shared.get(ad, "img0", "sam"), np.ones((2, 2), np.float32))
    assert shared.put(ad, "img1", "sam", np.zeros((2, 2), np.float32)) is None
    assert len(shared.entries()) == 1
    with pytest.raises(SambenchError, match=r"not writable: nothing can be removed"):
        shared.clear()


def test_a_worker_whose_cache_write_is_refused_reads_on_without_a_failed_row(tmp_path, monkeypatch, caplog):
    import builtins
    import errno

    cache = EmbeddingCache(tmp_path / "c")
    cache.claim()
    real_open = builtins.open

    def refuse(path, *args, **kw):  # what EROFS gives a worker on a read-only mount
        if ".tmp-" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(builtins, "open", refuse)
    with caplog.at_level("WARNING", logger="sambench.execution.cache"):
        assert cache.put(_ArrayAdapter(), "img0", "sam", np.ones((2, 2), np.float32)) is None
    assert cache.read_only and caplog.text.count("not writable") == 1 and cache.entries() == []
