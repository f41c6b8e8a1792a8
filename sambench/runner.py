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

Engines (:data:`ENGINES`) decide where images are evaluated: ``serial`` in this process, ``process`` on a
pool of processes where every worker builds its own adapters and results come back to the parent, which
alone writes to SQLite. Prompts are keyed and baselines reseed their own RNG per prompt, so the rows do not
depend on the engine, the number of workers or the order of completion.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional

import numpy as np
import pandas as pd

from sambench.adapters import build_adapter, is_cpu_baseline
from sambench.adapters.base import Adapter
from sambench import corruptions as corr
from sambench.cards import ProtocolCard, load_model_card, load_protocol_card, with_overrides
from sambench.datasets import Dataset, DatasetSpec
from sambench.interactive import evaluate_clicks
from sambench.metrics import boundary_iou, encode_rle, iou
from sambench.prompts import Protocol, PromptTask, prompt_set_hash
from sambench.store import (CORRUPTION_IDENTITY, IMAGE_ROW_COLUMNS, MODEL_IDENTITY, PROTOCOL_IDENTITY, Invocation,
                            Row, Store, read_manifest, updated_manifest, write_manifest)
from sambench.types import SambenchError, canonical_json, stable_hash

__all__ = ["DatasetSpec", "RunConfig", "RunResult", "run", "default_workers", "select_images", "ENGINES"]


