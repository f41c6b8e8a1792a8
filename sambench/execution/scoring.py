"""The scoring threads: each chunk of predicted masks is scored while the adapter decodes the next chunk.

numpy, OpenCV and torch release the GIL in their kernels, so scoring on a few threads overlaps the model's
work. The scores themselves are :mod:`sambench.metrics.fast`'s; this module only decides where and when
they are computed, so the rows do not depend on the number of threads (tests/test_scoring.py).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Mapping, Optional

import numpy as np

from sambench.metrics.fast import ImageScorer


def default_threads(workers: int = 1) -> int:
    """Scoring threads per worker process: the CPUs this process may use, shared by ``workers``, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus // max(1, workers)))


class ScoringPool:
    """Scores chunks of predictions on ``threads`` threads while the caller decodes the next chunk.

    numpy, OpenCV and torch release the GIL in their kernels, so scoring overlaps the model's work and
    other chunks' scoring. At most ``threads`` chunks wait or run here, so with the one being decoded at
    most ``threads + 1`` chunks of masks exist at once. ``threads=0`` scores in the caller, at submit.
    """

    def __init__(self, threads: int = 0) -> None:
        self.threads = max(0, int(threads))
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="sambench-score") if self.threads else None
        self._pending: deque = deque()

    def image_scorer(self, objects: Mapping[str, np.ndarray],
                     ignores: Optional[Mapping[str, Optional[np.ndarray]]] = None) -> ImageScorer:
        """The scorer of one image's objects and their ignore masks (GT work done once per object)."""
        return ImageScorer(objects, ignores)

    def submit(self, fn: Callable, *args: Any) -> Future:
        """Run ``fn(*args)`` on the pool (waiting first while ``threads`` chunks are in flight)."""
        if self._pool is None:
            fut: Future = Future()
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # surfaces at .result(), like a pooled call
                fut.set_exception(exc)
            return fut
        while self._pending and (len(self._pending) >= self.threads or self._pending[0].done()):
            self._pending.popleft().exception()  # wait for the oldest; errors surface at .result()
        fut = self._pool.submit(fn, *args)
        self._pending.append(fut)
        return fut

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


__all__ = ["ScoringPool", "default_threads"]
