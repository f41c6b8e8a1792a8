"""What a run is asked to do: :class:`RunConfig`, its checks, and the two settings derived when not given.

The command line, the Python API and direct :func:`sambench.execution.runner.run` callers all end here:

* :func:`check_config` refuses impossible numbers and unknown names before any work;
* :func:`default_run_dir` is THE default run directory (``runs/<names>_<hash>``): the same run lands in the
  same directory whoever starts it, so re-running resumes it;
* :func:`worker_count` is THE worker count: as asked, else :func:`default_workers`' policy, and one process
  when adapter, protocol or dataset objects given in hand do not pickle.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from sambench.adapters import is_cpu_baseline, is_cpu_baseline_adapter
from sambench.adapters.base import Adapter
from sambench.adapters.video import video_adapter_name
from sambench.config import ProtocolCard, list_cards, load_model_card, load_protocol_card, with_overrides
from sambench.datasets import Dataset, DatasetSpec
from sambench.execution.cache import DEFAULT_MAX_GB, STORAGES, check_max_gb
from sambench.inputs import corruptions as corr
from sambench.inputs.prompts import Protocol
from sambench.inputs.replay import resolve
from sambench.types import SambenchError, canonical_json, check_choice, check_min, stable_hash

#: Where images run (:data:`sambench.execution.engines.ENGINES` maps each name to its engine).
ENGINE_NAMES = ("serial", "process", "ray")
#: The RunConfig fields every run names; the others are options (``sambench.run(..., **options)``).
REQUIRED = ("models", "protocols", "datasets", "out")


@dataclass
class RunConfig:
    """Everything a run needs; ``checkpoints``/``plugins``/``model_options`` are keyed by model name.

    ``out``: the run directory; None applies :func:`default_run_dir`. ``prompts_per_call``: prompts handed to
    ``adapter.predict`` at once (the adapter may batch its decoder in smaller chunks of its own, e.g. SAM's
    ``chunk_size`` option). ``workers``: None applies :func:`worker_count`. ``engine``: a name in
    :data:`ENGINE_NAMES`; None is ``serial`` for one worker, else ``process``. ``protocols`` are card names or
    cards; ``datasets`` are specs or opened datasets (which the process engine pickles to its workers);
    ``models`` are names — of cards, or of the adapter objects given to the run.
    """

    models: list[str]
    protocols: list[Union[str, ProtocolCard]]
    datasets: list[Union[DatasetSpec, Dataset]]
    out: Optional[Path]
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
    #: Embedding cache directory (sambench/execution/cache.py); None = no cache. Size limit and storage dtype.
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
    #: :func:`sambench.execution.scoring.default_threads` (the usable CPUs shared by the workers, at most 4)
    scoring_threads: Optional[int] = None
    #: ``--corruption`` specs (``NAME[:SEVERITIES]`` or ``all``): every protocol also runs on these corrupted
    #: copies of each image, besides the clean one (sambench/inputs/corruptions.py).
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
        if d["cache_max_gb"] == float("inf"):  # --cache-max-gb inf (no limit): "inf", as JSON has no Infinity
            d["cache_max_gb"] = "inf"
        return json.loads(json.dumps(d, default=str))


#: ``sambench.run``'s keyword options, with their command-line names: every RunConfig field but REQUIRED.
OPTIONS = tuple(f.name for f in fields(RunConfig) if f.name not in REQUIRED)


def dataset_entry(d: Union[DatasetSpec, Dataset]) -> dict:
    """How the manifest records a dataset: its spec, or for an object given in hand its type and name
    (its ``describe()`` and content hash are recorded under ``datasets`` as for any dataset)."""
    if isinstance(d, DatasetSpec):
        return d.to_dict()
    return {"object": f"{type(d).__module__}.{type(d).__qualname__}", "name": d.name}


def check_config(config: RunConfig, given: dict) -> None:
    """Refuse impossible numbers and unknown model names before any work."""
    check_min(config.prompts_per_call, 1, "--prompts-per-call")
    if config.shard is not None and not (0 <= config.shard[0] < config.shard[1]):
        raise SambenchError(f"--shard must be I/N with 0 <= I < N, got {config.shard[0]}/{config.shard[1]}")
    if config.limit is not None:
        check_min(config.limit, 1, "--limit")
    if config.workers is not None:
        check_min(config.workers, 1, "--workers")
    if config.engine is not None and config.engine not in ENGINE_NAMES:
        raise SambenchError(f"unknown engine '{config.engine}' (known: {', '.join(ENGINE_NAMES)})")
    check_min(config.encode_batch, 1, "--encode-batch")
    check_choice(config.cache_dtype, STORAGES, "--cache-dtype")
    check_max_gb(config.cache_max_gb)
    for m in config.models:
        if m not in given:
            load_model_card(m)
    for spec in config.corruptions:
        corr.parse_spec(spec)


def _card_names(section: str, keep) -> list[str]:
    """The shipped and user cards of ``section`` for which ``keep(card)`` holds (a card that does not load is
    left out: this only lists what to use instead)."""
    load = load_model_card if section == "models" else load_protocol_card
    out = []
    for name in sorted(list_cards(section)):
        try:
            if keep(load(name)):
                out.append(name)
        except SambenchError:
            pass
    return out


def check_model_kinds(config: RunConfig, given: dict, video: bool) -> None:
    """Refuse, before any model is built, a video-only model (``video: true`` or a video ``adapter:``) in a run
    of image protocols and an image-only model in a run of video protocols (``video``), in one line naming the
    model, the run's protocols and the cards that would fit (docs/video.md "Models"). Objects given in hand are
    the caller's to match."""
    protocols = [p.name if isinstance(p, ProtocolCard) else str(p) for p in config.protocols]
    for m in config.models:
        if m in given:
            continue
        card = load_model_card(m)
        runs_video = video_adapter_name(card) is not None
        video_only = runs_video and not card.video_adapter  # its adapter: is a video adapter
        if video_only and not video:
            fits = _card_names("protocols", lambda c: c.video)
            raise SambenchError(f"model '{m}' is a video model: it needs a video protocol ({', '.join(fits)}), not "
                                f"the image protocol{'s' if len(protocols) > 1 else ''} "
                                f"{', '.join(repr(p) for p in protocols)}")
        if video and not runs_video:
            fits = _card_names("models", lambda c: video_adapter_name(c) is not None)
            raise SambenchError(f"model '{m}' is an image model: the video protocol"
                                f"{'s' if len(protocols) > 1 else ''} {', '.join(repr(p) for p in protocols)} "
                                f"need{'' if len(protocols) > 1 else 's'} a video model ({', '.join(fits)})")