@dataclass
class RunConfig:
    """Everything a run needs; ``checkpoints``/``plugins``/``model_options`` are keyed by model name.

    ``prompts_per_call``: prompts handed to ``adapter.predict`` at once (the adapter may batch its decoder
    in smaller chunks of its own, e.g. SAM's ``chunk_size`` option). ``workers``: None applies
    :func:`default_workers`. ``engine``: a name in :data:`ENGINES`; None is ``serial`` for one worker,
    else ``process``.
    """

    models: list[str]
    protocols: list[str]
    datasets: list[DatasetSpec]
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
    #: ``--corruption`` specs (``NAME[:SEVERITIES]`` or ``all``): every protocol also runs on these corrupted
    #: copies of each image, besides the clean one (sambench/corruptions.py).
    corruptions: list = field(default_factory=list)

    @property
    def corruption_seed(self) -> int:
        """The seed of every corruption key: the run's ``--seed``, else 0 (shared by all protocols, so
        that one corrupted image serves them all)."""
        return 0 if self.seed is None else int(self.seed)

    def public(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        d["datasets"] = [s.to_dict() for s in self.datasets]
        d.pop("progress")
        return d


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


def default_workers(models: list[str]) -> int:
    """The worker-count policy: one process per usable CPU when every model is a CPU baseline (a pool
    over images pays off), else 1 (a torch model uses the cores itself, and loads once)."""
    if not all(is_cpu_baseline(m) for m in models):
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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


def _scored_rows(pred, tasks: list[PromptTask], model: str, sample, gt_areas: dict) -> list[Row]:
    """Rows of one predicted chunk: IoU, boundary IoU (an object's ignore band left out), areas, RLE; a
    mask of the wrong size fails."""
    objects = {o.id: o for o in sample.objects}
    rows = []
    for i, task in enumerate(tasks):
        mask, gt, ignore = pred.masks[i], objects[task.object_id].mask, objects[task.object_id].ignore
        if mask.shape != gt.shape:
            rows.append(_row(task, model, sample.dataset, sample.image_id, status="failed",
                             error=f"model '{model}' returned a {mask.shape} mask for a {gt.shape} image"))
            continue
        score = float(pred.scores[i])
        extras = pred.extras[i] if pred.extras is not None and pred.extras[i] else None
        rows.append(_row(task, model, sample.dataset, sample.image_id,
                         iou=iou(mask, gt, ignore), biou=boundary_iou(mask, gt, ignore=ignore),
                         score=None if np.isnan(score) else score,
                         gt_area=gt_areas[task.object_id], pred_area=int(np.count_nonzero(mask)),
                         mask_rle=canonical_json(encode_rle(mask)),
                         extras=canonical_json(extras) if extras else None, status="ok"))
    return rows


class ImageStates:
    """One image's encoded state per preprocessing mode, for one model: encoded on first use and at most
    once, shared by the batch protocols and the click sequences. An encode failure is kept (one line) and
    raised again as SambenchError for every later use, so it is recorded once per row, never retried."""

    def __init__(self, adapter: Adapter, model: str, sample) -> None:
        self.adapter, self.model, self.sample = adapter, model, sample
        self.states: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def get(self, preprocessing: str) -> Any:
        if preprocessing not in self.states and preprocessing not in self.errors:
            try:
                self.states[preprocessing] = self.adapter.encode(self.sample.image, preprocessing)
            except Exception as exc:  # recorded, never dropped: the run goes on with the next group
                where = f"{self.sample.dataset}/{self.sample.image_id}"
                self.errors[preprocessing] = _describe(exc, f"model '{self.model}' failed to encode {where}")
        if preprocessing in self.errors:
            raise SambenchError(self.errors[preprocessing])
        return self.states[preprocessing]


def evaluate_image(adapter: Adapter, model: str, sample, protocols: list[Protocol], done: set,
                   prompts_per_call: int, corruption: tuple[str, int] = (corr.CLEAN, 0)) -> list[Row]:
    """All missing rows of one (model, image): encode once per preprocessing, decode in calls, score;
    then the click sequences of interactive protocols (:mod:`sambench.interactive`) on the same states.

    ``sample.image`` is the image as the model sees it (corrupted by ``corruption``, see
    :class:`CorruptedSample`); prompts and the scoring GT are always the clean sample's objects."""
    rows = _evaluate(adapter, model, sample, protocols, done, prompts_per_call, corruption)
    for r in rows:
        r.corruption, r.severity = corruption
    return rows


def _evaluate(adapter: Adapter, model: str, sample, protocols: list[Protocol], done: set,
              prompts_per_call: int, corruption: tuple[str, int]) -> list[Row]:
    # an unusable object is a fault of the clean GT: recorded once, on the clean level of the axis
    rows: list[Row] = object_failure_rows(model, sample, [p.card for p in protocols], done) if not corruption[1] else []
    batch = [p for p in protocols if p.card.clicks is None]
    groups = _pending(adapter, model, sample, batch, done, rows, corruption)
    states = ImageStates(adapter, model, sample)
    gt_areas = {o.id: int(np.count_nonzero(o.mask)) for o in sample.objects}
    where = f"{sample.dataset}/{sample.image_id}" + ("" if corruption[1] == 0 else f" under {corruption[0]}:{corruption[1]}")
    for (prep, selection), tasks in groups.items():
        try:
            state = states.get(prep)
        except SambenchError as exc:
            rows.extend(_row(t, model, sample.dataset, sample.image_id, status="failed", error=str(exc))
                        for t in tasks)
            continue
        for start in range(0, len(tasks), prompts_per_call):
            chunk = tasks[start:start + prompts_per_call]
            try:
                pred = adapter.predict(state, [t.prompt for t in chunk], mask_selection=selection)
            except Exception as exc:
                err = _describe(exc, f"model '{model}' failed to decode on {where}")
                rows.extend(_row(t, model, sample.dataset, sample.image_id, status="failed", error=err) for t in chunk)
                continue
            rows.extend(_scored_rows(pred, chunk, model, sample, gt_areas))
            del pred
    for proto in protocols:
        if proto.card.clicks is not None and not corruption[1]:  # interactive protocols: clean images only
            rows.extend(evaluate_clicks(adapter, model, sample, proto.card, done, states.get, _describe))
    return rows


class ImageJob(NamedTuple):
    """One image to evaluate: its dataset (index into the run's datasets), id, and per model the
    :data:`~sambench.store.IMAGE_ROW_COLUMNS` already stored."""

    dataset_index: int
    image_id: str
    done_by_model: dict


class ImageResult(NamedTuple):
    """Rows per model of one image, and each adapter's counter increments."""

    image_id: str
    rows: dict
    counters: dict


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
    ``corruptions`` and the run's ``--corruption`` specs. Interactive (click) protocols run on clean
    images only: their click sequences are not keyed by corruption yet."""
    return {p.name: [(corr.CLEAN, 0)] if p.card.clicks is not None else
            corr.parse_specs(list(p.card.corruptions) + list(specs)) for p in protocols}


class ImageWork:
    """Evaluates images: holds the protocols, the opened datasets and the adapters (built on first use)."""

    def __init__(self, config: RunConfig, protocols: list[Protocol], datasets: Optional[list[Dataset]] = None,
                 adapters: Optional[dict[str, Adapter]] = None) -> None:
        self.config, self.protocols = config, protocols
        self.datasets: dict[int, Dataset] = dict(enumerate(datasets or []))
        self.adapters: dict[str, Adapter] = dict(adapters or {})
        self.axes = corruption_axes(protocols, config.corruptions)
        #: Every (corruption, severity) of the run, clean first, each once.
        self.axis = list(dict.fromkeys(lv for p in protocols for lv in self.axes[p.name]))

    def adapter(self, model: str) -> Adapter:
        if model not in self.adapters:
            c = self.config
            self.adapters[model] = build_adapter(model, device=c.device, checkpoint=c.checkpoints.get(model),
                                                 plugin=c.plugins.get(model), options=c.model_options.get(model))
        return self.adapters[model]

    def dataset(self, index: int) -> Dataset:
        if index not in self.datasets:
            self.datasets[index] = self.config.datasets[index].open()
        return self.datasets[index]

    def __call__(self, job: ImageJob) -> ImageResult:
        ds = self.dataset(job.dataset_index)
        rows: dict[str, list[Row]] = {}
        counters: dict[str, dict] = {}
        try:
            sample = ds.load(job.image_id)
        except SambenchError as exc:
            for model in job.done_by_model:
                rows[model] = image_failure_rows(model, ds.name, job.image_id, [p.card for p in self.protocols],
                                                 str(exc))
            return ImageResult(job.image_id, rows, counters)
        for model in job.done_by_model:
            rows[model], counters[model] = [], {}
        # One corrupted copy at a time, shared by every model: the encoder runs once per (image, corruption,
        # severity) and model, and memory holds one copy of the image besides the clean one.
        for level in self.axis:
            protocols = [p for p in self.protocols if level in self.axes[p.name]]
            variant = sample if level[1] == 0 else CorruptedSample(sample, level, self.config.corruption_seed)
            for model, done in job.done_by_model.items():
                ad = self.adapter(model)
                before = ad.counters()
                rows[model] += evaluate_image(ad, model, variant, protocols, done, self.config.prompts_per_call, level)
                after = ad.counters()
                for k in after:
                    counters[model][k] = counters[model].get(k, 0) + after[k] - before[k]
        return ImageResult(job.image_id, rows, counters)


# ------------------------------------------------------------------------------------------- engines


class SerialEngine:
    """Images one after another in this process, with the parent's adapters."""

    def __init__(self, work: ImageWork, workers: int = 1) -> None:
        self.work = work

    def map(self, jobs: Iterable[ImageJob]) -> Iterator[ImageResult]:
        for job in jobs:  # lazily: each job's done keys are read just before it runs
            yield self.work(job)

    def close(self) -> None:
        pass


_WORKER: dict = {}


def _worker_init(config: RunConfig) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (exit 130), not each worker's
    _WORKER["work"] = ImageWork(config, protocols_of(config))


def _worker_job(job: ImageJob) -> ImageResult:
    return _WORKER["work"](job)


class ProcessPoolEngine:
    """Images spread over ``workers`` processes; each builds its own adapters and datasets from the
    config (so the config must pickle); results arrive in completion order."""

    def __init__(self, work: ImageWork, workers: int) -> None:
        self.pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(work.config,))

    def map(self, jobs: Iterable[ImageJob]) -> Iterator[ImageResult]:
        futures = [self.pool.submit(_worker_job, job) for job in jobs]
        for fut in as_completed(futures):
            yield fut.result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


