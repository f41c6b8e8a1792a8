"""Where a run's time goes: seconds per named stage and masks scored per place, per model.

The runner times ``encode``, ``decode``, ``rows`` and ``wait for scoring`` itself and hands the same timer to
the fast scorer (:mod:`sambench.metrics.fast`), which times ``bbox+pack``, ``IoU``, ``boundary IoU`` and
``RLE``. Each image's :meth:`StageTimer.summary` travels back with its rows and is summed into the
invocation's ``scoring`` section of the manifest (:func:`sambench.store.add_timings`).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator


class StageTimer:
    """Seconds spent per named stage, summed, and masks scored per place (``host``, ``cuda:0``, ...);
    safe to share between threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.places: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def count(self, place: str, masks: int) -> None:
        with self._lock:
            self.places[place] = self.places.get(place, 0) + masks

    def summary(self) -> dict:
        """``{"seconds": {stage: s}, "places": {place: masks}}`` (the form
        :func:`sambench.store.add_timings` sums)."""
        with self._lock:
            return {"seconds": dict(self.seconds), "places": dict(self.places)}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)


__all__ = ["StageTimer"]
