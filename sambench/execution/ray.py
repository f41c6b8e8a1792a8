"""The Ray engine: images (or videos) go to model replicas on Ray actors; rows come back to the driver.

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
  kills them. A local instance started by the driver (no ``--address``) ends with it too, its agents
  included (:func:`~sambench.execution.lifetime.reap_with_driver`).
* **Cache.** Actors use the run's embedding cache directory; on a cluster give a path every node sees
  (NFS): entries are written atomically and never need a lock to read.

The work itself is a pool worker's: :func:`~sambench.execution.work.worker_init` once per actor and
:func:`~sambench.execution.work.worker_batch` (:meth:`~sambench.execution.work.ImageWork.batch`) per batch of
``encode_batch`` images, so a Ray run gives the same rows as a local one. A video run passes its own
``init`` / ``fn`` (:func:`sambench.execution.video.video_worker_init`, ``video_worker_batch``: one video per
task) and keeps everything else here: connecting before the run directory exists, the capacity checks, the
reaper, streaming, restarts and the failed rows of a unit whose actor died too often (the work's ``lost``).
Ray itself is imported only when this engine starts (it is an optional dependency).
"""

from __future__ import annotations

import os
import socket
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Optional

from sambench.execution.lifetime import descendant_pids, reap_with_driver
from sambench.execution.work import batches, worker_batch, worker_init
from sambench.types import SambenchError, first_line

DEFAULT_MAX_RETRIES = 3
DEFAULT_INFLIGHT = 2
#: Seconds a ``--address`` gets to accept a TCP connection before the run is refused.
CONNECT_TIMEOUT_S = 5.0


def _import_ray():
    try:
        import ray  # lazy: Ray is optional (pip install 'sambench[ray]') and slow to import
    except ImportError:
        raise SambenchError("--engine ray needs Ray: pip install 'sambench[ray]'") from None
    return ray


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse within seconds a ``--address`` where nothing answers (``ray.init`` would wait for it for
    minutes). ``auto`` is checked when ``$RAY_ADDRESS`` names the cluster; otherwise Ray itself says at once
    that it finds none. ``ray://HOST:PORT`` (Ray Client) is checked at its HOST:PORT."""
    target = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
    if not target or target == "auto":
        return
    host, _, port = target.split("://", 1)[-1].rpartition(":")
    try:
        port_no = int(port)
    except ValueError:
        raise SambenchError(f"--address {address}: expected auto or HOST:PORT, e.g. 10.0.0.1:6379") from None
    try:
        with socket.create_connection((host or "127.0.0.1", port_no), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__)
        raise SambenchError(f"--address {address}: no Ray cluster answers at {host or '127.0.0.1'}:{port_no} ({why}): "
                            f"start one (ray start --head) or fix the address") from None


class _Worker:
    """The actor: one replica of the run's models (built by ``init(*args)``), one unit of work at a time."""

    def __init__(self, init: Callable, *args: Any) -> None:
        init(*args)

    def work(self, fn: Callable, jobs: list) -> Any:
        return fn(jobs)