#: Engine name → class taking ``(work, workers)`` with ``map(jobs)`` and ``close()``.
ENGINES = {"serial": SerialEngine, "process": ProcessPoolEngine}


def make_engine(work: ImageWork, workers: int, name: Optional[str] = None):
    name = name or ("serial" if workers == 1 else "process")
    if name not in ENGINES:
        raise SambenchError(f"unknown engine '{name}' (known: {', '.join(ENGINES)})")
    return ENGINES[name](work, workers)


# ------------------------------------------------------------------------------------------- stages


def check_config(config: RunConfig) -> None:
    """Refuse impossible numbers and unknown model names before any work."""
    if config.prompts_per_call < 1:
        raise SambenchError(f"--prompts-per-call must be >= 1, got {config.prompts_per_call}")
    if config.shard is not None and not (0 <= config.shard[0] < config.shard[1]):
        raise SambenchError(f"--shard must be I/N with 0 <= I < N, got {config.shard[0]}/{config.shard[1]}")
    if config.limit is not None and config.limit < 1:
        raise SambenchError(f"--limit must be >= 1, got {config.limit}")
    if config.workers is not None and config.workers < 1:
        raise SambenchError(f"--workers must be >= 1, got {config.workers}")
    for m in config.models:
        load_model_card(m)
    for spec in config.corruptions:
        corr.parse_spec(spec)


