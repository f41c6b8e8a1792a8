"""The Python API: evaluate the objects in hand, read and compare runs.

    import sambench

    run = sambench.run([MyAdapter(), "box-fill"], "noisy-box", "grabcut-sample", out="runs/mine",
                       levels=[0, 0.4], draws=3)
    run.summary()                   # the summary table ``sambench report`` renders (pandas)
    run.report("runs/mine/report")  # tables, figures, index.html, leaderboard.json
    run.compare(sambench.open_run("results/default"))

A **model** is a card name (``"sam-vit-b"``), a :class:`~sambench.config.models.ModelCard`, or an
:class:`~sambench.adapters.base.Adapter` instance; an instance is named and identified by its
``signature()`` (``"model"``, ``"adapter"``, ``"adapter_version"``, ``"weights_sha256"``, options, ...).
A **protocol** is a card name or a :class:`~sambench.config.protocols.ProtocolCard`. A **dataset** is a name or path
(as ``--dataset``), a :class:`~sambench.datasets.DatasetSpec`, or a :class:`~sambench.datasets.Dataset`
instance, identified by its ``name`` and ``content_hash()`` (and described by ``describe()``).

Objects run in this process (one worker) unless every object pickles: then ``workers`` follows the
same policy as the command line (one process per CPU when every model is a CPU baseline). Everything
else — keyed prompts, resume, identities claimed before the first row, failures recorded — is the
runner's, exactly as for ``sambench run``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import pandas as pd

from sambench.adapters.base import Adapter
from sambench.config import ModelCard, ProtocolCard
from sambench.datasets import Dataset, DatasetSpec
from sambench.types import SambenchError

Model = Union[str, ModelCard, Adapter]
ProtocolLike = Union[str, ProtocolCard]
DatasetLike = Union[str, Path, DatasetSpec, Dataset]

#: ``sambench.run`` keyword options: :class:`~sambench.execution.runner.RunConfig` fields.
OPTIONS = ("levels", "draws", "seed", "limit", "shard", "prompts_per_call", "workers", "engine", "device",
           "checkpoints", "plugins", "model_options", "retry_failed", "progress")


class Run:
    """A run directory (or the shards of one run): its rows, summary, report and comparison."""

    def __init__(self, paths: Sequence[Path], datasets: Optional[dict[str, Dataset]] = None,
                 loaded: Optional[tuple[pd.DataFrame, list[dict]]] = None) -> None:
        self.paths = [Path(p) for p in paths]
        self._datasets = dict(datasets or {})
        self._loaded = loaded
        self._summary: Optional[pd.DataFrame] = None

    @property
    def path(self) -> Path:
        return self.paths[0]

    def _load(self) -> tuple[pd.DataFrame, list[dict]]:
        if self._loaded is None:
            from sambench.store import load_runs

            self._loaded = load_runs(self.paths, with_masks=True)
        return self._loaded

    @property
    def manifests(self) -> list[dict]:
        return self._load()[1]

    def rows(self) -> pd.DataFrame:
        """Every stored row (the columns of :class:`sambench.store.Row`, plus ``run``), sorted by key."""
        return self._load()[0].copy()

    def summary(self) -> pd.DataFrame:
        """The summary table (:func:`sambench.analysis.summary.summarize`: fractions, bootstrap CIs), computed once —
        the table ``report`` writes as ``summary.csv`` (there in percent, with the best values marked)."""
        if self._summary is None:
            from sambench.analysis.summary import summarize

            self._summary = summarize(self._load()[0])
        return self._summary.copy()

    def report(self, out: Optional[Union[str, Path]] = None, **options: Any) -> dict[str, Path]:
        """Write the report (default ``<run>/report``); ``options`` as :func:`sambench.report.write_report`.
        Images of in-memory datasets of this session are shown in the grid."""
        from sambench.report.build import write_report

        if self._datasets and "image_loader" not in options:
            options["image_loader"] = self._image
        summary = self.summary() if "n_boot" not in options else None
        return write_report(self.paths, out, loaded=self._load(), summary=summary, **options)

    def _image(self, dataset: str, image_id: str):
        ds = self._datasets.get(dataset)
        return ds.load(image_id) if ds is not None else None

    def compare(self, other: Union["Run", str, Path, Sequence], metric: str = "miou", tol: float = 0.5,
                **options: Any):
        """:func:`sambench.analysis.compare.compare_runs` with this run as the **candidate** and ``other``
        (a Run or run directory) as the baseline; returns the :class:`CompareResult`."""
        from sambench.analysis.compare import compare_runs

        base = other.paths if isinstance(other, Run) else other
        return compare_runs(base, self.paths, metric=metric, tol=tol, **options)

    def __repr__(self) -> str:
        return f"<sambench.Run {', '.join(str(p) for p in self.paths)}>"


def open_run(path: Union[str, Path, Sequence[Union[str, Path]]]) -> Run:
    """The run in directory ``path`` (or a list of shard directories of one run, merged)."""
    from sambench.store import Store

    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    for p in paths:
        Store(p, create=False).close()  # one line if it is not a run directory
    return Run(paths)


# ------------------------------------------------------------------------------------------------- run


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _model(m: Model, options: dict) -> tuple[str, Optional[Adapter]]:
    """(name, adapter object or None for a card found by name)."""
    if isinstance(m, Adapter):
        sig = m.signature()
        return str(sig.get("model") or m.name), m
    if isinstance(m, ModelCard):
        from sambench.adapters import build_adapter

        adapter = build_adapter(m, device=options.get("device", "auto"),
                                checkpoint=(options.get("checkpoints") or {}).get(m.name),
                                plugin=(options.get("plugins") or {}).get(m.name),
                                options=(options.get("model_options") or {}).get(m.name))
        return m.name, adapter
    if isinstance(m, str):
        return m, None
    raise SambenchError(f"model: expected a card name, a ModelCard or an Adapter, got {type(m).__name__}")


def _dataset(d: DatasetLike) -> Union[DatasetSpec, Dataset]:
    if isinstance(d, (DatasetSpec, Dataset)):
        return d
    if isinstance(d, (str, Path)):
        return DatasetSpec(spec=str(d))
    raise SambenchError(f"dataset: expected a name, a path, a DatasetSpec or a Dataset, got {type(d).__name__}")


def _pickles(objects: Iterable[Any]) -> bool:
    try:
        for obj in objects:
            pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - any failure means "keep it in this process"
        return False
    return True


def _name(x: Any) -> str:
    return x.name if isinstance(x, (ProtocolCard, Dataset)) else (x.spec if isinstance(x, DatasetSpec) else str(x))


def _workers(objects: list, workers: Optional[int]) -> Optional[int]:
    """Objects imply one worker unless they all pickle (then None: the runner's policy, or as asked)."""
    if not objects or workers == 1 or _pickles(objects):
        return workers
    if workers is not None:
        raise SambenchError(f"sambench.run: workers={workers} needs every model and dataset object to pickle, "
                            f"and one does not: leave workers unset (one process) or pass names")
    return 1


def run(models: Union[Model, Sequence[Model]], protocols: Union[ProtocolLike, Sequence[ProtocolLike]],
        datasets: Union[DatasetLike, Sequence[DatasetLike]], out: Optional[Union[str, Path]] = None,
        **options: Any) -> Run:
    """Evaluate ``models`` × ``protocols`` × ``datasets`` into ``out`` and return the :class:`Run`.

    ``out`` defaults to a directory under ``./runs`` derived from the names, options and object
    identities (as the command line does), so the same call resumes. ``options`` are :data:`OPTIONS`
    (``levels``, ``draws``, ``seed``, ``limit``, ``shard``, ``prompts_per_call``, ``workers``, ``engine``,
    ``device``, ``checkpoints``, ``plugins``, ``model_options``, ``retry_failed``, ``progress``; dicts are
    keyed by model name).
    """
    from sambench.execution.runner import RunConfig, default_run_dir, run as run_config
    from sambench.store import as_loaded

    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise SambenchError(f"sambench.run: unknown option(s) {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    named = [_model(m, options) for m in _as_list(models)]
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise SambenchError(f"sambench.run: two models are named '{[n for n in names if names.count(n) > 1][0]}'")
    adapters = {n: a for n, a in named if a is not None}
    specs, protos = [_dataset(d) for d in _as_list(datasets)], _as_list(protocols)
    objects = [*adapters.values(), *(d for d in specs if isinstance(d, Dataset)),
               *(p for p in protos if isinstance(p, ProtocolCard))]
    if options.get("levels") is not None:
        options["levels"] = [str(v) for v in _as_list(options["levels"])]
    options["workers"] = _workers(objects, options.get("workers"))
    if out is None:
        extra = {**{k: v for k, v in options.items() if k not in ("progress", "workers", "engine")},
                 "identities": [a.signature() for a in adapters.values()]}
        out = default_run_dir(names, [_name(p) for p in protos], [_name(d) for d in specs], extra)
    config = RunConfig(models=names, protocols=protos, datasets=specs, out=Path(out), **{"progress": False, **options})
    result = run_config(config, adapters=adapters)
    opened = {d.name: d for d in specs if isinstance(d, Dataset)}
    return Run([result.run_dir], datasets=opened, loaded=as_loaded(result.run_dir, result.rows, result.manifest))