class RayEngine:
    """The ``ray`` engine of :data:`sambench.execution.engines.ENGINES`: ``map(jobs)`` yields one result per
    job, computed on actors (see the module docstring).

    ``work``: the driver's work object: its ``config``, ``unit`` (what a job is: "image", "video"),
    ``release_models()`` and ``lost(jobs, why)`` (the failed-row results of jobs whose actor died too often).
    Each actor runs ``init(*init_args)`` once (default: :func:`~sambench.execution.work.worker_init` with the
    config) and ``fn(jobs)`` per batch of ``batch`` jobs (default: ``worker_batch``, ``encode_batch`` images)."""

    def __init__(self, work: Any, workers: Optional[int] = None, *, init: Callable = worker_init,
                 init_args: Optional[tuple] = None, fn: Callable = worker_batch, batch: Optional[int] = None,
                 cpus_per_worker: float = 1.0, max_retries: int = DEFAULT_MAX_RETRIES,
                 inflight: int = DEFAULT_INFLIGHT, local_cpus: Optional[int] = None) -> None:
        ray = _import_ray()
        config = work.config
        address, gpus = config.ray_address, float(config.gpus_per_worker or 0.0)
        if gpus < 0 or cpus_per_worker <= 0:
            raise SambenchError(f"--gpus-per-worker must be >= 0, got {gpus}")
        self.ray, self.work, self.fn = ray, work, fn
        self.batch = max(1, int(batch if batch is not None else config.encode_batch))
        self.max_retries = int(max_retries)
        self.inflight = max(1, int(inflight))
        self._started_ray = False
        self.actors: list = []
        if not ray.is_initialized():
            kw: dict = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
            if address:
                check_address(address)
                kw["address"] = address
            else:  # a local instance: the CPUs this process may use (not the host's count)
                kw["num_cpus"] = local_cpus or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                else os.cpu_count() or 1)
            try:
                ray.init(**kw)
            except ConnectionError as exc:
                raise SambenchError(f"--address {address}: cannot connect to a Ray cluster "
                                    f"({first_line(str(exc))})") from None
            self._started_ray = True
        self._reaper = None
        if self._started_ray and not address:  # our local instance: its agents must end with this process
            self._reaper = next((reap_with_driver(p) for p in descendant_pids(os.getpid(), "raylet/raylet")), None)
        try:
            self.n_workers = workers or self._default_workers(cpus_per_worker, gpus)
            self._check_room(self.n_workers, cpus_per_worker, gpus)
        except SambenchError:
            self.close()
            raise
        remote = ray.remote(_Worker).options(num_cpus=cpus_per_worker, num_gpus=gpus,
                                             max_restarts=self.max_retries, max_task_retries=self.max_retries)
        args = (config,) if init_args is None else tuple(init_args)
        self.actors = [remote.remote(init, *args) for _ in range(self.n_workers)]

    def _check_room(self, n: int, cpus: float, gpus: float) -> None:
        """Refuse actors the cluster can never place (they would wait forever, and with them their images)."""
        res = self.ray.cluster_resources()
        address = self.work.config.ray_address
        where = (f"the Ray cluster at {address}" if address else "the local Ray instance" if self._started_ray
                 else "the Ray instance this process had joined")
        have_gpu, have_cpu = res.get("GPU", 0.0), res.get("CPU", 0.0)
        if gpus > 0 and have_gpu < n * gpus:
            room = int(have_gpu // gpus)
            raise SambenchError(f"--gpus-per-worker {gpus:g}: {where} has {have_gpu:g} GPUs, room for {room} "
                                f"worker(s), not {n}" + ("" if room else ": use --gpus-per-worker 0 (CPU actors)"))
        if have_cpu < n * cpus:
            raise SambenchError(f"--workers {n}: {where} has {have_cpu:g} CPUs, room for {int(have_cpu // cpus)} "
                                f"worker(s) of {cpus:g} CPU: ask for fewer --workers")

    def _default_workers(self, cpus: float, gpus: float) -> int:
        res = self.ray.cluster_resources()
        n = res.get("GPU", 0) / gpus if gpus > 0 else res.get("CPU", 1) / cpus
        return max(1, int(n))

    def _lost(self, jobs: list, exc: Exception) -> list:
        """Failed-row results (the work's ``lost``) for the jobs of a batch whose actor died more than
        ``max_retries`` times."""
        unit = getattr(self.work, "unit", "image")
        return self.work.lost(jobs, f"Ray worker died {self.max_retries + 1} times on this {unit} "
                                    f"({type(exc).__name__})")

    def map(self, jobs: Iterable) -> Iterator:
        """Yield results as they arrive; batches of ``batch`` jobs travel together."""
        ray = self.ray
        self.work.release_models()  # the driver only needed them for their identities: the actors hold replicas
        from ray.exceptions import RayActorError  # lazy: Ray is optional (see _import_ray)

        queue = deque(batches(jobs, self.batch))
        live = list(range(len(self.actors)))
        running: dict = {}  # ObjectRef -> (actor index, batch of jobs)
        load = {i: 0 for i in live}

        def fill() -> None:
            while queue and live:
                i = min(live, key=lambda k: load[k])
                if load[i] >= self.inflight:
                    return
                batch = queue.popleft()
                running[self.actors[i].work.remote(self.fn, batch)] = (i, batch)
                load[i] += 1

        fill()
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            i, batch = running.pop(done[0])
            load[i] -= 1
            try:
                results = ray.get(done[0])
            except RayActorError as exc:  # restarts exhausted: this actor is gone for good
                if i in live:
                    live.remove(i)
                results = self._lost(batch, exc)
                if not live and (queue or running):
                    raise SambenchError("every Ray worker died; the rows written so far are kept: "
                                        "re-run the same command to resume") from None
            yield from results
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
            self._started_ray = False
        if getattr(self, "_reaper", None) is not None:  # (also when Ray refused to start)
            self._reaper.stdin.close()  # the reaper ends what shutdown left behind
            self._reaper.wait()
            self._reaper = None


__all__ = ["CONNECT_TIMEOUT_S", "RayEngine", "check_address"]
