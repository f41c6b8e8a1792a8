"""The run loop: dataset → protocol → adapter → metrics → store.

For every image: load it once; for every model, work out which (protocol, level, draw, object) rows
are still missing from the store (resume), encode the image once per preprocessing mode those rows
need, decode their prompts ``prompts_per_call`` at a time, score each mask against its GT, and write all
rows of that (model, image) in one transaction. Failures (unreadable image, empty mask, a prompt form
the model cannot take, any exception an adapter raises in ``encode`` or ``predict`` — out of memory
included) become ``failed`` rows with their reason: never dropped. Failed rows count as done on resume
(the same input fails the same way); ``--retry-failed`` deletes them first so they run again.

:func:`run` reads top-down as its stages: check the configuration, open the protocols and datasets,
claim their identities in the store, execute the images on an engine, record the manifest.

Engines (:data:`ENGINES`) decide where images are evaluated: ``serial`` in this process (a loader thread
reads the next images meanwhile; ``encode_batch`` images share one encoder pass), ``process`` on a pool of
processes where every worker builds its own adapters and results come back to the parent, which alone
writes to SQLite, and ``ray`` on Ray actors (sambench/ray_engine.py), whose results also come back to the
parent. Encoders go through the embedding cache (sambench/cache.py, sambench/encode.py) when
``cache_dir`` is set. One process writes a run directory at a time (sambench/runlock.py); pool workers
end with the parent however it ends (sambench/lifetime.py). Prompts are keyed and baselines reseed their
own RNG per prompt, so the rows do not depend on the engine, the number of workers or the order of
completion (on CPUs, at equal torch thread counts: float reductions depend on them; docs/scale.md).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Union

import numpy as np
import pandas as pd

from sambench.adapters import build_adapter, is_cpu_baseline
from sambench.adapters.base import Adapter
from sambench.execution.cache import DEFAULT_MAX_GB, STORAGES, EmbeddingCache, open_cache
from sambench.inputs import corruptions as corr
from sambench.config import ProtocolCard, load_model_card, load_protocol_card, with_overrides
from sambench.datasets import Dataset, DatasetSpec
from sambench.execution.encode import EncodeStage
from sambench.execution.sequences import evaluate_clicks
from sambench.execution.lifetime import die_with_parent
from sambench.execution.loader import prefetch
from sambench.metrics.fast import ImageScorer, ScoringPool, StageTimer, add_timings, default_threads, rounded_timings
from sambench.inputs.prompts import Protocol, PromptTask, prompt_set_hash
from sambench.execution.lock import RunLock
from sambench.store import (CORRUPTION_IDENTITY, IMAGE_ROW_COLUMNS, MODEL_IDENTITY, PROTOCOL_IDENTITY, Invocation,
                            Row, Store, read_manifest, updated_manifest, write_manifest)
from sambench.types import SambenchError, canonical_json, stable_hash

__all__ = ["DatasetSpec", "RunConfig", "RunResult", "run", "default_workers", "default_run_dir", "select_images",
           "ENGINES"]


@dataclass
class RunConfig:
    """Everything a run needs; ``checkpoints``/``plugins``/``model_options`` are keyed by model name.

    ``prompts_per_call``: prompts handed to ``adapter.predict`` at once (the adapter may batch its decoder
    in smaller chunks of its own, e.g. SAM's ``chunk_size`` option). ``workers``: None applies
    :func:`default_workers`. ``engine``: a name in :data:`ENGINES`; None is ``serial`` for one worker,
    else ``process``. ``protocols`` are card names or cards; ``datasets`` are specs or opened datasets
    (which the process engine pickles to its workers); ``models`` are names — of cards, or of the
    adapter objects given to :func:`run`.
    """

    models: list[str]
    protocols: list[Union[str, ProtocolCard]]
    datasets: list[Union[DatasetSpec, Dataset]]
    out: Path
    levels: Optional[list[str]] = None
    draws: Optional[int] = None
    seed: Optional[int] = None
    limit: Optional[int] = None
    shard: Optional[tuple[int, int]] = None
    prompts_per_call: int = 64
    workers: Optional[int] = None
    engine: Optional[str] = None
    device: str = "auto"
    checkpoints: dict = field(default_factory=dict)
    plugins: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    retry_failed: bool = False
    progress: bool = True
    #: Ray engine: cluster address (None: start a local instance) and GPUs per actor (docs/scale.md).
    ray_address: Optional[str] = None
    gpus_per_worker: float = 0.0
    #: Embedding cache directory (sambench/cache.py); None = no cache. Size limit and storage dtype.
    cache_dir: Optional[str] = None
    cache_max_gb: float = DEFAULT_MAX_GB
    cache_dtype: str = "fp32"
    #: Images per encoder forward pass (SAM family; other adapters loop).
    encode_batch: int = 1
    #: Images the serial engine's loader thread reads ahead (0 = inline).
    prefetch: int = 2
    #: Wait for another run holding the run directory instead of refusing.
    wait_lock: bool = False
    #: threads per process that score predictions while the adapter decodes the next ones; None applies
    #: :func:`sambench.metrics.fast.default_threads` (the usable CPUs shared by the workers, at most 4)
    scoring_threads: Optional[int] = None
    #: ``--corruption`` specs (``NAME[:SEVERITIES]`` or ``all``): every protocol also runs on these corrupted
    #: copies of each image, besides the clean one (sambench/corruptions.py).
    corruptions: list = field(default_factory=list)

    @property
    def corruption_seed(self) -> int:
        """The seed of every corruption key: the run's ``--seed``, else 0 (shared by all protocols, so
        that one corrupted image serves them all)."""
        return 0 if self.seed is None else int(self.seed)

    def public(self) -> dict:
        """The configuration as the manifest records it: JSON, cards by name, datasets by :func:`dataset_entry`."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "progress"}
        d["protocols"] = [p.name if isinstance(p, ProtocolCard) else p for p in self.protocols]
        d["datasets"] = [dataset_entry(s) for s in self.datasets]
        return json.loads(json.dumps(d, default=str))