def protocols_of(config: RunConfig) -> list[Protocol]:
    """The run's protocols, their cards with the run's ``levels``/``draws``/``seed`` overrides (a replay card's
    levels and draws read from its file first)."""
    cards = [resolve(p if isinstance(p, ProtocolCard) else load_protocol_card(p)) for p in config.protocols]
    return [Protocol(with_overrides(c, levels=config.levels, draws=config.draws, seed=config.seed)) for c in cards]


# ------------------------------------------------------------------------------------ the worker count


def default_workers(models: list[str], adapters: Optional[dict[str, Adapter]] = None) -> int:
    """The worker-count policy: one process per usable CPU when every model is a CPU baseline (a pool
    over images pays off), else 1 (a torch model uses the cores itself, and loads once). An adapter
    object is a baseline when its signature names a registered CPU-baseline adapter (an unknown adapter
    name, or none, is not a baseline: it is never looked up as a card)."""
    adapters = adapters or {}
    if not all(is_cpu_baseline_adapter(str(adapters[m].signature().get("adapter", ""))) if m in adapters
               else is_cpu_baseline(m) for m in models):
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _objects(config: RunConfig, adapters: dict[str, Adapter]) -> list:
    """What the run was given in hand (a pool or Ray needs each to pickle)."""
    return [*adapters.values(), *(d for d in config.datasets if isinstance(d, Dataset)),
            *(p for p in config.protocols if isinstance(p, ProtocolCard))]