def protocols_of(config: RunConfig) -> list[Protocol]:
    return [Protocol(with_overrides(load_protocol_card(p), levels=config.levels, draws=config.draws, seed=config.seed))
            for p in config.protocols]


def open_datasets(config: RunConfig) -> list[Dataset]:
    datasets = [s.open() for s in config.datasets]
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
    * ``draws`` and ``levels`` may grow, never shrink (:meth:`Store.claim_identity`).
    * A changed dataset names its changed files; ``--retry-failed`` re-runs exactly those images
      (:meth:`Store.claim_dataset`).
    """
    config = work.config
    for m, sig in signatures.items():
        store.claim_identity("model", m, {**sig, "prompts_per_call": config.prompts_per_call},
                             MODEL_IDENTITY + ("prompts_per_call",))
    stored = {}
    for p in work.protocols:
        ident = p.card.identity()
        ident["settings"] = {s.pop("level"): s for s in ident["settings"]}
        ident["levels"] = list(ident["settings"])
        stored[p.name] = store.claim_identity("protocol", p.name, ident, PROTOCOL_IDENTITY, grows=("draws", "levels"))
    ds_info = {}
    for spec, d in zip(config.datasets, datasets):
        ds_info[d.name] = {"content_hash": d.content_hash(), "n_images": len(d.ids()), "spec": spec.to_dict(),
                           "describe": d.describe(), "notices": d.notices()}
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
    with ``invocation``'s counters (per model) in the same transaction. Returns rows added."""
    config = work.config
    workers = config.workers if config.workers is not None else default_workers(config.models)
    rows_added = 0
    engine = make_engine(work, workers, config.engine)
    try:
        for index, ds in enumerate(datasets):
            ids = select_images(ds.name, ds.ids(), config.limit, config.shard)
            bar = _progress(config, len(ids), ds.name)
            for result in engine.map(_jobs(store, config.models, index, ds, ids)):
                rows_added += _commit(store, result, invocation, bar)
            bar.close()
    finally:
        engine.close()
    return rows_added


def _commit(store: Store, result: ImageResult, invocation: dict, bar) -> int:
    counters = invocation["counters"]
    for model, c in result.counters.items():
        for k, v in c.items():
            counters[model][k] += v
    # One transaction per image: its rows of every model, and this invocation's counters with them.
    added = store.write([r for model_rows in result.rows.values() for r in model_rows], invocation=invocation)
    bar.rows = getattr(bar, "rows", 0) + added
    bar.set_postfix(rows=bar.rows, refresh=False)
    bar.update(1)
    return added


def _progress(config: RunConfig, total: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="img", disable=not config.progress, dynamic_ncols=True,
                file=sys.stderr, smoothing=0.1)


def prompt_hashes(store: Store) -> dict:
    """:func:`sambench.prompts.prompt_set_hash` of the stored prompts, per protocol and dataset."""
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


def start_invocation(store: Store, config: RunConfig) -> dict:
    """Record this ``run`` in the store (argv, config, status ``running``, zero counters) before any work."""
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    invocation = {"id": f"{started}-{os.getpid()}", "started": started, "argv": list(sys.argv),
                  "config": config.public(), "status": "running", "wall_time_s": None,
                  "counters": {m: {"encoder_calls": 0, "decoded_prompts": 0} for m in config.models}}
    store.record_invocation(invocation)
    return invocation


def run(config: RunConfig, adapters: Optional[dict[str, Adapter]] = None,
        datasets: Optional[list[Dataset]] = None) -> RunResult:
    """Run (or resume) the benchmark described by ``config`` into ``config.out``.

    ``adapters`` (model name → built adapter) and ``datasets`` (opened, in ``config.datasets`` order)
    replace building them from the config, for callers that hold the objects (:mod:`sambench.api`).
    Models and datasets are built before the run directory is created: a refused run leaves nothing.
    """
    t0 = time.perf_counter()
    check_config(config)
    work = ImageWork(config, protocols_of(config), datasets or open_datasets(config), adapters)
    datasets = [work.dataset(i) for i in range(len(config.datasets))]
    check_corruptions(work)
    signatures = model_signatures(work)
    with Store(config.out) as store:
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
        invocation["status"], invocation["wall_time_s"] = "finished", round(time.perf_counter() - t0, 3)
        store.record_invocation(invocation)
        manifest = record_manifest(store, work, signatures, ds_info, stored, invocation)
        counts, rows = manifest["rows"], store.frame()
    counters = invocation["counters"]
    return RunResult(Path(config.out), rows_added, counts, counters, time.perf_counter() - t0, manifest, rows)
