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

HOLD = textwrap.dedent("""
    import sys, time
    from sambench.execution.lock import RunLock
    RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def _holder(run_dir: Path, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(seconds)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
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


def test_cli_refuses_a_locked_run_dir_in_one_line(tmp_path):
    p = _holder(tmp_path / "r", 60)
    try:
        out = subprocess.run([sys.executable, "-m", "sambench", "run", "-m", "box-fill", "--limit", "1", "--levels",
                              "0", "--out", str(tmp_path / "r"), "-q", "--no-report"], capture_output=True, text=True)
    finally:
        p.kill()
        p.wait()
    assert out.returncode == 2, out.stderr
    lines = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "is being written by sambench pid" in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "r" / "results.sqlite").exists()


def _descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and _alive(pids):
        time.sleep(0.1)
    return _alive(pids)


def kill_driver_and_check_workers(args: list, run_dir: Path, min_workers: int, grace_s: float,
                                  startup_s: float = 120) -> None:
    """Start ``sambench run`` (args), wait until it has ``min_workers`` descendants and a row, SIGKILL it,
    and assert every descendant is gone within ``grace_s``."""
    try:
        from run_fixtures import stored_count
    except ImportError:  # tests/ imported as a package
        from tests.run_fixtures import stored_count

    proc = subprocess.Popen([sys.executable, "-m", "sambench", *args, "--out", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.monotonic() + startup_s
    kids: set[int] = set()
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            kids |= _descendants(proc.pid)
            db = run_dir / "results.sqlite"
            if len(_alive(kids)) >= min_workers and stored_count(db):
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be killed"
        kids |= _descendants(proc.pid)
        assert len(_alive(kids)) >= min_workers
    finally:
        proc.kill()
        proc.wait()
    left = wait_gone(kids, grace_s)
    assert not left, f"{len(left)} worker process(es) outlived the SIGKILLed driver"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_pool_worker_outlives_a_sigkilled_driver(tmp_path):
    args = ["run", "-m", "grabcut", "--option", "grabcut.max_side=96", "--levels", "0,0.5,1", "--draws", "5",
            "--limit", "13", "--workers", "2", "-q", "--no-report"]
    kill_driver_and_check_workers(args, tmp_path / "r", min_workers=2, grace_s=5)