def _pickles(objects: Iterable[Any]) -> bool:
    try:
        for obj in objects:
            pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - any failure means "keep it in this process"
        return False
    return True


def worker_count(config: RunConfig, adapters: Optional[dict[str, Adapter]] = None) -> Optional[int]:
    """THE worker count of a run: ``config.workers`` if given, else :func:`default_workers` (None for the Ray
    engine, which sizes itself to the cluster). Objects given in hand that do not pickle run in this one
    process; asking for more workers then is refused."""
    adapters = adapters or {}
    objects = _objects(config, adapters)
    if objects and config.workers != 1 and not _pickles(objects):
        if config.workers is not None:
            raise SambenchError(f"workers={config.workers} needs every model and dataset object to pickle, and "
                                f"one does not: leave workers unset (one process) or pass names")
        return 1
    if config.workers is not None or config.engine == "ray":
        return config.workers
    return default_workers(config.models, adapters)


def select_images(dataset: str, ids: list[str], limit: Optional[int], shard: Optional[tuple[int, int]]) -> list[str]:
    """The first ``limit`` ids, then those of shard ``I/N``: the image whose stable hash of
    (dataset, image id) is I modulo N. Shards are disjoint, cover the dataset, and do not depend on the
    machine; run each anywhere (``--out`` per shard) and merge them with ``sambench report A B ...``."""
    ids = ids[:limit] if limit else list(ids)
    if shard is None:
        return ids
    i, n = shard
    return [x for x in ids if int(stable_hash("shard", dataset, x), 16) % n == i]


# ------------------------------------------------------------------------------ the default directory


def option_strings(model_options: dict) -> list[str]:
    """Adapter options as ``MODEL.key=value`` strings (JSON values), sorted: the run directory's hash of them."""
    return sorted(f"{m}.{k}={canonical_json(v)}" for m, opts in model_options.items() for k, v in opts.items())


def default_run_dir(config: RunConfig, adapters: Optional[dict[str, Adapter]] = None) -> Path:
    """THE default run directory: ``runs/<models>_<protocols>_<datasets>_<hash>``, deterministic, so that
    running the same thing again — from the command line or the API — resumes it.

    The hash covers what selects the rows: levels, draws, seed, limit, shard, adapter options, the first
    dataset's loader options, the corruptions, and the ``signature()`` of every adapter object.
    """
    adapters = adapters or {}
    protocols = [p.name if isinstance(p, ProtocolCard) else str(p) for p in config.protocols]
    datasets = [d.spec if isinstance(d, DatasetSpec) else d.name for d in config.datasets]
    first = config.datasets[0] if config.datasets else None
    extra: dict = {"levels": config.levels, "draws": config.draws, "seed": config.seed, "limit": config.limit,
                   "shard": None if config.shard is None else f"{config.shard[0]}/{config.shard[1]}",
                   "options": option_strings(config.model_options),
                   "dataset_options": first.options if isinstance(first, DatasetSpec) else {}}
    if config.corruptions:
        extra["corruptions"] = list(config.corruptions)
    if adapters:
        extra["identities"] = [adapters[m].signature() for m in config.models if m in adapters]
    slug = "_".join(["+".join(config.models), "+".join(protocols), "+".join(Path(d).name for d in datasets)])
    slug = "".join(c if c.isalnum() or c in "+-_." else "-" for c in slug)[:120]
    return Path("runs") / f"{slug}_{stable_hash(config.models, protocols, datasets, extra)[:8]}"


def resolved(config: RunConfig, adapters: Optional[dict[str, Adapter]] = None) -> RunConfig:
    """``config`` checked, with its run directory and worker count decided (the values the manifest records)."""
    check_config(config, adapters or {})
    out = Path(config.out) if config.out is not None else default_run_dir(config, adapters)
    return replace(config, out=out, workers=worker_count(config, adapters))


__all__ = ["ENGINE_NAMES", "OPTIONS", "RunConfig", "check_config", "check_model_kinds", "dataset_entry",
           "default_run_dir", "default_workers", "option_strings", "protocols_of", "resolved", "select_images", "worker_count"]
