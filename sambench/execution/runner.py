"""The run loop: dataset → protocol → adapter → metrics → store, as :func:`run` reads top-down.

For every image: load it once; for every model, work out which (protocol, level, draw, object) rows are
still missing from the store (resume), encode the image once per preprocessing mode those rows need,
decode their prompts ``prompts_per_call`` at a time, score each mask against its GT, and write all rows
of that (model, image) in one transaction. Failures (unreadable image, empty mask, a prompt form the
model cannot take, any exception an adapter raises in ``encode`` or ``predict`` — out of memory included)
become ``failed`` rows with their reason: never dropped. Failed rows count as done on resume (the same
input fails the same way); ``--retry-failed`` deletes them first so they run again.

The stages of :func:`run`, each in its module: the configuration is checked and its run directory and
worker count decided (:mod:`~sambench.execution.config`); protocols, datasets and models are opened
before the run directory exists, so a refused run leaves nothing; identities are claimed in the store
and the invocation recorded (:mod:`~sambench.execution.ledger`); the images are executed on an engine
(:mod:`~sambench.execution.engines`: serial, process pool, Ray), each by the batch path
(:mod:`~sambench.execution.image`) and the click path (:mod:`~sambench.execution.sequences`); the
manifest is recorded. One process writes a run directory at a time (sambench/execution/lock.py).
Prompts are keyed and baselines reseed their own RNG per prompt, so the rows do not depend on the
engine, the number of workers or the order of completion (on CPUs, at equal torch thread counts: float
reductions depend on them; docs/scale.md).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pandas as pd
from tqdm import tqdm

from sambench.adapters.base import Adapter
from sambench.datasets import Dataset
from sambench.execution.config import RunConfig, check_model_kinds, protocols_of, resolved, select_images
from sambench.execution.engines import make_engine
from sambench.execution.ledger import (claim_identities, commit, corrupted_names, end_invocation, record_manifest,
                                       start_invocation)
from sambench.execution.lock import RunLock
from sambench.execution.video import is_video_run, run_video
from sambench.execution.work import ImageJob, ImageWork
from sambench.inputs import corruptions as corr
from sambench.inputs.replay import check_dataset
from sambench.store import Store
from sambench.types import SambenchError


@dataclass
class RunResult:
    """What :func:`run` did: where, how many rows it added, the stored counts, the adapters' counters."""

    run_dir: Path
    rows_added: int
    counts: dict
    counters: dict
    wall_time_s: float
    manifest: dict
    #: Every row of the run directory after the run (``Store.frame``): read once, before the store closes.
    rows: Optional[pd.DataFrame] = None
    #: Its stored per-object stability (``Store.objects``), read with the rows.
    objects: Optional[pd.DataFrame] = None


def run(config: RunConfig, adapters: Optional[dict[str, Adapter]] = None) -> RunResult:
    """Run (or resume) the benchmark described by ``config`` into ``config.out``.

    ``adapters`` (model name → adapter object) are used instead of building those models from their
    cards, for callers that hold the objects (:mod:`sambench.api`). Models and datasets are built before
    the run directory is created: a refused run leaves nothing.
    """
    t0 = time.perf_counter()
    video = is_video_run(config)
    check_model_kinds(config, adapters or {}, video)  # a video model in an image run, or the reverse: one line
    if video:  # video protocols: a video is the unit of work (sambench/execution/video.py)
        return RunResult(**run_video(config, adapters))
    config = resolved(config, adapters)  # the run directory and worker count the manifest records
    work = ImageWork(config, protocols_of(config), adapters)
    datasets = open_datasets(work)
    check_corruptions(work)
    check_replays(work, datasets)
    signatures = model_signatures(work)
    if work.cache is not None:  # a file, an unwritable or a foreign --cache: refused now, not as failed rows
        work.cache.claim()
    # The engine starts before the run directory exists: a Ray cluster that cannot be reached or cannot place
    # the actors is refused with nothing left behind
    engine = make_engine(work, config.workers, config.engine)
    try:
        with RunLock(config.out).acquire(wait=config.wait_lock), Store(config.out) as store:  # one writer per run dir
            stored, ds_info = claim_identities(store, work, datasets, signatures)
            if config.retry_failed:
                store.delete_failed(config.models)
            invocation = start_invocation(store, config)
            try:
                rows_added = execute(store, work, datasets, invocation, engine)
            except BaseException as exc:  # Ctrl-C, a full disk, a bug: say so in the store, then let it propagate
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                end_invocation(store, invocation, status, time.perf_counter() - t0)
                raise
            finally:
                engine.close()
                work.close()
            end_invocation(store, invocation, "finished", time.perf_counter() - t0)
            manifest = record_manifest(store, work, signatures, ds_info, stored, invocation)
            counts, rows, objects = manifest["rows"], store.frame(), store.objects()
    finally:
        engine.close()  # again when the run directory was refused (closing twice is harmless)
    return RunResult(Path(config.out), rows_added, counts, invocation["counters"], time.perf_counter() - t0, manifest,
                     rows, objects)