@dataclass
class RunResult:
    run_dir: Path
    rows_added: int
    counts: dict
    counters: dict
    wall_time_s: float
    manifest: dict
    #: Every row of the run directory after the run (``Store.frame``): read once, before the store closes.
    rows: Optional[pd.DataFrame] = None


def dataset_entry(d: Union[DatasetSpec, Dataset]) -> dict:
    """How the manifest records a dataset: its spec, or for an object given in hand its type and name
    (its ``describe()`` and content hash are recorded under ``datasets`` as for any dataset)."""
    if isinstance(d, DatasetSpec):
        return d.to_dict()
    return {"object": f"{type(d).__module__}.{type(d).__qualname__}", "name": d.name}


def default_workers(models: list[str], adapters: Optional[dict[str, Adapter]] = None) -> int:
    """The worker-count policy: one process per usable CPU when every model is a CPU baseline (a pool
    over images pays off), else 1 (a torch model uses the cores itself, and loads once). An adapter
    object is a baseline when its signature names a registered CPU-baseline adapter."""
    adapters = adapters or {}
    if not all(is_cpu_baseline(adapters[m].signature().get("adapter", "") if m in adapters else m) for m in models):
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_run_dir(models: list[str], protocols: list[str], datasets: list[str], extra: dict) -> Path:
    """A deterministic directory under ./runs, so that re-running the same command resumes it."""
    slug = "_".join(["+".join(models), "+".join(protocols), "+".join(Path(d).name for d in datasets)])
    slug = "".join(c if c.isalnum() or c in "+-_." else "-" for c in slug)[:120]
    return Path("runs") / f"{slug}_{stable_hash(models, protocols, datasets, extra)[:8]}"


# ------------------------------------------------------------------------------------- per image work


