"""Helper processes end when the ``sambench run`` that started them ends, however it ends.

:func:`die_with_parent` is called first thing in every process-pool worker (and Ray actor started by a
local driver). On Linux it asks the kernel, through ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, to kill the
process the moment its parent dies — SIGKILL of the parent included, where no Python cleanup runs. The
request is made *after* fork, so a parent that died in between is caught by comparing ``getppid()`` with
the expected parent. Elsewhere (macOS) a daemon thread polls ``getppid()`` once a second and exits when
the process has been re-parented.

Processes sambench does not start itself cannot ask for that. A local Ray instance's raylet dies with the
driver (Ray sets its death signal), but the agents the raylet starts (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) notice only later and then wait 60 s on the dead GCS before they exit. For them
:func:`reap_with_driver` starts a small reaper process: it blocks reading a pipe whose only writer is the
driver, and when the driver ends, however it ends, it SIGKILLs every process whose environment names that
raylet (``RAY_RAYLET_PID``, which Ray gives to every process the raylet starts).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Optional

PR_SET_PDEATHSIG = 1


def _prctl_pdeathsig(sig: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, interval_s: float) -> None:
    def loop() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(interval_s)

    threading.Thread(target=loop, name="sambench-parent-watch", daemon=True).start()


def die_with_parent(parent: Optional[int] = None, interval_s: float = 1.0) -> None:
    """End this process when ``parent`` (default: the current parent) dies (see the module docstring)."""
    parent = os.getppid() if parent is None else parent
    if sys.platform.startswith("linux") and _prctl_pdeathsig(signal.SIGKILL):
        if os.getppid() != parent:  # the parent died before the request was made
            os._exit(1)
        return
    _watch_parent(parent, interval_s)


#: The reaper's code (run with ``python -c``: nothing to import). argv[1] is the raylet's pid.
_REAPER = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the driver cleans up then
tag = ("RAY_RAYLET_PID=" + sys.argv[1]).encode()
sys.stdin.buffer.read()  # returns at EOF: the driver ended, however it ended
for d in os.listdir("/proc"):
    if d.isdigit() and int(d) != os.getpid():
        try:
            with open("/proc/" + d + "/environ", "rb") as fh:
                if tag in fh.read().split(b"\0"):
                    os.kill(int(d), signal.SIGKILL)
        except OSError:
            pass
"""


def descendant_pids(pid: int, cmdline_contains: str) -> list[int]:
    """Live descendants of ``pid`` whose command line contains ``cmdline_contains`` (Linux /proc; [] elsewhere)."""
    if not os.path.isdir("/proc"):
        return []
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            todo.append(c)
            try:
                with open(f"/proc/{c}/cmdline", "rb") as fh:
                    if cmdline_contains.encode() in fh.read():
                        out.append(c)
            except OSError:
                pass
    return out


def reap_with_driver(raylet_pid: int) -> Optional[subprocess.Popen]:
    """Start the reaper of the processes the raylet ``raylet_pid`` started (see the module docstring);
    None where there is no /proc. Closing its stdin (or this process ending) sets it off."""
    if not sys.platform.startswith("linux"):
        return None
    return subprocess.Popen([sys.executable, "-c", _REAPER, str(int(raylet_pid))], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


__all__ = ["descendant_pids", "die_with_parent", "reap_with_driver"]
