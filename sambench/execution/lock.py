"""One run directory, one writer: ``RUN_DIR/.sambench.lock``.

``sambench run`` holds an exclusive ``flock`` on the lock file for as long as it runs and writes who
holds it (pid, host, start time, command) into the file; it removes the file when it ends normally (the
run directory then holds only its results). A second ``run`` on the same directory either refuses in one
line naming the holder, or (``--wait-lock``) waits until the holder is gone. A process that got the lock
on a file its holder had just removed notices (the path no longer names its file) and tries again.

**Stale locks.** The kernel releases a ``flock`` when its process ends, however it ends (SIGKILL and
power loss of the process included), so a lock file left behind by a dead run is simply taken over: the
lock *is* the open descriptor, the file's text only says who had it. This is also why readers
(``report``, ``compare``) need no lock: they never write.

On a network filesystem whose server does not support locks, ``flock`` may succeed on two hosts; the
recorded host then tells you who else is writing. Run directories on shared storage should be written by
one machine (the Ray driver writes alone; its workers never touch the run directory).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Optional

from sambench.files import ensure_dir, storage_error
from sambench.types import SambenchError

LOCK_NAME = ".sambench.lock"


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another sambench process"
    return (f"sambench pid {info.get('pid')} on {info.get('host')} since {info.get('started')}")


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not unlinked or replaced since it was opened)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class RunLock:
    """An exclusive, self-releasing lock on a run directory (see the module docstring)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: Optional[int] = None

    def acquire(self, wait: bool = False, poll_s: float = 0.5, timeout_s: Optional[float] = None) -> "RunLock":
        """Take the lock; raise SambenchError naming the holder if it is taken and ``wait`` is false."""
        import fcntl  # lazy: POSIX only; the module is imported on every platform

        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise SambenchError(f"{self.run_dir}: is a file, not a run directory")
        ensure_dir(self.run_dir, "run directory")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        announced = False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise storage_error(self.path, exc, "cannot create the run lock") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = _holder_text(self.path)
                if not wait or (deadline is not None and time.monotonic() > deadline):
                    raise SambenchError(f"{self.run_dir} is being written by {holder}: wait for it to end, "
                                        f"pass --wait-lock, or use another --out") from None
                if not announced:
                    print(f"sambench: waiting for {holder} to release {self.run_dir} ...", file=sys.stderr)
                    announced = True
                time.sleep(poll_s)
                continue
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder released and removed the file after we opened it: try the new one
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file, then release the lock (a waiter holding the removed file's descriptor
        sees that it is gone and opens the path again, see :meth:`acquire`)."""
        if self._fd is not None:
            try:
                if _same_file(self._fd, self.path):
                    self.path.unlink()
            except OSError:
                pass  # a read-only or vanished directory: the kernel still releases the flock below
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["LOCK_NAME", "RunLock"]