def _describe(exc: Exception, context: str) -> str:
    """One line for a failed row: a SambenchError says it all; anything else gets its type and context."""
    if isinstance(exc, SambenchError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{context}: {type(exc).__name__}: {first}"


def _row(task: PromptTask, model: str, dataset: str, image_id: str, **kw: Any) -> Row:
    return Row(model=model, dataset=dataset, image_id=image_id, object_id=task.object_id,
               protocol=task.protocol, level=task.level, draw=task.draw, protocol_version=task.version,
               level_value=task.level_value,
               prompt=task.prompt.to_json() if task.prompt else None,
               prompt_hash=task.prompt.hash() if task.prompt else None, **kw)


def image_failure_rows(model: str, dataset: str, image_id: str, protocols: Iterable[ProtocolCard],
                       error: str) -> list[Row]:
    """One failed row per protocol for an image that could not be used at all."""
    return [Row(model=model, dataset=dataset, image_id=image_id, object_id="", protocol=p.name, level="", draw=-1,
                protocol_version=p.version, status="failed", error=error) for p in protocols]


def _done_key(task: PromptTask, corruption: tuple[str, int]) -> tuple:
    """The :data:`IMAGE_ROW_COLUMNS` of ``task``'s row on the image under ``corruption`` (name, severity)."""
    where = {"corruption": corruption[0], "severity": corruption[1]}
    return tuple(where[c] if c in where else getattr(task, c) for c in IMAGE_ROW_COLUMNS)


def object_failure_rows(model: str, sample, protocols: Iterable[ProtocolCard], done: set) -> list[Row]:
    """One failed row per protocol for each unusable object of ``sample`` (``Sample.failed_objects``):
    object id set, level ``""``, draw -1, so each lost object is counted while the others are scored."""
    rows = [Row(model=model, dataset=sample.dataset, image_id=sample.image_id, object_id=oid, protocol=p.name,
                level="", draw=-1, protocol_version=p.version, status="failed", error=reason)
            for oid, reason in sorted(sample.failed_objects.items()) for p in protocols]
    return [r for r in rows if tuple(getattr(r, c) for c in IMAGE_ROW_COLUMNS) not in done]


def _pending(adapter: Adapter, model: str, sample, protocols: list[Protocol], done: set,
             failed: list[Row], corruption: tuple[str, int] = (corr.CLEAN, 0)) -> dict[tuple[str, str], list[PromptTask]]:
    """The tasks still to run, grouped by (preprocessing, mask_selection); unusable ones go to ``failed``."""
    groups: dict[tuple[str, str], list[PromptTask]] = {}
    for proto in protocols:
        for task in proto.tasks(sample.dataset, sample.image_id, sample.objects):
            if _done_key(task, corruption) in done:
                continue
            if task.prompt is None:
                failed.append(_row(task, model, sample.dataset, sample.image_id, status="failed",
                                   error=f"{sample.dataset}/{sample.image_id}/{task.object_id}: {task.error}"))
            elif task.prompt.form not in adapter.capabilities:
                failed.append(_row(task, model, sample.dataset, sample.image_id, status="failed",
                                   error=f"model '{model}' cannot take a '{task.prompt.form}' prompt"))
            else:
                groups.setdefault((proto.card.preprocessing, proto.card.mask_selection), []).append(task)
    return groups


def _scored_rows(pred, tasks: list[PromptTask], model: str, sample, scorer: ImageScorer,
                 timer: StageTimer) -> list[Row]:
    """Rows of one predicted chunk: IoU, boundary IoU, areas, RLE (computed by sambench.metrics.fast: exactly the
    values of sambench.metrics' definitions); a mask of the wrong size fails. Masks that an adapter left on a
    CUDA device are scored there; numpy arrays and CPU tensors on the host."""
    masks, place = pred.masks, "host"
    if not isinstance(masks, np.ndarray):  # a torch tensor
        if masks.device.type == "cpu":
            masks = masks.numpy()
        else:
            place = str(masks.device)
    timer.count(place, len(tasks))
    rows = []
    for i, task in enumerate(tasks):
        mask, gt = masks[i], scorer.object(task.object_id)
        if tuple(mask.shape) != gt.shape:
            rows.append(_row(task, model, sample.dataset, sample.image_id, status="failed",
                             error=f"model '{model}' returned a {tuple(mask.shape)} mask for a {gt.shape} image"))
            continue
        s = gt.score(mask, timer)
        with timer.stage("rows"):
            score = float(pred.scores[i])
            extras = pred.extras[i] if pred.extras is not None and pred.extras[i] else None
            rows.append(_row(task, model, sample.dataset, sample.image_id, iou=s.iou, biou=s.biou,
                             score=None if np.isnan(score) else score, gt_area=gt.area, pred_area=s.pred_area,
                             mask_rle=canonical_json(s.rle), extras=canonical_json(extras) if extras else None,
                             status="ok"))
    return rows


def _decode_groups(adapter: Adapter, model: str, sample, groups: dict, states: dict, prompts_per_call: int,
                   pool: ScoringPool, scorer: ImageScorer, timer: StageTimer, where: str) -> list:
    """Row lists and futures of row lists, in row order, of the pending ``groups``: decode ``prompts_per_call``
    at a time against ``states`` (preprocessing → encoded state, or the exception its encoding raised); each
    call's masks are scored on ``pool``'s threads while the adapter decodes the next call's."""
    slots: list = []
    for (prep, selection), tasks in groups.items():
        state = states[prep]
        if isinstance(state, BaseException):  # recorded, never dropped: the run goes on with the next group
            err = _describe(state, f"model '{model}' failed to encode {where}")
            slots.append([_row(t, model, sample.dataset, sample.image_id, status="failed", error=err) for t in tasks])
            continue
        for start in range(0, len(tasks), prompts_per_call):
            chunk = tasks[start:start + prompts_per_call]
            try:
                with timer.stage("decode"):
                    pred = adapter.predict(state, [t.prompt for t in chunk], mask_selection=selection)
            except Exception as exc:
                err = _describe(exc, f"model '{model}' failed to decode on {where}")
                slots.append([_row(t, model, sample.dataset, sample.image_id, status="failed", error=err) for t in chunk])
                continue
            slots.append(pool.submit(_scored_rows, pred, chunk, model, sample, scorer, timer))
            del pred
    return slots


def _click_rows(adapter: Adapter, model: str, sample, protocols: list[Protocol], done: set, states: dict,
                stage: EncodeStage, corruption: tuple[str, int], where: str) -> list[Row]:
    """Rows of the interactive (click) protocols (:mod:`sambench.execution.sequences`) on the image's states under
    ``corruption`` (encoded through ``stage`` if a mode is still missing; an encode failure raises one
    SambenchError line)."""
    clicks = [p for p in protocols if p.card.clicks is not None]

    def get(prep: str) -> Any:
        if prep not in states:
            states[prep] = _encode(stage, [sample.image], prep)[0]
        if isinstance(states[prep], BaseException):
            raise SambenchError(_describe(states[prep], f"model '{model}' failed to encode {where}"))
        return states[prep]

    rows: list[Row] = []
    for proto in clicks:
        rows.extend(evaluate_clicks(adapter, model, sample, proto.card, done, get, _describe, corruption))
    return rows


def _encode(stage: EncodeStage, images: list, prep: str) -> list:
    """Per image, its state or the exception that prevented it (the stage isolates per-image failures)."""
    try:
        return stage.encode(images, prep)
    except Exception as exc:  # noqa: BLE001 - e.g. a cache problem: every image of the call fails alike
        return [exc] * len(images)


def _image_scorer(pool: ScoringPool, sample) -> ImageScorer:
    return pool.image_scorer({o.id: o.mask for o in sample.objects}, {o.id: o.ignore for o in sample.objects})


def _gather(slots: list, timer: StageTimer) -> list[Row]:
    """The rows of row lists and scoring futures, in order."""
    with timer.stage("wait for scoring"):
        return [r for slot in slots for r in (slot if isinstance(slot, list) else slot.result())]


def _model_rows(adapter: Adapter, model: str, sample, protocols: list[Protocol], done: set, failed: list[Row],
                groups: dict, states: dict, prompts_per_call: int, stage: EncodeStage, pool: ScoringPool,
                timer: StageTimer, corruption: tuple[str, int] = (corr.CLEAN, 0)) -> list[Row]:
    """One (model, image)'s rows under ``corruption`` once its states are encoded: failures, the decoded and
    scored batch protocols, then the click sequences on the same states."""
    where = f"{sample.dataset}/{sample.image_id}" + ("" if corruption[1] == 0 else f" under {corruption[0]}:{corruption[1]}")
    slots = [failed] + _decode_groups(adapter, model, sample, groups, states, prompts_per_call, pool,
                                      _image_scorer(pool, sample), timer, where)
    slots.append(_click_rows(adapter, model, sample, protocols, done, states, stage, corruption, where))
    rows = _gather(slots, timer)
    for r in rows:
        r.corruption, r.severity = corruption
    return rows


def evaluate_image(adapter: Adapter, model: str, sample, protocols: list[Protocol], done: set,
                   prompts_per_call: int, scoring: Optional[ScoringPool] = None,
                   timer: Optional[StageTimer] = None, stage: Optional[EncodeStage] = None,
                   corruption: tuple[str, int] = (corr.CLEAN, 0)) -> list[Row]:
    """All missing rows of one (model, image): encode once per preprocessing (through ``stage``, which may
    hold an embedding cache), decode in calls, score (on ``scoring``'s threads, in this thread when None);
    then the click sequences of interactive protocols (:mod:`sambench.execution.sequences`) on the same states.

    ``sample.image`` is the image as the model sees it (corrupted by ``corruption``, see
    :class:`CorruptedSample`); prompts and the scoring GT are always the clean sample's objects."""
    pool = scoring if scoring is not None else ScoringPool(threads=0)
    timer = timer if timer is not None else StageTimer()
    stage = stage or EncodeStage(adapter)
    # an unusable object is a fault of the clean GT: recorded once, on the clean level of the axis
    failed = object_failure_rows(model, sample, [p.card for p in protocols], done) if not corruption[1] else []
    groups = _pending(adapter, model, sample, [p for p in protocols if p.card.clicks is None], done, failed,
                      corruption)
    with timer.stage("encode"):
        states = {prep: _encode(stage, [sample.image], prep)[0] for prep in dict.fromkeys(p for p, _ in groups)}
    return _model_rows(adapter, model, sample, protocols, done, failed, groups, states, prompts_per_call, stage,
                       pool, timer, corruption)


class ImageJob(NamedTuple):
    """One image to evaluate: its dataset (index into the run's datasets), id, and per model the
    :data:`~sambench.store.IMAGE_ROW_COLUMNS` already stored."""

    dataset_index: int
    image_id: str
    done_by_model: dict


class ImageResult(NamedTuple):
    """Rows per model of one image, each adapter's counter increments, and per model the seconds of each
    stage and where its masks were scored (:class:`sambench.metrics.fast.StageTimer` ``.summary()``)."""

    image_id: str
    rows: dict
    counters: dict
    timings: dict = {}


class CorruptedSample:
    """A sample whose ``image`` is its clean image under one corruption, made on first access (so a resumed
    image whose rows are all stored is never corrupted) and then shared by every model; ``objects`` and
    everything else are the clean sample's."""

    def __init__(self, sample, corruption: tuple[str, int], seed: int) -> None:
        self._sample, self._corruption, self._seed, self._image = sample, corruption, seed, None

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            name, severity = self._corruption
            s = self._sample
            self._image = corr.corrupt_keyed(s.image, name, severity, self._seed, s.dataset, s.image_id)
        return self._image

    def __getattr__(self, name: str):
        return getattr(self._sample, name)


def corruption_axes(protocols: list[Protocol], specs: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
    """Per protocol: the (corruption, severity) levels it runs at — clean first, then its card's
    ``corruptions`` and the run's ``--corruption`` specs. Click protocols too: each corrupted copy gets
    its own click sequences (:func:`sambench.execution.sequences.evaluate_clicks`)."""
    return {p.name: corr.parse_specs(list(p.card.corruptions) + list(specs)) for p in protocols}


class ImageWork:
    """Evaluates images: holds the protocols, the opened datasets, the adapters (built on first use from
    their cards; ``given`` adapter objects are used as they are), their encode stages (embedding cache,
    ``encode_batch``) and this process's scoring threads."""

    def __init__(self, config: RunConfig, protocols: list[Protocol], given: Optional[dict[str, Adapter]] = None) -> None:
        self.config, self.protocols = config, protocols
        self.given: dict[str, Adapter] = dict(given or {})
        self.adapters: dict[str, Adapter] = dict(self.given)
        self.datasets: dict[int, Dataset] = {}
        self.cache: Optional[EmbeddingCache] = open_cache(config.cache_dir, config.cache_max_gb, config.cache_dtype)
        self.stages: dict[str, EncodeStage] = {}
        self._scoring: Optional[ScoringPool] = None
        self.axes = corruption_axes(protocols, config.corruptions)
        #: Every (corruption, severity) of the run, clean first, each once.
        self.axis = list(dict.fromkeys(lv for p in protocols for lv in self.axes[p.name]))

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
            return self.dataset(job.dataset_index).load(job.image_id)
        except SambenchError as exc:
            return exc

    def __call__(self, job: ImageJob) -> ImageResult:
        return self.batch([job])[0]

    def batch(self, jobs: list[ImageJob], samples: Optional[list] = None) -> list[ImageResult]:
        """Results of several images, in order: per model, the cache misses among them share encoder passes
        of ``encode_batch`` images; then each image is decoded and scored. A batch's counter increments are
        carried by its first result. ``samples``: preloaded (loader thread) samples or errors."""
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
        # corruption, severity) and model, and memory holds one corrupted copy besides the clean image.
        for level in self.axis:
            protocols = [p for p in self.protocols if level in self.axes[p.name]]
            variants = {k: s if level[1] == 0 else CorruptedSample(s, level, self.config.corruption_seed)
                        for k, s in loaded.items()}
            for model in self.config.models:
                todo = {k: variants[k] for k in variants if model in jobs[k].done_by_model}
                if not todo:
                    continue
                ad, stage = self.adapter(model), self.stage(model)
                timer = timers.setdefault(model, StageTimer())
                before = {**ad.counters(), **stage.counters()}
                done = {k: jobs[k].done_by_model[model] for k in todo}
                for k, level_rows in self._level_rows(model, todo, done, protocols, level, timer).items():
                    rows[k].setdefault(model, []).extend(level_rows)
                after = {**ad.counters(), **stage.counters()}
                acc = counters.setdefault(model, {})
                for key, v in after.items():
                    acc[key] = acc.get(key, 0) + v - before.get(key, 0)
        timings = {m: t.summary() for m, t in timers.items()}
        return [ImageResult(job.image_id, rows[k], counters if k == 0 else {}, timings if k == 0 else {})
                for k, job in enumerate(jobs)]

    def _level_rows(self, model: str, samples: dict, done: dict, protocols: list[Protocol],
                    level: tuple[str, int], timer: StageTimer) -> dict[int, list[Row]]:
        """Per image k, ``model``'s missing rows on ``samples[k]`` (the image under ``level``): the cache misses
        among the images share encoder passes of ``encode_batch`` images, then each is decoded and scored."""
        ad, stage = self.adapter(model), self.stage(model)
        cards = [p.card for p in protocols]
        failed = {k: object_failure_rows(model, s, cards, done[k]) if not level[1] else [] for k, s in samples.items()}
        batch_protocols = [p for p in protocols if p.card.clicks is None]  # clicks: _click_rows
        groups = {k: _pending(ad, model, s, batch_protocols, done[k], failed[k], level) for k, s in samples.items()}
        states: dict[int, dict] = {k: {} for k in samples}
        for prep in dict.fromkeys(p for g in groups.values() for p, _ in g):
            need = [k for k in samples if any(p == prep for p, _ in groups[k])]
            with timer.stage("encode"):
                encoded = _encode(stage, [samples[k].image for k in need], prep)
            for k, state in zip(need, encoded):
                states[k][prep] = state
        return {k: _model_rows(ad, model, s, protocols, done[k], failed[k], groups[k], states.pop(k),
                               self.config.prompts_per_call, stage, self.scoring, timer, level)
                for k, s in samples.items()}


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


# ------------------------------------------------------------------------------------------- engines


class SerialEngine:
    """Images in this process, with the parent's adapters, ``encode_batch`` at a time; a loader thread
    reads the next ``prefetch`` batches while the models work (sambench/loader.py)."""

    def __init__(self, work: ImageWork, workers: int = 1) -> None:
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


_WORKER: dict = {}


def _worker_init(config: RunConfig, given: Optional[dict] = None) -> None:
    """Pool worker / Ray actor start: end when the parent ends (even by SIGKILL); build models lazily."""
    import signal

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (exit 130), not each worker's
    _WORKER["work"] = ImageWork(config, protocols_of(config), given)


def _worker_job(job: ImageJob) -> ImageResult:
    return _WORKER["work"](job)


def _worker_batch(jobs: list[ImageJob]) -> list[ImageResult]:
    return _WORKER["work"].batch(jobs)


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
        self.pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init,
                                        initargs=(work.config, work.given), mp_context=pool_context())

    def map(self, jobs: Iterable[ImageJob]) -> Iterator[ImageResult]:
        futures = [self.pool.submit(_worker_job, job) for job in jobs]
        for fut in as_completed(futures):
            yield fut.result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def _ray_engine(work: ImageWork, workers: Optional[int]):
    """The Ray engine (imported only when asked for: Ray is an optional dependency)."""
    from sambench.execution.ray import RayEngine

    return RayEngine(work, workers)


#: Engine name → class (or factory) taking ``(work, workers)`` with ``map(jobs)`` and ``close()``.
ENGINES = {"serial": SerialEngine, "process": ProcessPoolEngine, "ray": _ray_engine}


def make_engine(work: ImageWork, workers: Optional[int], name: Optional[str] = None):
    name = name or ("serial" if (workers or 1) == 1 else "process")
    if name not in ENGINES:
        raise SambenchError(f"unknown engine '{name}' (known: {', '.join(ENGINES)})")
    return ENGINES[name](work, workers)


# ------------------------------------------------------------------------------------------- stages


def check_config(config: RunConfig, given: dict) -> None:
    """Refuse impossible numbers and unknown model names before any work."""
    if config.prompts_per_call < 1:
        raise SambenchError(f"--prompts-per-call must be >= 1, got {config.prompts_per_call}")
    if config.shard is not None and not (0 <= config.shard[0] < config.shard[1]):
        raise SambenchError(f"--shard must be I/N with 0 <= I < N, got {config.shard[0]}/{config.shard[1]}")
    if config.limit is not None and config.limit < 1:
        raise SambenchError(f"--limit must be >= 1, got {config.limit}")
    if config.workers is not None and config.workers < 1:
        raise SambenchError(f"--workers must be >= 1, got {config.workers}")
    if config.engine is not None and config.engine not in ENGINES:
        raise SambenchError(f"unknown engine '{config.engine}' (known: {', '.join(ENGINES)})")
    if config.encode_batch < 1:
        raise SambenchError(f"--encode-batch must be >= 1, got {config.encode_batch}")
    if config.cache_dtype not in STORAGES:
        raise SambenchError(f"--cache-dtype must be one of {', '.join(STORAGES)}, got {config.cache_dtype!r}")
    if not config.cache_max_gb > 0:
        raise SambenchError(f"--cache-max-gb must be > 0, got {config.cache_max_gb}")
    for m in config.models:
        if m not in given:
            load_model_card(m)
    for spec in config.corruptions:
        corr.parse_spec(spec)


def protocols_of(config: RunConfig) -> list[Protocol]:
    cards = [p if isinstance(p, ProtocolCard) else load_protocol_card(p) for p in config.protocols]
    return [Protocol(with_overrides(c, levels=config.levels, draws=config.draws, seed=config.seed)) for c in cards]


def open_datasets(work: ImageWork) -> list[Dataset]:
    datasets = [work.dataset(i) for i in range(len(work.config.datasets))]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise SambenchError(f"two datasets share the name '{[n for n in names if names.count(n) > 1][0]}': give "
                            f"--name NAME once per --dataset, in order")
    return datasets


def model_signatures(work: ImageWork) -> dict:
    """Every model's signature; builds the adapters (checkpoint checks, device), so a refused model stops the
    run before its directory exists."""
    return {m: work.adapter(m).signature() for m in work.config.models}


def claim_identities(store: Store, work: ImageWork, datasets: list[Dataset], signatures: dict) -> tuple[dict, dict]:
    """Record every model, protocol and dataset identity before the first row (or refuse a changed one).
    Returns (protocol identities as the store holds them, dataset manifest entries).

    * ``prompts_per_call`` is part of each model's identity: it changes how a model batches its decoder,
      hence masks by a pixel and scores by ~1e-7 (batched float arithmetic), so a resume must keep it.
    * So is ``embedding_storage`` (fp32, or fp16 with ``--cache-dtype fp16``) of a cached model: fp16
      storage rounds the embeddings (docs/scale.md).
    * ``draws`` and ``levels`` may grow, never shrink (:meth:`Store.claim_identity`).
    * A changed dataset names its changed files; ``--retry-failed`` re-runs exactly those images
      (:meth:`Store.claim_dataset`).
    """
    config = work.config
    for m, sig in signatures.items():
        ident, checked = {**sig, "prompts_per_call": config.prompts_per_call}, MODEL_IDENTITY + ("prompts_per_call",)
        if work.adapter(m).cache_signature() is not None:  # fp16 cache storage rounds the embeddings
            ident["embedding_storage"] = config.cache_dtype if config.cache_dir else "fp32"
            checked += ("embedding_storage",)
        store.claim_identity("model", m, ident, checked)
    stored = {}
    for p in work.protocols:
        ident = p.card.identity()
        ident["settings"] = {s.pop("level"): s for s in ident["settings"]}
        ident["levels"] = list(ident["settings"])
        stored[p.name] = store.claim_identity("protocol", p.name, ident, PROTOCOL_IDENTITY, grows=("draws", "levels"))
    ds_info = {}
    for spec, d in zip(config.datasets, datasets):
        ds_info[d.name] = _dataset_record(spec, d)
        for note in ds_info[d.name]["notices"]:  # once per run, here in the parent (workers open datasets too)
            print(f"warning: {note}", file=sys.stderr)
        rerun = store.claim_dataset(d.name, ds_info[d.name]["content_hash"], d.image_hashes(), d.image_files,
                                    retry=config.retry_failed)
        if rerun:
            print(f"dataset '{d.name}' changed: re-running {len(rerun)} changed image(s) "
                  f"({', '.join(rerun[:5])}{', ...' if len(rerun) > 5 else ''})", file=sys.stderr)
    for name in corrupted_names(work):
        store.claim_identity("corruption", name, {**corr.get(name).identity(), "seed": config.corruption_seed},
                             CORRUPTION_IDENTITY)
    return stored, ds_info


def _dataset_record(source: Union[DatasetSpec, Dataset], d: Dataset) -> dict:
    """The manifest's entry of a dataset: identity, size, description, notices, and how to reopen it (a spec)."""
    how = {"spec": source.to_dict()} if isinstance(source, DatasetSpec) else {"object": dataset_entry(source)["object"]}
    return {"content_hash": d.content_hash(), "n_images": len(d.ids()), "describe": d.describe(),
            "notices": d.notices(), **how}


def corrupted_names(work: ImageWork) -> list[str]:
    """The corruptions this run applies (clean excluded), in registry order."""
    return list(dict.fromkeys(name for name, severity in work.axis if severity))


def check_corruptions(work: ImageWork) -> None:
    """Refuse before any work what a corruption would fail on every image with (frost's missing textures)."""
    if "frost" in corrupted_names(work):
        corr.frost_textures()


def select_images(dataset: str, ids: list[str], limit: Optional[int], shard: Optional[tuple[int, int]]) -> list[str]:
    """The first ``limit`` ids, then those of shard ``I/N``: the image whose stable hash of
    (dataset, image id) is I modulo N. Shards are disjoint, cover the dataset, and do not depend on the
    machine; run each anywhere (``--out`` per shard) and merge them with ``sambench report A B ...``."""
    ids = ids[:limit] if limit else list(ids)
    if shard is None:
        return ids
    i, n = shard
    return [x for x in ids if int(stable_hash("shard", dataset, x), 16) % n == i]


def _jobs(store: Store, models: list[str], index: int, ds: Dataset, ids: list[str]) -> Iterator[ImageJob]:
    for image_id in ids:
        yield ImageJob(index, image_id, {m: store.done_keys(m, ds.name, image_id) for m in models})


def execute(store: Store, work: ImageWork, datasets: list[Dataset], invocation: dict) -> int:
    """Evaluate every selected image of every dataset on the engine; write each image's rows as they come,
    with ``invocation``'s counters (per model) and scoring timings in the same transaction. Returns rows added."""
    config = work.config
    workers = config.workers
    if workers is None and config.engine != "ray":  # ray: the engine sizes itself to the cluster
        workers = default_workers(config.models, work.given)
    timings: dict[str, dict] = {}
    invocation["scoring"] = {"threads": work.scoring_threads(), "models": {}, "store_write_s": 0.0}
    rows_added = 0
    engine = make_engine(work, workers, config.engine)
    try:
        for index, ds in enumerate(datasets):
            ids = select_images(ds.name, ds.ids(), config.limit, config.shard)
            bar = _progress(config, len(ids), ds.name)
            for result in engine.map(_jobs(store, config.models, index, ds, ids)):
                rows_added += _commit(store, result, invocation, timings, bar)
            bar.close()
    finally:
        engine.close()
    return rows_added


def _commit(store: Store, result: ImageResult, invocation: dict, timings: dict, bar) -> int:
    counters = invocation["counters"]
    add_timings(timings, result.timings)
    invocation["scoring"]["models"] = rounded_timings(timings)
    for model, c in result.counters.items():
        for k, v in c.items():
            counters[model][k] = counters[model].get(k, 0) + v
    # One transaction per image: its rows of every model, and this invocation's counters with them.
    t0 = time.perf_counter()
    added = store.write([r for model_rows in result.rows.values() for r in model_rows], invocation=invocation)
    invocation["scoring"]["store_write_s"] = round(invocation["scoring"]["store_write_s"] + time.perf_counter() - t0, 6)
    bar.rows = getattr(bar, "rows", 0) + added
    bar.set_postfix(rows=bar.rows, refresh=False)
    bar.update(1)
    return added


def _progress(config: RunConfig, total: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="img", disable=not config.progress, dynamic_ncols=True,
                file=sys.stderr, smoothing=0.1)


def prompt_hashes(store: Store) -> dict:
    """:func:`sambench.inputs.prompts.prompt_set_hash` of the stored prompts, per protocol and dataset."""
    out: dict = {}
    for (protocol, dataset), entries in store.prompt_entries().items():
        out.setdefault(protocol, {})[dataset] = prompt_set_hash(entries)
    return out


def record_manifest(store: Store, work: ImageWork, signatures: dict, ds_info: dict, stored: dict,
                    invocation: dict) -> dict:
    """Merge this run into ``manifest.json`` (sambench.store owns the format) and return it."""
    config = work.config
    protocols = {p.name: {"version": p.card.version, "identity": p.card.identity(), "seed": p.card.seed,
                          "card": str(p.card.path) if p.card.path else None,
                          # what the store holds (draws/levels only grow), not only what this run asked
                          "stored": {"draws": stored[p.name].get("draws"), "levels": stored[p.name].get("levels")}}
                 for p in work.protocols}
    new = Invocation(config=config.public(), seed=config.seed, protocols=protocols,
                     prompt_hashes=prompt_hashes(store), datasets=ds_info, models=signatures,
                     counters=invocation["counters"], rows=store.count(), wall_time_s=invocation["wall_time_s"],
                     invocation_id=invocation["id"], stored_invocations=store.invocations(),
                     corruptions=corr.identity(corrupted_names(work), config.corruption_seed))
    manifest = updated_manifest(read_manifest(store.run_dir), new)
    write_manifest(store.run_dir, manifest)
    return manifest


_INVOCATION_NUMBERS = itertools.count()


def start_invocation(store: Store, config: RunConfig) -> dict:
    """Record this ``run`` in the store (argv, config, status ``running``, zero counters) before any work."""
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    # started has 1 s resolution: two runs of one process (the Python API) in the same second need the counter
    invocation = {"id": f"{started}-{os.getpid()}-{next(_INVOCATION_NUMBERS):04d}", "started": started, "argv": list(sys.argv),
                  "config": config.public(), "status": "running", "wall_time_s": None,
                  "counters": {m: {"encoder_calls": 0, "decoded_prompts": 0} for m in config.models}}
    store.record_invocation(invocation)
    return invocation


def run(config: RunConfig, adapters: Optional[dict[str, Adapter]] = None) -> RunResult:
    """Run (or resume) the benchmark described by ``config`` into ``config.out``.

    ``adapters`` (model name → adapter object) are used instead of building those models from their
    cards, for callers that hold the objects (:mod:`sambench.api`). Models and datasets are built before
    the run directory is created: a refused run leaves nothing.
    """
    t0 = time.perf_counter()
    check_config(config, adapters or {})
    if config.workers is None and config.engine != "ray":  # recorded in the manifest as the count that ran
        config = replace(config, workers=default_workers(config.models, adapters))
    work = ImageWork(config, protocols_of(config), adapters)
    datasets = open_datasets(work)
    check_corruptions(work)
    signatures = model_signatures(work)
    with RunLock(config.out).acquire(wait=config.wait_lock), Store(config.out) as store:  # one writer per run dir
        stored, ds_info = claim_identities(store, work, datasets, signatures)
        if config.retry_failed:
            store.delete_failed(config.models)
        invocation = start_invocation(store, config)
        try:
            rows_added = execute(store, work, datasets, invocation)
        except BaseException as exc:  # Ctrl-C, a full disk, a bug: say so in the store, then let it propagate
            invocation["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            invocation["wall_time_s"] = round(time.perf_counter() - t0, 3)
            try:
                store.record_invocation(invocation)
            except SambenchError:
                pass
            raise
        finally:
            work.close()
        invocation["status"], invocation["wall_time_s"] = "finished", round(time.perf_counter() - t0, 3)
        store.record_invocation(invocation)
        manifest = record_manifest(store, work, signatures, ds_info, stored, invocation)
        counts, rows = manifest["rows"], store.frame()
    counters = invocation["counters"]
    return RunResult(Path(config.out), rows_added, counts, counters, time.perf_counter() - t0, manifest, rows)
