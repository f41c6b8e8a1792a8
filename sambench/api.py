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

``sambench.run`` is the front door of every run: the ``sambench run`` command parses its flags into the same
options, calls :func:`configure` (the options checked, the run directory and worker count decided by
:mod:`sambench.execution.config`) and executes the result with :func:`sambench.execution.runner.run`, as
:func:`run` does. So every option of the command line is an option here, under its RunConfig name
(:data:`OPTIONS`), and the same run lands in the same directory from both. Objects run in this process (one
worker) unless every object pickles: then ``workers`` follows the command line's policy (one process per
CPU when every model is a CPU baseline). Everything else — keyed prompts, resume, identities claimed
before the first row, failures recorded — is the runner's, exactly as for ``sambench run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import pandas as pd

from sambench.adapters import build_adapter
from sambench.adapters.base import Adapter
from sambench.adapters.video import VideoAdapter
from sambench.analysis.agree import AgreeResult, agree_runs
from sambench.analysis.compare import compare_runs
from sambench.analysis.summary import per_object, summarize
from sambench.analysis.video import video_summary
from sambench.config import ModelCard, ProtocolCard, resolve_model_name
from sambench.datasets import Dataset, DatasetSpec
from sambench.datasets.video import VideoDataset
from sambench.execution.config import OPTIONS, RunConfig, resolved
from sambench.execution.runner import run as execute
from sambench.store import Store, as_loaded, load_objects, load_runs, load_tracks
from sambench.types import SambenchError

Model = Union[str, ModelCard, Adapter, VideoAdapter]
ProtocolLike = Union[str, ProtocolCard]
DatasetLike = Union[str, Path, DatasetSpec, Dataset, VideoDataset]

__all__ = ["OPTIONS", "Run", "agree", "configure", "execute", "open_run", "run", "verify"]


class Run:
    """A run directory (or the shards of one run): its rows, summary, report and comparison."""

    def __init__(self, paths: Sequence[Path], datasets: Optional[dict[str, Dataset]] = None,
                 loaded: Optional[tuple[pd.DataFrame, list[dict]]] = None,
                 stored: Optional[pd.DataFrame] = None) -> None:
        """``loaded`` (:func:`sambench.store.load_runs` of ``paths``) and ``stored``
        (:func:`sambench.store.load_objects` of them) spare reading the runs again."""
        self.paths = [Path(p) for p in paths]
        self._datasets = dict(datasets or {})
        self._loaded, self._stored = loaded, stored
        self._summary: Optional[pd.DataFrame] = None
        self._objects: Optional[pd.DataFrame] = None

    @property
    def path(self) -> Path:
        return self.paths[0]

    def _load(self) -> tuple[pd.DataFrame, list[dict]]:
        if self._loaded is None:
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
            self._summary = summarize(self._load()[0], objects=self._per_object())
        return self._summary.copy()

    def video_summary(self) -> pd.DataFrame:
        """The video summary (:func:`sambench.analysis.video.video_summary`: J, F, J&F per level in percent, the
        unit the track) of the runs' video rows; empty when they hold none (docs/video.md "Reports")."""
        return video_summary(self._load()[0], load_tracks(self.paths))

    def _per_object(self) -> pd.DataFrame:
        """:func:`sambench.analysis.summary.per_object` of the rows, with the stability the runs stored; once."""
        if self._objects is None:
            stored = self._stored if self._stored is not None else load_objects(self.paths)
            self._objects = per_object(self._load()[0], stored)
        return self._objects

    def report(self, out: Optional[Union[str, Path]] = None, **options: Any) -> dict[str, Path]:
        """Write the report (default ``<run>/report``); ``options`` as :func:`sambench.report.write_report`.
        Images of in-memory datasets of this session are shown in the grid."""
        from sambench.report.build import write_report  # lazy: matplotlib only when a report is asked for

        if self._datasets and "image_loader" not in options:
            options["image_loader"] = self._image
        summary = self.summary() if "n_boot" not in options else None
        return write_report(self.paths, out, loaded=self._load(), summary=summary, objects=self._per_object(),
                            **options)

    def _image(self, dataset: str, image_id: str):
        ds = self._datasets.get(dataset)
        return ds.load(image_id) if ds is not None else None

    def compare(self, other: Union["Run", str, Path, Sequence], metric: str = "miou", tol: float = 0.5,
                **options: Any):
        """:func:`sambench.analysis.compare.compare_runs` with this run as the **candidate** and ``other``
        (a Run or run directory) as the baseline; returns the :class:`CompareResult`."""
        base = other.paths if isinstance(other, Run) else other
        return compare_runs(base, self.paths, metric=metric, tol=tol, **options)

    def __repr__(self) -> str:
        return f"<sambench.Run {', '.join(str(p) for p in self.paths)}>"


def open_run(path: Union[str, Path, Sequence[Union[str, Path]]]) -> Run:
    """The run in directory ``path`` (or a list of shard directories of one run, merged)."""
    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    for p in paths:
        Store(p, create=False).close()  # one line if it is not a run directory
    return Run(paths)


# ------------------------------------------------------------------------------------------------- run


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _model(m: Model, options: dict) -> tuple[str, Optional[Adapter]]:
    """(name, adapter object or None for a card found by name; a family name stands for its default variant)."""
    if isinstance(m, (Adapter, VideoAdapter)):  # a video adapter runs video protocols (sambench/execution/video.py)
        sig = m.signature()
        return str(sig.get("model") or m.name), m
    if isinstance(m, ModelCard):
        adapter = build_adapter(m, device=options.get("device", "auto"),
                                checkpoint=(options.get("checkpoints") or {}).get(m.name),
                                plugin=(options.get("plugins") or {}).get(m.name),
                                options=(options.get("model_options") or {}).get(m.name))
        return m.name, adapter
    if isinstance(m, str):
        return resolve_model_name(m), None
    raise SambenchError(f"model: expected a card name, a ModelCard or an Adapter, got {type(m).__name__}")


