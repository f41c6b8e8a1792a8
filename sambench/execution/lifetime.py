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
:func:`reap_with_driver` starts a small reaper process: once a second it notes every process the raylet
started (directly or not, with its start time), and it waits on a pipe whose only writer is the driver;
when the driver ends, however it ends, it SIGKILLs each noted process that still runs (once re-parented
they can no longer be found from the raylet).
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
import os, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the driver cleans up then
root = int(sys.argv[1])  # the Ray node process whose descendants are noted
def procs():  # pid -> (parent pid, start time)
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/" + d + "/stat") as fh:
                    f = fh.read().rsplit(")", 1)[1].split()
                out[int(d)] = (int(f[1]), f[19])
            except (OSError, IndexError, ValueError):
                pass
    return out
known = {}  # every process the root started, directly or not: pid -> start time
while True:  # note them at once (the agents start with it), then once a second
    table = procs()
    grew = True
    while grew:
        grew = False
        for pid, (ppid, started) in table.items():
            if (ppid == root or ppid in known) and pid not in known:
                known[pid] = started
                grew = True
    ready, _, _ = select.select([0], [], [], 1.0)
    if ready and not os.read(0, 4096):
        break  # EOF: the driver ended, however it ended
table = procs()
for pid, started in known.items():
    if pid in table and table[pid][1] == started:  # still that process, not a reused pid
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (Linux /proc; empty elsewhere)."""
    if not os.path.isdir("/proc"):
        return set()
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


def cmdline(pid: int) -> str:
    """The command line of process ``pid``, arguments joined by spaces ("" when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendant_pids(pid: int, cmdline_contains: str) -> list[int]:
    """Live descendants of ``pid`` whose command line contains ``cmdline_contains``."""
    return sorted(p for p in descendants(pid) if cmdline_contains in cmdline(p))


def reap_with_driver(raylet_pid: int) -> Optional[subprocess.Popen]:
    """Start the reaper of the processes the raylet ``raylet_pid`` started (see the module docstring);
    None where there is no /proc. Closing its stdin (or this process ending) sets it off."""
    if not sys.platform.startswith("linux"):
        return None
    return subprocess.Popen([sys.executable, "-c", _REAPER, str(int(raylet_pid))], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


__all__ = ["cmdline", "descendant_pids", "descendants", "die_with_parent", "reap_with_driver"]
