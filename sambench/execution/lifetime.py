"""Helper processes end when the ``sambench run`` that started them ends, however it ends.

:func:`die_with_parent` is called first thing in every process-pool worker (and Ray actor started by a
local driver). On Linux it asks the kernel, through ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, to kill the
process the moment its parent dies — SIGKILL of the parent included, where no Python cleanup runs. The
request is made *after* fork, so a parent that died in between is caught by comparing ``getppid()`` with
the expected parent. Elsewhere (macOS) a daemon thread polls ``getppid()`` once a second and exits when
the process has been re-parented.
"""

from __future__ import annotations

import ctypes
import os
import signal
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


__all__ = ["die_with_parent"]