def _dataset(d: DatasetLike) -> Union[DatasetSpec, Dataset]:
    if isinstance(d, (DatasetSpec, Dataset, VideoDataset)):
        return d
    if isinstance(d, (str, Path)):
        return DatasetSpec(spec=str(d))
    raise SambenchError(f"dataset: expected a name, a path, a DatasetSpec or a Dataset, got {type(d).__name__}")


def configure(models: Union[Model, Sequence[Model]], protocols: Union[ProtocolLike, Sequence[ProtocolLike]],
              datasets: Union[DatasetLike, Sequence[DatasetLike]], out: Optional[Union[str, Path]] = None,
              **options: Any) -> tuple[RunConfig, dict[str, Adapter]]:
    """The run :func:`run` executes, without executing it: its :class:`~sambench.execution.config.RunConfig`,
    checked, with the run directory and worker count decided, and the adapter objects by model name.
    ``options`` are :data:`OPTIONS`; ``progress`` defaults to off here."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise SambenchError(f"sambench.run: unknown option(s) {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    named = [_model(m, options) for m in _as_list(models)]
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise SambenchError(f"sambench.run: two models are named '{[n for n in names if names.count(n) > 1][0]}'")
    adapters = {n: a for n, a in named if a is not None}
    if options.get("levels") is not None:
        options["levels"] = [str(v) for v in _as_list(options["levels"])]
    if options.get("corruptions") is not None:
        options["corruptions"] = [str(v) for v in _as_list(options["corruptions"])]
    if options.get("cache_dir") is not None:
        options["cache_dir"] = str(options["cache_dir"])
    config = RunConfig(models=names, protocols=_as_list(protocols), datasets=[_dataset(d) for d in _as_list(datasets)],
                       out=None if out is None else Path(out), **{"progress": False, **options})
    return resolved(config, adapters), adapters


def run(models: Union[Model, Sequence[Model]], protocols: Union[ProtocolLike, Sequence[ProtocolLike]],
        datasets: Union[DatasetLike, Sequence[DatasetLike]], out: Optional[Union[str, Path]] = None,
        **options: Any) -> Run:
    """Evaluate ``models`` × ``protocols`` × ``datasets`` into ``out`` and return the :class:`Run`.

    ``out`` defaults to the directory ``sambench run`` would use for the same run
    (:func:`sambench.execution.config.default_run_dir`: under ``./runs``, derived from the names, options and
    object identities), so the same call resumes. ``options`` are :data:`OPTIONS`, the RunConfig fields under
    the names of the command line's flags (``levels``, ``draws``, ``seed``, ``limit``, ``shard``,
    ``prompts_per_call``, ``workers``, ``engine``, ``device``, ``checkpoints``, ``plugins``, ``model_options``,
    ``retry_failed``, ``progress``, ``ray_address``, ``gpus_per_worker``, ``cache_dir``, ``cache_max_gb``,
    ``cache_dtype``, ``encode_batch``, ``prefetch``, ``wait_lock``, ``scoring_threads``, ``corruptions``;
    dicts are keyed by model name); docs/python-api.md describes each.
    """
    config, adapters = configure(models, protocols, datasets, out, **options)
    result = execute(config, adapters=adapters)
    opened = {d.name: d for d in config.datasets if isinstance(d, Dataset)}
    return Run([result.run_dir], datasets=opened, loaded=as_loaded(result.run_dir, result.rows, result.manifest),
               stored=result.objects)


# ------------------------------------------------------------------------------------- trust


def verify(paths: Union[str, Path, Sequence[Union[str, Path]]], rerun: int = 0, checkpoints: Sequence[str] = (),
           min_iou: Optional[float] = None, device: str = "auto"):
    """``sambench verify`` / ``leaderboard --verify``: re-score every stored mask of the runs under ``paths``
    (run directories or directories holding them) and, with ``rerun=N``, re-run each recorded model on N keyed
    images and compare its masks with the stored ones (:mod:`sambench.leaderboard.rerun`; ``checkpoints``:
    extra weight files to look for the recorded hashes in, ``PATH`` or ``MODEL=PATH``; ``min_iou``: the
    agreement every re-run mask must reach, default by the recorded dtype). Returns the
    :class:`sambench.leaderboard.rerun.Verification`."""
    # lazy: the leaderboard package loads the report's renderers, which `import sambench.api` does not need
    from sambench.leaderboard import find_runs
    from sambench.leaderboard.rerun import verify as verify_runs  # lazy: as above

    return verify_runs(find_runs(_as_list(paths)), rerun=rerun, checkpoints=checkpoints, min_iou=min_iou,
                       device=device)


def agree(run_a: Union[str, Path, Sequence[Union[str, Path]]], run_b: Union[str, Path, Sequence[Union[str, Path]]],
          out: Optional[Union[str, Path]] = None, min_iou: Optional[float] = None, n_worst: int = 8,
          n_boot: int = 1000) -> AgreeResult:
    """``sambench agree``: the masks of two runs on the same prompts, compared prompt by prompt
    (:mod:`sambench.analysis.agree`); with ``out``, its files (:func:`sambench.report.agree.write_agreement`:
    agree.csv, agree_summary.csv/.md, agree.json and the grid of the ``n_worst`` least-agreeing prompts)."""
    result = agree_runs(run_a, run_b, min_iou=min_iou, n_boot=n_boot)
    if out is not None:
        from sambench.report.agree import write_agreement  # lazy: matplotlib only when files are asked for

        write_agreement(result, out, n_worst=n_worst)
    return result
