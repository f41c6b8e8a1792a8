"""The run loop: dataset → protocol → adapter → metrics → store.

For every image: load it once; for every model, work out which (protocol, level, draw, object) rows
are still missing from the store (resume), encode the image once per preprocessing mode those rows
need, decode their prompts in chunks of ``chunk_size``, score each mask against its GT, and write all
rows of that (model, image) in one transaction. Failures (unreadable image, empty mask, a prompt kind
the model cannot take, any exception an adapter raises in ``encode`` or ``predict`` — out of memory
included) become ``failed`` rows with their reason: never dropped. Failed rows count as done on resume
(the same input fails the same way); ``--retry-failed`` deletes them first so they run again.

Images can be spread over a process pool (``workers``): every worker builds its own adapters, results
come back to the parent, which alone writes to SQLite. Prompts are keyed and baselines reseed their own
RNG per prompt, so the rows do not depend on the number of workers or on the order of completion.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

import sambench
from sambench.adapters import build_adapter
from sambench.adapters.base import Adapter
from sambench.cards import ProtocolCard, load_model_card, load_protocol_card, with_overrides
from sambench.datasets import Dataset, open_dataset
from sambench.metrics import boundary_iou, encode_rle, iou
from sambench.prompts import Protocol, PromptTask, prompt_set_hash
from sambench.store import Row, Store, read_manifest, write_manifest
from sambench.types import SambenchError, canonical_json, stable_hash


@dataclass
class DatasetSpec:
    """How to (re)open a dataset: what ``open_dataset`` takes. Recorded in the manifest."""

    spec: str
    format: Optional[str] = None
    name: Optional[str] = None
    images: Optional[str] = None
    masks: Optional[str] = None
    options: dict = field(default_factory=dict)

    def open(self) -> Dataset:
        return open_dataset(self.spec, format=self.format, name=self.name, images=self.images, masks=self.masks,
                            **self.options)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}


@dataclass
class RunConfig:
    """Everything a run needs; ``checkpoints``/``plugins``/``model_options`` are keyed by model name."""

    models: list[str]
    protocols: list[str]
    datasets: list[DatasetSpec]
    out: Path
    levels: Optional[list[str]] = None
    draws: Optional[int] = None
    seed: Optional[int] = None
    limit: Optional[int] = None
    shard: Optional[tuple[int, int]] = None
    chunk_size: int = 64
    workers: int = 1
    device: str = "auto"
    checkpoints: dict = field(default_factory=dict)
    plugins: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    retry_failed: bool = False
    progress: bool = True

    def public(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        d["datasets"] = [s.to_dict() for s in self.datasets]
        d.pop("progress")
        return d


#: Fields of a model signature / protocol identity that a resumed run must share with the stored rows.
MODEL_IDENTITY = ("adapter", "adapter_version", "weights_sha256", "variant", "options", "plugin_id", "plugin_config")
PROTOCOL_IDENTITY = ("version", "seed", "mask_selection", "preprocessing")


@dataclass
class RunResult:
    run_dir: Path
    rows_added: int
    counts: dict
    counters: dict
    wall_time_s: float
    manifest: dict


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


def object_failure_rows(model: str, sample, protocols: Iterable[ProtocolCard], done: set) -> list[Row]:
    """One failed row per protocol for each unusable object of ``sample`` (``Sample.failed_objects``):
    object id set, level ``""``, draw -1, so each lost object is counted while the others are scored."""
    return [Row(model=model, dataset=sample.dataset, image_id=sample.image_id, object_id=oid, protocol=p.name, level="",
                draw=-1, protocol_version=p.version, status="failed", error=reason)
            for oid, reason in sorted(sample.failed_objects.items()) for p in protocols
            if (oid, p.name, "", -1) not in done]


def evaluate_image(adapter: Adapter, model: str, sample, protocols: list[Protocol], done: set,
                   chunk_size: int) -> list[Row]:
    """All missing rows of one (model, image): encode once per preprocessing, decode in chunks, score."""
    gts = {o.id: o for o in sample.objects}
    rows: list[Row] = object_failure_rows(model, sample, [p.card for p in protocols], done)
    # (preprocessing, mask_selection) → tasks; the encoder runs once per preprocessing mode.
    groups: dict[tuple[str, str], list[PromptTask]] = {}
    for proto in protocols:
        for task in proto.tasks(sample.dataset, sample.image_id, sample.objects):
            if (task.object_id, task.protocol, task.level, task.draw) in done:
                continue
            if task.prompt is None:
                rows.append(_row(task, model, sample.dataset, sample.image_id, status="failed",
                                 error=f"{sample.dataset}/{sample.image_id}/{task.object_id}: {task.error}"))
            elif task.prompt.kind not in adapter.capabilities:
                rows.append(_row(task, model, sample.dataset, sample.image_id, status="failed",
                                 error=f"model '{model}' cannot take a '{task.prompt.kind}' prompt"))
            else:
                groups.setdefault((proto.card.preprocessing, proto.card.mask_selection), []).append(task)
    states: dict[str, Any] = {}
    encode_errors: dict[str, str] = {}
    gt_areas = {o.id: int(np.count_nonzero(o.mask)) for o in sample.objects}
    for (prep, selection), tasks in groups.items():
        if prep not in states and prep not in encode_errors:
            try:
                states[prep] = adapter.encode(sample.image, prep)
            except Exception as exc:  # recorded, never dropped: the run goes on with the next group
                encode_errors[prep] = _describe(exc, f"model '{model}' failed to encode {sample.dataset}/{sample.image_id}")
        if prep in encode_errors:
            rows.extend(_row(t, model, sample.dataset, sample.image_id, status="failed", error=encode_errors[prep])
                        for t in tasks)
            continue
        for start in range(0, len(tasks), chunk_size):
            chunk = tasks[start:start + chunk_size]
            try:
                pred = adapter.predict(states[prep], [t.prompt for t in chunk], mask_selection=selection)
            except Exception as exc:
                err = _describe(exc, f"model '{model}' failed to decode on {sample.dataset}/{sample.image_id}")
                rows.extend(_row(t, model, sample.dataset, sample.image_id, status="failed", error=err) for t in chunk)
                continue
            for i, task in enumerate(chunk):
                mask = pred.masks[i]
                gt = gts[task.object_id].mask
                if mask.shape != gt.shape:
                    rows.append(_row(task, model, sample.dataset, sample.image_id, status="failed",
                                     error=f"model '{model}' returned a {mask.shape} mask for a {gt.shape} image"))
                    continue
                score = float(pred.scores[i])
                extras = pred.extras[i] if pred.extras is not None and pred.extras[i] else None
                rows.append(_row(task, model, sample.dataset, sample.image_id,
                                 iou=iou(mask, gt), biou=boundary_iou(mask, gt),
                                 score=None if np.isnan(score) else score,
                                 gt_area=gt_areas[task.object_id], pred_area=int(np.count_nonzero(mask)),
                                 mask_rle=canonical_json(encode_rle(mask)),
                                 extras=canonical_json(extras) if extras else None, status="ok"))
            del pred
    return rows


# ------------------------------------------------------------------------------------- worker plumbing

_WORKER: dict = {}


def _worker_init(config: RunConfig) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (exit 130), not each worker's
    _WORKER.clear()
    _WORKER["config"] = config
    _WORKER["protocols"] = _protocols(config)
    _WORKER["adapters"] = {}
    _WORKER["datasets"] = {}


def _adapter(config: RunConfig, cache: dict, model: str) -> Adapter:
    if model not in cache:
        cache[model] = build_adapter(model, device=config.device, checkpoint=config.checkpoints.get(model),
                                     plugin=config.plugins.get(model), options=config.model_options.get(model))
    return cache[model]


def _process_image(ds_index: int, image_id: str, done_by_model: dict) -> tuple[str, dict, dict]:
    """Worker entry: rows per model for one image, plus adapter counters deltas."""
    config: RunConfig = _WORKER["config"]
    if ds_index not in _WORKER["datasets"]:
        _WORKER["datasets"][ds_index] = config.datasets[ds_index].open()
    ds = _WORKER["datasets"][ds_index]
    return image_id, *_image_rows(config, ds, image_id, _WORKER["protocols"], _WORKER["adapters"], done_by_model)


def _image_rows(config: RunConfig, ds: Dataset, image_id: str, protocols: list[Protocol], adapters: dict,
                done_by_model: dict) -> tuple[dict, dict]:
    rows: dict[str, list[Row]] = {}
    counters: dict[str, dict] = {}
    try:
        sample = ds.load(image_id)
    except SambenchError as exc:
        for model in done_by_model:
            rows[model] = image_failure_rows(model, ds.name, image_id, [p.card for p in protocols], str(exc))
        return rows, counters
    for model, done in done_by_model.items():
        ad = _adapter(config, adapters, model)
        before = ad.counters()
        rows[model] = evaluate_image(ad, model, sample, protocols, done, config.chunk_size)
        after = ad.counters()
        counters[model] = {k: after[k] - before[k] for k in after}
    return rows, counters


# ------------------------------------------------------------------------------------------- the run


def _protocols(config: RunConfig) -> list[Protocol]:
    return [Protocol(with_overrides(load_protocol_card(p), levels=config.levels, draws=config.draws, seed=config.seed))
            for p in config.protocols]


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    libs = {"python": platform.python_version()}
    for name in ("numpy", "opencv-python-headless", "pycocotools", "torch", "torchvision", "segment-anything",
                 "segment-anything-hq", "timm", "pandas", "scipy"):
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            libs[name] = None
    return libs


def prompt_hashes(store: Store) -> dict:
    """:func:`sambench.prompts.prompt_set_hash` of the stored prompts, per protocol and dataset."""
    cur = store.conn.execute("SELECT DISTINCT protocol, dataset, image_id, object_id, level, draw, prompt_hash "
                             "FROM results WHERE prompt_hash IS NOT NULL")
    groups: dict[tuple, list] = {}
    for protocol, dataset, *entry in cur:
        groups.setdefault((protocol, dataset), []).append(entry)
    out: dict = {}
    for (protocol, dataset), entries in groups.items():
        out.setdefault(protocol, {})[dataset] = prompt_set_hash(entries)
    return out


def run(config: RunConfig) -> RunResult:
    """Run (or resume) the benchmark described by ``config`` into ``config.out``."""
    t0 = time.perf_counter()
    if config.chunk_size < 1:
        raise SambenchError(f"--chunk-size must be >= 1, got {config.chunk_size}")
    if config.shard is not None and not (0 <= config.shard[0] < config.shard[1]):
        raise SambenchError(f"--shard must be I/N with 0 <= I < N, got {config.shard[0]}/{config.shard[1]}")
    if config.limit is not None and config.limit < 1:
        raise SambenchError(f"--limit must be >= 1, got {config.limit}")
    if config.workers is not None and int(config.workers) < 1:
        raise SambenchError(f"--workers must be >= 1, got {config.workers}")
    for m in config.models:
        load_model_card(m)  # unknown names fail before any work
    protocols = _protocols(config)
    datasets = [s.open() for s in config.datasets]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise SambenchError(f"two datasets share the name '{[n for n in names if names.count(n) > 1][0]}': give "
                            f"--name NAME once per --dataset, in order")

    run_dir = Path(config.out)
    adapters: dict[str, Adapter] = {}
    # Models are built before the run directory exists: a refused model (bad checkpoint, no CUDA) leaves
    # nothing behind on which `report` could succeed with empty tables.
    signatures = {m: _adapter(config, adapters, m).signature() for m in config.models}
    store = Store(run_dir)
    old = read_manifest(run_dir)
    stored_settings: dict = {}
    for m, sig in signatures.items():
        # Prompts per predict() call change how a model batches its decoder, hence masks by a pixel and
        # scores by ~1e-7 (batched float arithmetic): a resume must keep it (issue 11).
        store.claim_identity("model", m, {**sig, "chunk_size": config.chunk_size}, MODEL_IDENTITY + ("chunk_size",))
    for p in protocols:
        ident = p.card.identity()
        ident["settings"] = {s.pop("level"): s for s in ident["settings"]}
        # Draws and levels may grow on a resume (every selected image gets the new rows), never shrink:
        # that would leave objects on different settings (issue 11). The store keeps the grown set.
        ident["levels"] = [s.label for s in p.card.settings]
        stored_settings[p.name] = store.claim_identity("protocol", p.name, ident, PROTOCOL_IDENTITY,
                                                       grows=("draws", "levels"))
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
    if config.retry_failed:
        store.delete_failed(config.models)

    workers = max(1, int(config.workers))
    counters = {m: {"encoder_calls": 0, "decoded_prompts": 0} for m in config.models}
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    invocation = {"id": f"{started}-{os.getpid()}", "started": started, "argv": list(sys.argv),
                  "config": config.public(), "status": "running", "counters": counters}
    store.record_invocation(invocation)
    rows_added = 0
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(config,))
    try:
        for di, ds in enumerate(datasets):
            ids = select_images(ds.name, ds.ids(), config.limit, config.shard)
            bar = _progress(config, len(ids), ds.name)
            jobs = []
            for image_id in ids:
                done_by_model = {m: store.done_keys(m, ds.name, image_id) for m in config.models}
                if pool is None:
                    rows, cnt = _image_rows(config, ds, image_id, protocols, adapters, done_by_model)
                    rows_added += _commit(store, rows, cnt, counters, bar, invocation)
                else:
                    jobs.append(pool.submit(_process_image, di, image_id, done_by_model))
            for fut in as_completed(jobs):
                _, rows, cnt = fut.result()
                rows_added += _commit(store, rows, cnt, counters, bar, invocation)
            bar.close()
    except BaseException as exc:  # Ctrl-C, a full disk, a bug: say so in the store, then let it propagate
        invocation["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            store.record_invocation(invocation)
        except SambenchError:
            pass
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    invocation["status"] = "finished"
    invocation["wall_time_s"] = round(time.perf_counter() - t0, 3)
    store.record_invocation(invocation)

    counts = store.count()
    manifest = _manifest(config, old, protocols, ds_info, signatures, store.invocations(), invocation["id"],
                         prompt_hashes(store), counts)
    for name, ident in stored_settings.items():  # what the store holds, not only what this invocation asked
        manifest["protocols"][name]["stored"] = {"draws": ident.get("draws"), "levels": ident.get("levels")}
    write_manifest(run_dir, manifest)
    store.close()
    return RunResult(run_dir, rows_added, counts, counters, time.perf_counter() - t0, manifest)


def select_images(dataset: str, ids: list[str], limit: Optional[int], shard: Optional[tuple[int, int]]) -> list[str]:
    """The first ``limit`` ids, then those of shard ``I/N``: the image whose stable hash of
    (dataset, image id) is I modulo N. Shards are disjoint, cover the dataset, and do not depend on the
    machine; run each anywhere (``--out`` per shard) and merge them with ``sambench report A B ...``."""
    ids = ids[:limit] if limit else list(ids)
    if shard is None:
        return ids
    i, n = shard
    return [x for x in ids if int(stable_hash("shard", dataset, x), 16) % n == i]


def _commit(store: Store, rows: dict, cnt: dict, counters: dict, bar, invocation: dict) -> int:
    for model, c in cnt.items():
        for k, v in c.items():
            counters[model][k] += v
    # One transaction per image: its rows of every model and this invocation's counters with them.
    added = store.write([r for model_rows in rows.values() for r in model_rows], invocation=invocation)
    bar.rows = getattr(bar, "rows", 0) + added
    bar.set_postfix(rows=bar.rows, refresh=False)
    bar.update(1)
    return added


def _progress(config: RunConfig, total: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="img", disable=not config.progress, dynamic_ncols=True,
                file=sys.stderr, smoothing=0.1)


def _manifest(config: RunConfig, old: dict, protocols: list[Protocol], ds_info: dict, signatures: dict,
              stored: list[dict], current: str, phashes: dict, counts: dict) -> dict:
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    # Invocations: those of manifests written before the store recorded them (no "id"), then every one
    # the store holds; one still "running" that is not this one was killed (SIGKILL, power loss).
    invocations = [i for i in old.get("invocations", []) if "id" not in i]
    for inv in stored:
        if inv.get("status") == "running" and inv.get("id") != current:
            inv = {**inv, "status": "killed"}
        invocations.append(inv)
    merged_counters: dict = {}
    for inv in invocations:
        for m, c in (inv.get("counters") or {}).items():
            acc = merged_counters.setdefault(m, {"encoder_calls": 0, "decoded_prompts": 0})
            for k, v in c.items():
                acc[k] = acc.get(k, 0) + v
    protos = dict(old.get("protocols", {}))
    for p in protocols:
        protos[p.name] = {"version": p.card.version, "identity": p.card.identity(), "seed": p.card.seed,
                          "card": str(p.card.path) if p.card.path else None}
    for p, by_ds in phashes.items():
        protos.setdefault(p, {})["prompt_hash"] = by_ds
    return {
        "sambench_version": sambench.__version__,
        "schema_version": 1,
        "git_commit": git_commit(),
        "created": old.get("created", now),
        "updated": now,
        "config": config.public(),
        "protocols": protos,
        "datasets": {**old.get("datasets", {}), **ds_info},
        "models": {**old.get("models", {}), **signatures},
        "seed": config.seed,
        "libraries": library_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        "counters": merged_counters,
        "rows": counts,
        "invocations": invocations,
    }
