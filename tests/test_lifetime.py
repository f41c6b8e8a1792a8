"""One writer per run directory; helper processes die with their driver."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sambench.execution.lock import LOCK_NAME, RunLock
from sambench.types import SambenchError
try:
    from run_fixtures import alive, checkout_env, sambench_cli, sigkill, wait_for_rows, wait_gone
except ImportError:  # tests/ imported as a package
    from tests.run_fixtures import alive, checkout_env, sambench_cli, sigkill, wait_for_rows, wait_gone

HOLD = textwrap.dedent("""
    import sys, time
    from sambench.execution.lock import RunLock
    RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def _holder(run_dir: Path, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(seconds)], stdout=subprocess.PIPE, text=True,
                         env=checkout_env())
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_locked_run_dir_refuses_a_second_writer_and_names_the_holder(tmp_path):
    p = _holder(tmp_path, 60)
    try:
        with pytest.raises(SambenchError, match=rf"is being written by sambench pid {p.pid} on .* --wait-lock"):
            RunLock(tmp_path).acquire()
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == p.pid and info["host"] and info["started"]
    finally:
        p.kill()
        p.wait()
    # SIGKILL left the file behind, but the kernel released the flock: the stale lock is taken over
    assert (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()  # a normal end leaves only the results


@pytest.mark.slow
def test_wait_lock_waits_for_the_holder(tmp_path):
    p = _holder(tmp_path, 1.5)
    t0 = time.monotonic()
    lock = RunLock(tmp_path).acquire(wait=True, poll_s=0.1, timeout_s=60)
    assert p.wait() == 0 and time.monotonic() - t0 > 0.5
    lock.release()


@pytest.mark.slow  # over 0.8 s on idle cores (a subprocess or a model build)
def test_cli_refuses_a_locked_run_dir_in_one_line(tmp_path):
    p = _holder(tmp_path / "r", 60)
    try:
        out = subprocess.run(sambench_cli("run", "-m", "box-fill", "--limit", "1", "--levels", "0", "--out",
                                          str(tmp_path / "r"), "-q", "--no-report"), capture_output=True, text=True)
    finally:
        p.kill()
        p.wait()
    assert out.returncode == 2, out.stderr
    lines = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "is being written by sambench pid" in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "r" / "results.sqlite").exists()


def kill_driver_and_check_workers(args: list, run_dir: Path, min_workers: int, grace_s: float,
                                  startup_s: float = 120) -> None:
    """Start ``sambench run`` (args), wait until it has ``min_workers`` descendants and a row, SIGKILL it,
    and assert every descendant is gone within ``grace_s``."""
    proc = subprocess.Popen(sambench_cli(*args, "--out", str(run_dir)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=checkout_env())
    kids: set[int] = set()
    try:
        kids = wait_for_rows(proc, run_dir, ready=lambda live: len(live) >= min_workers, timeout=startup_s)
        assert len(alive(kids)) >= min_workers
    finally:
        sigkill(proc)
    left = wait_gone(kids, grace_s)
    assert not left, f"{len(left)} worker process(es) outlived the SIGKILLed driver"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_pool_worker_outlives_a_sigkilled_driver(tmp_path):
    args = ["run", "-m", "grabcut", "--option", "grabcut.max_side=96", "--levels", "0,0.5,1", "--draws", "5",
            "--limit", "13", "--workers", "2", "-q", "--no-report"]
    kill_driver_and_check_workers(args, tmp_path / "r", min_workers=2, grace_s=5)
