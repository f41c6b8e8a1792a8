"""CPU tuning the command line applies for the user.

glibc's malloc returns large freed buffers to the OS and takes them back on the next image, which
doubles the cost of a ViT encoder pass on CPU (benchmarks/bench_sam.py: ViT-B 18–27 s → 11 s per
1024² image with both thresholds at 4 GiB). The thresholds are read once at process start, so
``sambench run``/``sambench train`` re-execute themselves with them set when a torch model will run on the
CPU path and the user has not set them. ``SAMBENCH_NO_MALLOC_TUNING=1`` turns this off.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from sambench.adapters import is_cpu_baseline
from sambench.types import SambenchError

TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


def _models_in(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    for i, tok in enumerate(argv):
        if tok in ("-m", "--model", "--base") and i + 1 < len(argv):
            out.extend(argv[i + 1].split(","))
        elif tok.startswith("--model=") or tok.startswith("--base="):
            out.extend(tok.split("=", 1)[1].split(","))
    return [m.strip() for m in out if m.strip()]


def wants_malloc_tuning(argv: Sequence[str], environ: dict) -> bool:
    """True for ``run``/``train`` of a torch model on Linux, unless disabled or already set by the user."""
    if not sys.platform.startswith("linux") or environ.get("SAMBENCH_NO_MALLOC_TUNING"):
        return False
    if any(k in environ for k in TUNED_MALLOC) or not argv or argv[0] not in ("run", "train"):
        return False
    if argv[0] == "train":
        return True
    for m in _models_in(argv):
        try:
            if not is_cpu_baseline(m):
                return True
        except SambenchError:
            return False  # let the command itself report the unknown name
    return False


def reexec_with_tuned_malloc() -> None:
    """Replace this process by the same command with the malloc thresholds set (Linux only)."""
    argv = sys.argv[1:]
    if wants_malloc_tuning(argv, dict(os.environ)):
        env = {**os.environ, **TUNED_MALLOC}
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", "sambench", *argv], env)
