"""The unit of work every engine runs: images in (:class:`ImageJob`), rows out (:class:`ImageResult`).

:class:`ImageWork` holds what evaluating images needs in one process — the protocols, the opened datasets,
the adapters (built on first use from their cards; adapter objects given in hand are used as they are),
their encode stages (embedding cache, ``encode_batch``) and the scoring threads — and evaluates a batch of
images: for each condition (clean, then each corruption and severity), for each model, the batch path
(:func:`sambench.execution.image.evaluate_images`); then each image's per-object stability
(:mod:`sambench.execution.stability`), here in the process that made the rows.

The serial engine calls it in the parent; a pool worker or a Ray actor builds its own with
:func:`worker_init` and runs :func:`worker_job` / :func:`worker_batch` (sambench/execution/engines.py,
sambench/execution/ray.py).
"""

from __future__ import annotations

import signal
import sys
from typing import Any, Iterable, Iterator, NamedTuple, Optional

from sambench.adapters import build_adapter
from sambench.adapters.base import Adapter
from sambench.datasets import Dataset, DatasetSpec
from sambench.datasets.base import without_misfit_objects
from sambench.execution.cache import EmbeddingCache, open_cache
from sambench.execution.config import RunConfig, default_workers, protocols_of
from sambench.execution.encode import EncodeStage
from sambench.execution.image import CorruptedSample, condition_axes, evaluate_images
from sambench.execution.lifetime import die_with_parent
from sambench.execution.rows import image_failure_rows
from sambench.execution.timing import StageTimer
from sambench.inputs.prompts import Protocol
from sambench.execution.scoring import ScoringPool, default_threads
from sambench.execution.stability import object_stability
from sambench.types import SambenchError


class ImageJob(NamedTuple):
    """One image to evaluate: its dataset (index into the run's datasets), id, and per model the
    :data:`~sambench.store.IMAGE_ROW_COLUMNS` already stored."""

    dataset_index: int
    image_id: str
    done_by_model: dict


class ImageResult(NamedTuple):
    """Rows per model of one image, each adapter's counter increments, per model the seconds of each
    stage and where its masks were scored (:meth:`sambench.execution.timing.StageTimer.summary`), and the
    per-object stability of its rows (:func:`sambench.execution.stability.object_stability`), stored with them."""

    image_id: str
    rows: dict
    counters: dict
    timings: dict = {}
    objects: tuple = ()


def batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter), consumed lazily."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class ImageWork:
    """Evaluates images in this process (see the module docstring)."""

    #: What one job is (the Ray engine's messages say it).
    unit = "image"

    def __init__(self, config: RunConfig, protocols: list[Protocol],
                 given: Optional[dict[str, Adapter]] = None) -> None:
        self.config, self.protocols = config, protocols
        self.given: dict[str, Adapter] = dict(given or {})
        self.adapters: dict[str, Adapter] = dict(self.given)
        self.datasets: dict[int, Dataset] = {}
        self.cache: Optional[EmbeddingCache] = open_cache(config.cache_dir, config.cache_max_gb, config.cache_dtype)
        self.stages: dict[str, EncodeStage] = {}
        self._scoring: Optional[ScoringPool] = None
        self.axes = condition_axes(protocols, config.corruptions)
        #: Every condition (corruption, severity) of the run, clean first, each once.
        self.axis = list(dict.fromkeys(c for p in protocols for c in self.axes[p.name]))

    def stage(self, model: str) -> EncodeStage:
        if model not in self.stages:
            self.stages[model] = EncodeStage(self.adapter(model), self.cache, self.config.encode_batch)
        return self.stages[model]

    def release_models(self) -> None:
        """Drop this process's adapters (the Ray driver: actors hold the replicas)."""
        for ad in self.adapters.values():
            ad.close()
        self.adapters.clear()
        self.stages.clear()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def scoring_threads(self) -> int:
        """Scoring threads per process: as configured, else the CPUs shared by the workers, at most 4."""
        c = self.config
        if c.scoring_threads is not None:
            return max(0, c.scoring_threads)
        return default_threads(c.workers if c.workers is not None else default_workers(c.models, self.given))

    @property
    def scoring(self) -> ScoringPool:
        """This process's scoring threads (started on first use)."""
        if self._scoring is None:
            self._scoring = ScoringPool(self.scoring_threads())
        return self._scoring

    def close(self) -> None:
        if self._scoring is not None:
            self._scoring.close()
            self._scoring = None

    def adapter(self, model: str) -> Adapter:
        if model not in self.adapters:
            c = self.config
            self.adapters[model] = build_adapter(model, device=c.device, checkpoint=c.checkpoints.get(model),
                                                 plugin=c.plugins.get(model), options=c.model_options.get(model))
        self.adapters[model].masks_on_device = True  # the runner scores masks where the adapter leaves them
        return self.adapters[model]

    def dataset(self, index: int) -> Dataset:
        if index not in self.datasets:
            d = self.config.datasets[index]
            self.datasets[index] = d.open() if isinstance(d, DatasetSpec) else d
        return self.datasets[index]

    def load(self, job: ImageJob):
        """The job's sample, or the SambenchError saying why it cannot be used (recorded as failed rows)."""
        try:
            return without_misfit_objects(self.dataset(job.dataset_index).load(job.image_id))
        except SambenchError as exc:
            return exc

    def lost(self, jobs: list[ImageJob], why: str) -> list[ImageResult]:
        """Failed-row results of images that could not be evaluated at all (a Ray actor that died too often)."""
        cards = [p.card for p in self.protocols]
        return [ImageResult(job.image_id, {m: image_failure_rows(m, self.dataset(job.dataset_index).name, job.image_id,
                                                                 cards, why) for m in job.done_by_model}, {})
                for job in jobs]

    def __call__(self, job: ImageJob) -> ImageResult:
        return self.batch([job])[0]

    def batch(self, jobs: list[ImageJob], samples: Optional[list] = None) -> list[ImageResult]:
        """Results of several images, in order: per condition and model, the batch path on the images that
        model still needs. A batch's counter increments and timings are carried by its first result.
        ``samples``: preloaded (loader thread) samples or errors."""
        samples = samples if samples is not None else [self.load(j) for j in jobs]
        rows: list[dict] = [{} for _ in jobs]
        loaded: dict[int, Any] = {}
        for k, (job, sample) in enumerate(zip(jobs, samples)):
            if isinstance(sample, SambenchError):
                name = self.dataset(job.dataset_index).name
                for model in job.done_by_model:
                    rows[k][model] = image_failure_rows(model, name, job.image_id, [p.card for p in self.protocols],
                                                        str(sample))
            elif isinstance(sample, BaseException):
                raise sample
            else:
                loaded[k] = sample
        counters: dict[str, dict] = {}
        timers: dict[str, StageTimer] = {}
        # One corrupted copy of each image at a time, shared by every model: the encoder runs once per (image,
        # condition) and model, and memory holds one corrupted copy besides the clean image.
        for condition in self.axis:
            protocols = [p for p in self.protocols if condition in self.axes[p.name]]
            variants = {k: s if condition[1] == 0 else CorruptedSample(s, condition, self.config.corruption_seed)
                        for k, s in loaded.items()}
            for model in self.config.models:
                todo = [k for k in variants if model in jobs[k].done_by_model]
                if todo:
                    found = self._model_rows(model, [variants[k] for k in todo],
                                             [jobs[k].done_by_model[model] for k in todo], protocols, condition,
                                             timers.setdefault(model, StageTimer()), counters.setdefault(model, {}))
                    for k, model_rows in zip(todo, found):
                        rows[k].setdefault(model, []).extend(model_rows)
        timings = {m: t.summary() for m, t in timers.items()}
        return [ImageResult(job.image_id, rows[k], counters if k == 0 else {}, timings if k == 0 else {},
                            tuple(object_stability(r for model_rows in rows[k].values() for r in model_rows)))
                for k, job in enumerate(jobs)]

    def _model_rows(self, model: str, samples: list, dones: list[set], protocols: list[Protocol],
                    condition: tuple[str, int], timer: StageTimer, counters: dict) -> list[list]:
        """:func:`evaluate_images` for one model, adding its adapter's and stage's counter increments."""
        ad, stage = self.adapter(model), self.stage(model)
        before = {**ad.counters(), **stage.counters()}
        found = evaluate_images(ad, model, samples, dones, protocols, self.config.prompts_per_call, stage,
                                self.scoring, timer, condition)
        for key, v in {**ad.counters(), **stage.counters()}.items():
            counters[key] = counters.get(key, 0) + v - before.get(key, 0)
        return found


# ------------------------------------------------------------------------ pool workers and Ray actors

_WORKER: dict = {}


def worker_init(config: RunConfig, given: Optional[dict] = None) -> None:
    """Pool worker / Ray actor start: end when the parent ends (even by SIGKILL); build models lazily."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (exit 130), not each worker's
    _WORKER["work"] = ImageWork(config, protocols_of(config), given)


def worker_job(job: ImageJob) -> ImageResult:
    """One image on this worker's :class:`ImageWork` (the process pool's task)."""
    return _WORKER["work"](job)


def worker_batch(jobs: list[ImageJob]) -> list[ImageResult]:
    """A batch of images on this worker's :class:`ImageWork` (a Ray actor's task)."""
    return _WORKER["work"].batch(jobs)


__all__ = ["ImageJob", "ImageResult", "ImageWork", "batches", "worker_batch", "worker_init", "worker_job"]
