"""The Ray engine: images go to model replicas on Ray actors; rows come back to the driver.

``sambench run ... --engine ray [--address auto|HOST:PORT] [--gpus-per-worker F]`` (``pip install
'sambench[ray]'``). The driver (the ``sambench run`` process) alone opens the run directory and writes
SQLite, exactly as a local run: the engine only decides *where* an image's rows are computed.

* **Actors.** ``workers`` actors, each built once with the run config; an actor builds one replica of
  every model of the run (on first use) and processes one image at a time. Each asks Ray for
  ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (fractions share a GPU); Ray sets
  ``CUDA_VISIBLE_DEVICES`` and ``OMP_NUM_THREADS`` for it. By default there are as many actors as the
  cluster has GPUs / ``gpus_per_worker`` (CPUs / ``cpus_per_worker`` without GPUs), at most one per image.
* **Streaming.** At most ``inflight`` images per actor are queued at a time; as each result arrives
  (``ray.wait``) the driver commits it and the next image is sent, so neither side holds the whole run.
* **Faults.** Actors are created with ``max_restarts`` and ``max_task_retries``: when an actor's process
  dies (killed, out of memory, node lost) Ray restarts it and re-runs its unfinished images there. The
  driver gets exactly one result per image, and the store's primary key ignores a repeated row anyway,
  so every row exists exactly once. An image whose actor died more than ``max_retries`` times is
  returned as an exception (the runner records failed rows for it); the run goes on with the others.
* **Lifetime.** The actors belong to the driver's Ray job: when the driver ends, however it ends, Ray
  kills them. A local instance started by the driver (no ``--address``) ends with it too.
* **Cache.** Actors use the run's embedding cache directory; on a cluster give a path every node sees
  (NFS): entries are written atomically and never need a lock to read.

The work itself is the runner's: ``init(config)`` once per actor and ``work(job)`` per image — the same
two functions the local process pool uses, so a Ray run gives the same rows as a local one.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Optional

from sambench.types import SambenchError

DEFAULT_MAX_RETRIES = 3
DEFAULT_INFLIGHT = 2


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SambenchError("--engine ray needs Ray: pip install 'sambench[ray]'") from None
    return ray


class _Worker:
    """The actor: one replica of the run's models (built lazily by ``init``), one image at a time."""

    def __init__(self, init: Callable, config: Any) -> None:
        init(config)

    def pid(self) -> int:
        return os.getpid()

    def work(self, fn: Callable, job: tuple) -> Any:
        return fn(*job)


class RayEngine:
    """Run ``work(*job)`` for every job on Ray actors (see the module docstring)."""

    def __init__(self, init: Callable, work: Callable, config: Any, *, workers: Optional[int] = None,
                 address: Optional[str] = None, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                 max_retries: int = DEFAULT_MAX_RETRIES, inflight: int = DEFAULT_INFLIGHT,
                 local_cpus: Optional[int] = None) -> None:
        ray = _import_ray()
        if gpus_per_worker < 0 or cpus_per_worker <= 0:
            raise SambenchError(f"--gpus-per-worker must be >= 0 and CPUs per worker > 0 "
                                f"(got {gpus_per_worker}, {cpus_per_worker})")
        self.ray = ray
        self.work = work
        self.max_retries = int(max_retries)
        self.inflight = max(1, int(inflight))
        self._started_ray = False
        if not ray.is_initialized():
            kw: dict = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
            if address:
                kw["address"] = address
            else:  # a local instance: the CPUs this process may use (not the host's count)
                kw["num_cpus"] = local_cpus or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                else os.cpu_count() or 1)
            try:
                ray.init(**kw)
            except ConnectionError as exc:
                raise SambenchError(f"--address {address}: cannot connect to a Ray cluster ({exc})") from None
            self._started_ray = True
        self.n_workers = workers or self._default_workers(cpus_per_worker, gpus_per_worker)
        remote = ray.remote(_Worker).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                                             max_restarts=self.max_retries, max_task_retries=self.max_retries)
        self.actors = [remote.remote(init, config) for _ in range(self.n_workers)]

    def _default_workers(self, cpus: float, gpus: float) -> int:
        res = self.ray.cluster_resources()
        n = res.get("GPU", 0) / gpus if gpus > 0 else res.get("CPU", 1) / cpus
        return max(1, int(n))

    def actor_pids(self) -> list[int]:
        """The process id of every live actor (they change when Ray restarts one)."""
        return self.ray.get([a.pid.remote() for a in self.actors])

    def run(self, jobs: Iterable[tuple]) -> Iterator[tuple[tuple, Any]]:
        """Yield ``(job, result)`` as results arrive; ``result`` is an exception for an image whose
        actor died more than ``max_retries`` times."""
        ray = self.ray
        from ray.exceptions import RayActorError

        queue = deque(jobs)
        live = list(range(len(self.actors)))
        running: dict = {}  # ObjectRef -> (actor index, job)
        load = {i: 0 for i in live}

        def fill() -> None:
            while queue and live:
                i = min(live, key=lambda k: load[k])
                if load[i] >= self.inflight:
                    return
                job = queue.popleft()
                running[self.actors[i].work.remote(self.work, job)] = (i, job)
                load[i] += 1

        fill()
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            ref = done[0]
            i, job = running.pop(ref)
            load[i] -= 1
            try:
                result = ray.get(ref)
            except RayActorError as exc:  # restarts exhausted: this actor is gone for good
                if i in live:
                    live.remove(i)
                result = SambenchError(f"Ray worker died {self.max_retries + 1} times on this image "
                                       f"({type(exc).__name__})")
                if not live and (queue or running):
                    raise SambenchError("every Ray worker died; the rows written so far are kept — "
                                        "re-run the same command to resume") from None
            yield job, result
            fill()

    def close(self) -> None:
        """Kill the actors; shut Ray down if this engine started it."""
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already dead
                pass
        self.actors = []
        if self._started_ray:
            self.ray.shutdown()

    def __enter__(self) -> "RayEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["RayEngine"]
