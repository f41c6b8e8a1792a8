"""Engines decide where images are evaluated; the rows do not depend on which one ran them.

* ``serial``: in this process, with the parent's adapters; a loader thread reads the next images meanwhile
  (sambench/execution/loader.py) and ``encode_batch`` images share one encoder pass.
* ``process``: a pool of processes, each building its own adapters from the config; results come back to the
  parent, which alone writes to SQLite. Workers end with the parent however it ends
  (sambench/execution/lifetime.py).
* ``ray``: model replicas on Ray actors (sambench/execution/ray.py, which imports Ray only when that engine
  starts); results also come back to the parent.

Every engine takes ``(work, workers)`` and has ``map(jobs)`` (one :class:`~sambench.execution.work.ImageResult`
per :class:`~sambench.execution.work.ImageJob`, in any order) and ``close()``.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Iterator, Optional

from sambench.execution.loader import prefetch
from sambench.execution.ray import RayEngine
from sambench.execution.work import ImageJob, ImageResult, ImageWork, batches, worker_init, worker_job
from sambench.types import SambenchError


class SerialEngine:
    """Images in this process, with the parent's adapters, ``encode_batch`` at a time; a loader thread
    reads the next ``prefetch`` batches while the models work."""

    def __init__(self, work: ImageWork, workers: Optional[int] = 1) -> None:
        self.work = work

    def map(self, jobs: Iterable[ImageJob]) -> Iterator[ImageResult]:
        work = self.work

        def load(batch: list[ImageJob]) -> list:
            return [work.load(j) for j in batch]

        # lazily: a job's done keys are read when the loader reaches it, a few images ahead of the model
        for batch, samples in prefetch(batches(jobs, work.config.encode_batch), load, depth=work.config.prefetch):
            if isinstance(samples, BaseException):
                raise samples
            yield from work.batch(batch, samples)

    def close(self) -> None:
        pass


def pool_context():
    """How pool workers start: ``fork`` (fast, the parent's memory shared) unless torch is loaded here, then
    ``spawn``. The parent builds its models before the pool starts (to refuse a bad run before any work),
    and a process forked after torch has run a parallel CPU op hangs in its first one (OpenMP's thread pool
    does not survive fork; CUDA cannot be re-initialised in a forked child either)."""
    return multiprocessing.get_context("spawn" if "torch" in sys.modules else "fork")


class ProcessPoolEngine:
    """Images spread over ``workers`` processes (started as :func:`pool_context` says); each builds its own
    adapters and datasets from the config and gets a copy of the given adapter objects (so both must
    pickle); results arrive in completion order."""

    def __init__(self, work: ImageWork, workers: int) -> None:
        self.pool = ProcessPoolExecutor(max_workers=workers, initializer=worker_init,
                                        initargs=(work.config, work.given), mp_context=pool_context())

    def map(self, jobs: Iterable[ImageJob]) -> Iterator[ImageResult]:
        """Results in completion order. A worker that dies (SIGKILL: the out-of-memory killer, most often)
        breaks the whole pool, so the run stops in one line (exit 2); the rows written so far are kept and
        a re-run resumes. It is not restarted: the image that killed it would likely kill the next one
        (the Ray engine retries with a bound instead)."""
        futures = [self.pool.submit(worker_job, job) for job in jobs]
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except BrokenProcessPool:
                raise SambenchError("a worker process of the pool died (killed, e.g. by the out-of-memory killer); "
                                    "the rows written so far are kept: re-run the same command to resume (fewer "
                                    "--workers need less memory)") from None
            yield result

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


#: Engine name → class (or factory) taking ``(work, workers)`` with ``map(jobs)`` and ``close()``.
#: The keys are :data:`sambench.execution.config.ENGINE_NAMES` (tests/test_runner.py checks it).
ENGINES = {"serial": SerialEngine, "process": ProcessPoolEngine, "ray": RayEngine}


def make_engine(work: ImageWork, workers: Optional[int], name: Optional[str] = None):
    """The engine ``name`` (None: ``serial`` for one worker, else ``process``) over ``workers``."""
    name = name or ("serial" if (workers or 1) == 1 else "process")
    if name not in ENGINES:
        raise SambenchError(f"unknown engine '{name}' (known: {', '.join(ENGINES)})")
    return ENGINES[name](work, workers)


__all__ = ["ENGINES", "ProcessPoolEngine", "SerialEngine", "make_engine", "pool_context"]