def open_datasets(work: ImageWork) -> list[Dataset]:
    """Every dataset of the run, opened (names must differ: they are part of the result key)."""
    datasets = [work.dataset(i) for i in range(len(work.config.datasets))]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise SambenchError(f"two datasets share the name '{[n for n in names if names.count(n) > 1][0]}': give "
                            f"--name NAME once per --dataset, in order")
    return datasets


def check_corruptions(work: ImageWork) -> None:
    """Refuse before any work what a corruption would fail on every image with (frost's missing textures)."""
    if "frost" in corrupted_names(work):
        corr.frost_textures()


def check_replays(work: ImageWork, datasets: list[Dataset]) -> None:
    """Refuse before any work a replay file that does not fit a dataset of the run (another dataset's file, an
    unknown image or object id, a prompt outside its image): one line naming the file and the id."""
    for p in work.protocols:
        if p.card.replayed:
            for ds in datasets:
                check_dataset(p.card, ds)


def model_signatures(work: ImageWork) -> dict:
    """Every model's signature; builds the adapters (checkpoint checks, device), so a refused model stops the
    run before its directory exists."""
    return {m: work.adapter(m).signature() for m in work.config.models}


def execute(store: Store, work: ImageWork, datasets: list[Dataset], invocation: dict, engine=None) -> int:
    """Evaluate every selected image of every dataset on the engine (``engine``, closed by its owner, or one
    made and closed here); write each image's rows as they come, with ``invocation``'s counters (per model)
    and scoring timings in the same transaction. Returns rows added."""
    config = work.config
    timings: dict[str, dict] = {}
    invocation["scoring"] = {"threads": work.scoring_threads(), "models": {}, "store_write_s": 0.0}
    rows_added = 0
    own = engine is None
    engine = make_engine(work, config.workers, config.engine) if own else engine
    try:
        for index, ds in enumerate(datasets):
            ids = select_images(ds.name, ds.ids(), config.limit, config.shard)
            bar = tqdm(total=len(ids), desc=ds.name, unit="img", disable=not config.progress, dynamic_ncols=True,
                       file=sys.stderr, smoothing=0.1)
            for result in engine.map(_jobs(store, config.models, index, ds, ids)):
                added = commit(store, result, invocation, timings)
                rows_added += added
                bar.rows = getattr(bar, "rows", 0) + added
                bar.set_postfix(rows=bar.rows, refresh=False)
                bar.update(1)
            bar.close()
    finally:
        if own:
            engine.close()
    return rows_added


def _jobs(store: Store, models: list[str], index: int, ds: Dataset, ids: list[str]) -> Iterator[ImageJob]:
    for image_id in ids:
        yield ImageJob(index, image_id, {m: store.done_keys(m, ds.name, image_id) for m in models})


__all__ = ["RunResult", "check_corruptions", "check_replays", "execute", "model_signatures", "open_datasets", "run", "select_images"]
