"""The video path: a video is the unit of work; a degraded prompt on one frame, propagated, scored by J and F.

:func:`run_video` is what :func:`sambench.execution.runner.run` runs when the protocols are video protocols
(``video: true``). For every video of every dataset, for every condition (clean, then each ``--corruption``
and severity) and model: one adapter **session** (:meth:`VideoAdapter.open`) over the video's frames under that
condition (:class:`CorruptedFrames`: each frame corrupted on first access, keyed per frame), against which
every pending (track, setting, draw) of every protocol is propagated, so the frames are encoded once however
many prompts there are. Each propagation is scored frame by frame (:func:`score_propagation`: J and F of
:mod:`sambench.metrics.video` on the annotated frames other than the prompt frame) and becomes one results row
(``image_id`` = the video id, ``iou`` = mean J) plus one ``tracks`` entry with the per-frame J and F packed
(:data:`sambench.store.TRACKS_COLUMNS`). A track's rows of one (model, condition) are written in one
transaction, so resume works per (track, setting, draw) and a run killed mid-video resumes to identical rows.

Where videos run: in this process, on a process pool (``--workers N``) or on Ray actors (``--engine ray``, the
image path's :class:`~sambench.execution.ray.RayEngine` with :class:`VideoWorker` as its work); each worker
or actor builds its video adapters once and runs whole videos; the parent alone writes.

Prompts (docs/video.md "Protocols"): the image protocols' keyed prompts on the track's **prompt frame**
(:func:`prompt_frame_of`), keyed by (seed, protocol, version, level, draw, dataset, video id, object id);
``gt-mask`` gives the GT mask; ``clicks`` simulates corrective clicks on the prompt frame with the image
protocol's simulator (:func:`sambench.inputs.clicks.run_sequence`) against the adapter's own prompt-frame
prediction (the first mask :meth:`propagate` yields, the propagation then stopped), then propagates the
clicks of each level through the video.

Failures become failed rows with their reason, never dropped: a video that cannot be read or whose Ray
actor died too often (one row per model, protocol and condition, ``object_id`` ''), a session that cannot be
opened, a prompt the model cannot take, a propagation that raises, a mask of the wrong size, a track with no
frame to score.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterable, Iterator, Optional

import numpy as np
from tqdm import tqdm

from sambench.adapters.video import VideoAdapter, build_video_adapter
from sambench.config import ProtocolCard, Setting
from sambench.datasets import DatasetSpec
from sambench.datasets.video import open_video_dataset
from sambench.execution.config import RunConfig, dataset_entry, protocols_of, resolved, select_images
from sambench.execution.engines import pool_context
from sambench.execution.lifetime import die_with_parent
from sambench.execution.ledger import claim_protocols, end_invocation, record_manifest, start_invocation
from sambench.execution.lock import RunLock
from sambench.execution.ray import RayEngine
from sambench.execution.rows import describe
from sambench.execution.sequences import start_box
from sambench.inputs import corruptions as corr
from sambench.inputs.clicks import run_sequence
from sambench.inputs.prompts import Protocol
from sambench.metrics import encode_rle
from sambench.metrics.video import frame_scores, track_scores
from sambench.store import CORRUPTION_IDENTITY, MODEL_IDENTITY, TRACKS_COLUMNS, Row, Store
from sambench.types import Object, Prompt, SambenchError, canonical_json

#: Draws whose per-frame predicted masks are kept (``tracks.masks_rle``, COCO RLE per scored frame): what
#: ``leaderboard --verify`` re-scores frame by frame; the other draws' rows are checked for consistency only.
#: Besides these, the worst and the best draw of each (track, setting) by J&F keep theirs (:func:`kept_masks`:
#: the report's strip of frames). At most 3 draws per (track, setting) bound the store (an RLE per frame is
#: ~0.1-1 kB).
VERIFIED_DRAWS = (0,)
#: Corrupted frames a :class:`CorruptedFrames` keeps (a propagation visits the prompt frame twice at most).
CORRUPTED_CACHE = 2


class CorruptedFrames:
    """A video's frames under one condition (a :class:`~sambench.adapters.video.FrameSource`): frame ``t`` is
    read lazily from the dataset and corrupted with the key (seed, corruption, version, severity, dataset,
    ``VIDEO/FRAME_ID``), so a corrupted frame depends only on its key; clean frames are the dataset's own."""

    def __init__(self, dataset, video_id: str, condition: tuple[str, int], seed: int) -> None:
        self.dataset, self.video_id, self.condition, self.seed = dataset, video_id, tuple(condition), int(seed)
        self.ids = dataset.frame_ids(video_id)
        self.key = (dataset.name, video_id, *self.condition)
        self._cache: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, t: int) -> np.ndarray:
        t = int(t)
        if t in self._cache:
            self._cache.move_to_end(t)
            return self._cache[t]
        frame = self.dataset.frame(self.video_id, t)
        name, severity = self.condition
        if severity:
            frame = corr.corrupt_keyed(frame, name, severity, self.seed, self.dataset.name,
                                       f"{self.video_id}/{self.ids[t]}")
        self._cache[t] = frame
        while len(self._cache) > CORRUPTED_CACHE:
            self._cache.popitem(last=False)
        return frame


class VideoTruth:
    """One video's ground truth, read once: per annotated frame, each object's mask (bit-packed) and void."""

    def __init__(self, dataset, video_id: str) -> None:
        self.annotated = list(dataset.annotated(video_id))
        self._packed: dict[int, dict[str, np.ndarray]] = {}
        self._void: dict[int, Optional[np.ndarray]] = {}
        self.shape: dict[int, tuple[int, int]] = {}
        void = getattr(dataset, "void", None)
        #: YouTube-VOS / MOSE sparse splits: a frame's PNG annotates only the objects in it, so an object missing
        #: from an annotated frame is unannotated there (not scored), not absent (docs/video.md "Datasets")
        self.sparse = bool(getattr(dataset, "sparse", False))
        for t in self.annotated:
            masks = dataset.masks(video_id, t) or {}
            some = next(iter(masks.values()), None)
            v = void(video_id, t) if void is not None else None
            if some is None and v is None:
                continue
            self.shape[t] = tuple((some if some is not None else v).shape)
            self._packed[t] = {oid: np.packbits(np.asarray(m, bool)) for oid, m in masks.items()}
            self._void[t] = v

    def mask(self, t: int, object_id: str) -> np.ndarray:
        """The object's GT mask on annotated frame ``t``; all False where the object is absent."""
        h, w = self.shape[t]
        packed = self._packed[t].get(object_id)
        if packed is None:
            return np.zeros((h, w), bool)
        return np.unpackbits(packed, count=h * w).reshape(h, w).astype(bool)

    def annotates(self, t: int, object_id: str) -> bool:
        """True when frame ``t`` has ground truth for the object: an annotated frame, and in a sparse split one
        whose annotation names the object."""
        return t in self.shape and (not self.sparse or object_id in self._packed[t])

    def void(self, t: int) -> Optional[np.ndarray]:
        return self._void.get(t)

    def present(self, object_id: str) -> list[int]:
        """Annotated frames where the object's mask is not empty."""
        return [t for t in self.shape if object_id in self._packed[t] and self._packed[t][object_id].any()]


def prompt_frame_of(truth: VideoTruth, object_id: str, how: str, first: int) -> tuple[int, str]:
    """(prompt frame, direction) of a track (docs/video.md "Protocols"): ``first`` is the track's first present
    annotated frame, propagated forward; ``largest`` the present annotated frame of largest area (earliest on
    ties) and ``middle`` the middle one of the present annotated frames (index (n - 1) // 2), both propagated
    both ways (frames before them would otherwise go unscored)."""
    if how == "first":
        return first, "forward"
    present = truth.present(object_id) or [first]
    if how == "largest":
        areas = [int(truth.mask(t, object_id).sum()) for t in present]
        return present[int(np.argmax(areas))], "both"
    return present[(len(present) - 1) // 2], "both"


class Scored:
    """What one propagation scored: frames (time order), per-frame J and F, track scores, scores, RLEs, and the
    prediction on the prompt frame (``first``: what the results row keeps as its ``mask_rle``)."""

    def __init__(self, frames: list[int], j: list[float], f: list[float], scores: list, rles: Optional[list],
                 first: Optional[np.ndarray] = None) -> None:
        self.frames, self.j, self.f, self.rles, self.first = frames, j, f, rles, first
        self.track = track_scores(j, f)
        known = [s for s in scores if s is not None and not np.isnan(s)]
        self.score = float(np.mean(known)) if known else None


def score_propagation(outputs: Iterable[tuple[int, Any, Optional[float]]], truth: VideoTruth, object_id: str,
                      prompt_frame: int, keep_masks: bool = False) -> Scored:
    """J and F of every yielded frame that is annotated and not the prompt frame, in time order. A mask of the
    wrong size raises a one-line SambenchError (the row fails)."""
    found: dict[int, tuple[float, float, Optional[dict]]] = {}
    scores, first = [], None
    for t, mask, score in outputs:
        scores.append(score)
        mask = np.asarray(mask, dtype=bool)
        if t in truth.shape and mask.shape != truth.shape[t]:
            raise SambenchError(f"returned a {mask.shape} mask for frame {t} of size {truth.shape[t]}")
        if t == prompt_frame:
            first = mask
            continue
        if not truth.annotates(t, object_id):
            continue
        gt = truth.mask(t, object_id)
        found[t] = (*frame_scores(mask, gt), encode_rle(mask) if keep_masks else None)
    frames = sorted(found)
    return Scored(frames, [found[t][0] for t in frames], [found[t][1] for t in frames], scores,
                  [found[t][2] for t in frames] if keep_masks else None, first)


# ----------------------------------------------------------------------------------------- one video


class VideoTask:
    """One (track, setting, draw) to propagate: its key, its prompt or mask, or the error that prevents it."""

    def __init__(self, card: ProtocolCard, setting: Setting, draw: int, object_id: str) -> None:
        self.card, self.setting, self.draw, self.object_id = card, setting, draw, object_id
        self.prompt: Optional[Prompt] = None
        self.mask: Optional[np.ndarray] = None
        self.error: Optional[str] = None

    def key(self, condition: tuple[str, int]) -> tuple:
        """The task's :data:`~sambench.store.IMAGE_ROW_COLUMNS` (object, protocol, level, draw, corruption, severity)."""
        return (self.object_id, self.card.name, self.setting.level, self.draw, *condition)

    def row(self, model: str, dataset: str, video_id: str, condition: tuple[str, int], **kw: Any) -> Row:
        p = self.prompt
        return Row(model=model, dataset=dataset, image_id=video_id, object_id=self.object_id, protocol=self.card.name,
                   level=self.setting.level, draw=self.draw, protocol_version=self.card.version,
                   level_value=self.setting.level_value, prompt=p.to_json() if p else None,
                   prompt_hash=p.hash() if p else None, corruption=condition[0], severity=condition[1], **kw)


def _first_mask(adapter: VideoAdapter, session: Any, prompt_frame: int, prompt: Prompt) -> tuple[np.ndarray, float]:
    """The adapter's prediction on the prompt frame alone: the first mask of a propagation, which is then stopped."""
    outputs = adapter.propagate(session, prompt_frame, prompt=prompt)
    try:
        t, mask, score = next(outputs)
    finally:
        outputs.close()
    return np.asarray(mask, dtype=bool), float("nan") if score is None else float(score)


def realise(proto: Protocol, task: VideoTask, dataset: str, video_id: str, gt: np.ndarray, prompt_frame: int) -> None:
    """Give a task of a non-interactive protocol its prompt (keyed as module docstring says, on ``gt``: the
    object's mask on the prompt frame), its mask (``gt-mask``: ``gt`` itself) or the error that prevents it."""
    if task.setting.kind == "gt-mask":
        task.mask = gt
        return
    try:
        task.prompt = proto.prompt(task.setting, task.draw, dataset, video_id, Object(task.object_id, gt))
    except SambenchError as exc:
        task.error = f"{dataset}/{video_id}/{task.object_id} frame {prompt_frame}: {exc}"


def track_tasks(protocols: list[Protocol], dataset: str, video_id: str, object_id: str, gt: np.ndarray,
                done: set, condition: tuple[str, int], adapter: VideoAdapter, session_of, prompt_frame: int,
                void: Optional[np.ndarray], model: str = "") -> list[VideoTask]:
    """The pending tasks of one track with their prompts (module docstring). Click protocols run their
    sequence on the prompt frame through ``session_of()`` only when one of their levels is pending; a card's
    ``start`` (click, GT box or keyed noisy box) is the image protocol's (``execution.sequences.start_box``)."""
    model = model or adapter.name
    tasks: list[VideoTask] = []
    for proto in protocols:
        card = proto.card
        pending = [VideoTask(card, s, d, object_id) for s in card.settings for d in range(card.draws_for(s))]
        pending = [t for t in pending if t.key(condition) not in done]
        if not pending:
            continue
        if card.interactive:
            steps = {}
            for draw in sorted({t.draw for t in pending}):
                clicks = card.clicks

                def predict(prompt: Prompt, _logits: Any) -> tuple:
                    mask, score = _first_mask(adapter, session_of(), prompt_frame, prompt)
                    return mask, score, None

                start = start_box(card, clicks, dataset, video_id, Object(object_id, gt), draw)
                for step in run_sequence(gt, predict, clicks.max_clicks, ignore=void, start_box=start,
                                         describe_error=lambda e: describe(e, "prompt-frame prediction")):
                    steps[(draw, str(step.level))] = step
            for t in pending:
                step = steps[(t.draw, t.setting.level)]
                t.prompt, t.error = step.prompt, step.error
        for t in pending:
            if not card.interactive:
                realise(proto, t, dataset, video_id, gt, prompt_frame)
            form = "mask" if t.mask is not None else (t.prompt.form if t.prompt is not None else None)
            if t.error is None and form not in adapter.capabilities:
                t.error = f"model '{model}' cannot take a '{form}' prompt"
        tasks.extend(pending)
    return tasks


def evaluate_video(adapter: VideoAdapter, model: str, dataset, video_id: str, protocols: list[Protocol],
                   done: set, condition: tuple[str, int], seed: int, keep_masks: bool = False,
                   counters: Optional[dict] = None, truth: Optional[dict] = None
                   ) -> Iterator[tuple[list[Row], list[tuple]]]:
    """Per track of ``video_id``: (rows, tracks entries) of ``model``'s pending tasks under ``condition``, one
    session shared by all of them (opened on first need, closed at the end; ``counters["video_frames"]`` gains
    the video's frame count when it is opened). ``truth``: a dict that keeps the video's :class:`VideoTruth`
    (read on first need) across the models and conditions of one video, so its GT is read once."""
    place = f"{dataset.name}/{video_id}" + (f" under {condition[0]}:{condition[1]}" if condition[1] else "")
    truth = {} if truth is None else truth
    try:
        key = (dataset.name, video_id)
        if key not in truth:
            truth.clear()  # one video's GT at a time
            truth[key] = VideoTruth(dataset, video_id)
        tracks = dataset.tracks(video_id)
    except SambenchError as exc:
        yield video_failure_rows(model, dataset.name, video_id, protocols, condition, str(exc), done), []
        return
    frames = CorruptedFrames(dataset, video_id, condition, seed)
    session: dict = {}

    def session_of() -> Any:
        if "s" not in session:
            try:
                session["s"] = adapter.open(frames)
                if counters is not None:
                    counters["video_frames"] = counters.get("video_frames", 0) + len(frames)
            except Exception as exc:  # noqa: BLE001 - recorded as failed rows of every task that needs it
                session["s"] = SambenchError(describe(exc, f"model '{model}' failed to open {place}"))
        if isinstance(session["s"], BaseException):
            raise session["s"]
        return session["s"]

    try:
        for track in tracks:
            yield _track_rows(adapter, model, dataset.name, video_id, track.object_id, track.first_frame,
                              truth[key], protocols, done, condition, session_of, keep_masks, place)
    finally:
        if "s" in session and not isinstance(session["s"], BaseException):
            adapter.close(session["s"])


def video_failure_rows(model: str, dataset: str, video_id: str, protocols: list[Protocol], condition: tuple[str, int],
                       error: str, done: set) -> list[Row]:
    """One failed row per protocol (object ``''``, level ``''``, draw -1) for a video that could not be used at
    all under ``condition`` (unreadable, or its Ray actor died too often), leaving out those already stored."""
    rows = [Row(model=model, dataset=dataset, image_id=video_id, object_id="", protocol=p.name, level="", draw=-1,
                protocol_version=p.card.version, status="failed", error=error, corruption=condition[0],
                severity=condition[1]) for p in protocols]
    return [r for r in rows if ("", r.protocol, "", -1, *condition) not in done]


def _track_rows(adapter, model, dataset_name, video_id, oid, first, truth, protocols, done, condition,
                session_of, keep_masks, place) -> tuple[list[Row], list[tuple]]:
    """Rows and tracks entries of one track's pending tasks, grouped by the prompt frame their protocols ask for."""
    rows, entries = [], []
    by_frame: dict[str, list[Protocol]] = {}
    for p in protocols:  # each protocol prompts its own frame
        by_frame.setdefault(p.card.prompt_frame, []).append(p)
    for how, group in by_frame.items():
        pf, direction = prompt_frame_of(truth, oid, how, first)
        gt = truth.mask(pf, oid)
        try:
            tasks = track_tasks(group, dataset_name, video_id, oid, gt, done, condition, adapter, session_of, pf,
                                truth.void(pf), model)
        except SambenchError as exc:  # the session could not be opened for a click sequence
            tasks = [VideoTask(p.card, s, d, oid) for p in group for s in p.card.settings
                     for d in range(p.card.draws_for(s))]
            tasks = [t for t in tasks if t.key(condition) not in done]
            for t in tasks:
                t.error = str(exc)
        for task in tasks:
            row, entry = _task_row(adapter, model, dataset_name, video_id, task, truth, pf, direction, condition,
                                   session_of, True, place)
            rows.append(row)
            if entry is not None:
                entries.append(entry)
    return rows, entries if keep_masks else kept_masks(entries)


_PROTOCOL, _LEVEL, _DRAW = (TRACKS_COLUMNS.index(c) for c in ("protocol", "level", "draw"))
_JF, _MASKS = TRACKS_COLUMNS.index("jf"), TRACKS_COLUMNS.index("masks_rle")


def kept_masks(entries: list[tuple]) -> list[tuple]:
    """``entries`` (one track's tracks tuples, all with their masks) with ``masks_rle`` kept only for the
    :data:`VERIFIED_DRAWS` and for the worst and the best draw by J&F (the lowest draw on ties) of each
    (protocol, level) among them."""
    keep = set()
    groups: dict[tuple, list[tuple]] = {}
    for e in entries:
        groups.setdefault((e[_PROTOCOL], e[_LEVEL]), []).append(e)
    for group in groups.values():
        scored = sorted((e for e in group if e[_JF] is not None and not np.isnan(e[_JF])), key=lambda e: e[_DRAW])
        if scored:
            keep.add((scored[0][_PROTOCOL], scored[0][_LEVEL], min(scored, key=lambda e: e[_JF])[_DRAW]))
            keep.add((scored[0][_PROTOCOL], scored[0][_LEVEL], max(scored, key=lambda e: e[_JF])[_DRAW]))
    return [e if e[_DRAW] in VERIFIED_DRAWS or (e[_PROTOCOL], e[_LEVEL], e[_DRAW]) in keep
            else e[:_MASKS] + (None,) + e[_MASKS + 1:] for e in entries]


def _task_row(adapter, model, dataset_name, video_id, task: VideoTask, truth, pf, direction, condition, session_of,
              keep_masks, place) -> tuple[Row, Optional[tuple]]:
    def failed(error: str) -> tuple[Row, None]:
        return task.row(model, dataset_name, video_id, condition, status="failed", error=error), None

    if task.error is not None:
        return failed(task.error)
    try:
        session = session_of()
        outputs = adapter.propagate(session, pf, prompt=task.prompt, mask=task.mask, direction=direction)
        scored = score_propagation(outputs, truth, task.object_id, pf, keep_masks)
    except Exception as exc:  # noqa: BLE001 - a failed propagation is a failed row, never lost
        return failed(describe(exc, f"model '{model}' failed to propagate on {place}"))
    if not scored.frames:
        return failed(f"{dataset_name}/{video_id}/{task.object_id}: no annotated frame to score besides the prompt "
                      f"frame {pf}")
    ts = scored.track
    first = scored.first if scored.first is not None else np.zeros(truth.shape[pf], bool)
    row = task.row(model, dataset_name, video_id, condition, iou=ts["J"], biou=None, score=scored.score,
                   gt_area=int(truth.mask(pf, task.object_id).sum()), pred_area=int(first.sum()),
                   mask_rle=canonical_json(encode_rle(first)),
                   extras=canonical_json({"prompt_frame": pf, "direction": direction, "frames": len(scored.frames)}),
                   status="ok")
    key = (model, dataset_name, video_id, task.object_id, task.card.name, task.setting.level, task.draw, *condition)
    entry = key + (pf, direction, canonical_json(scored.frames), canonical_json(scored.j), canonical_json(scored.f),
                   ts["J"], ts["F"], ts["JF"], ts["J_recall"], ts["F_recall"], _nan_none(ts["J_decay"]),
                   _nan_none(ts["F_decay"]), canonical_json(scored.rles) if keep_masks else None)
    return row, entry


def _nan_none(v: float) -> Optional[float]:
    return None if v is None or np.isnan(v) else float(v)


# --------------------------------------------------------------------------------------------- the run


def is_video_run(config: RunConfig) -> bool:
    """True when the run's protocols are video protocols; a run mixing video and image protocols is refused."""
    kinds = {p.card.video for p in protocols_of(config)}
    if len(kinds) > 1:
        raise SambenchError("video protocols (video: true) and image protocols cannot share a run: run them "
                            "separately (each into its own --out)")
    return kinds == {True}


def open_video_spec(spec) -> Any:
    """The video dataset of a :class:`DatasetSpec` (or of its manifest dict, ``DatasetSpec.to_dict``); a dataset
    object is returned as it is."""
    if isinstance(spec, dict):
        spec = DatasetSpec.from_dict(spec)
    if isinstance(spec, DatasetSpec):
        return open_video_dataset(spec.spec, **({"name": spec.name} if spec.name else {}), **spec.options)
    return spec


def _claim(store: Store, config: RunConfig, protocols: list[Protocol], datasets: list, signatures: dict,
           axis: list) -> tuple[dict, dict]:
    for m, sig in signatures.items():
        store.claim_identity("model", m, sig, MODEL_IDENTITY)
    stored = claim_protocols(store, protocols)
    ds_info = {}
    for spec, d in zip(config.datasets, datasets):
        ds_info[d.name] = {"content_hash": d.content_hash(), "n_videos": len(d.videos()), "describe": d.describe(),
                           "notices": [], **({"spec": spec.to_dict()} if isinstance(spec, DatasetSpec)
                                             else {"object": dataset_entry(spec)["object"]})}
        hashes = {v: d.video_hash(v) for v in d.videos()} if hasattr(d, "video_hash") else {}
        store.claim_dataset(d.name, ds_info[d.name]["content_hash"], hashes, lambda v, n=d.name: [f"{n}/{v}"],
                            retry=config.retry_failed)
    for name in dict.fromkeys(n for n, s in axis if s):
        store.claim_identity("corruption", name, {**corr.get(name).identity(), "seed": config.corruption_seed},
                             CORRUPTION_IDENTITY)
    return stored, ds_info


class _Ledger:
    """What :func:`sambench.execution.ledger.record_manifest` reads of a run: its config, protocols and axis."""

    def __init__(self, config: RunConfig, protocols: list[Protocol], axis: list) -> None:
        self.config, self.protocols, self.axis = config, protocols, axis


def run_video(config: RunConfig, adapters: Optional[dict[str, VideoAdapter]] = None) -> dict:
    """Run (or resume) a run of video protocols (module docstring) with the same run directory, lock,
    identities, invocations and manifest as the image path; returns the fields of
    :class:`sambench.execution.runner.RunResult` (which :func:`~sambench.execution.runner.run` builds)."""
    t0 = time.perf_counter()
    built = dict(adapters or {})
    for m in config.models:  # first: an image model in a video run is the error to report
        if m not in built:
            built[m] = build_video_adapter(m, device=config.device, checkpoint=config.checkpoints.get(m),
                                           plugin=config.plugins.get(m), options=config.model_options.get(m))
    config = resolved(config, adapters)
    given = dict(adapters or {})
    work = VideoWorker(config, given, adapters=built)
    del built  # the work holds the driver's adapters (the Ray engine drops them: the actors hold replicas)
    protocols, axis, datasets = work.protocols, work.axis, work.datasets
    signatures = {m: work.adapters[m].signature() for m in config.models}
    ledger = _Ledger(config, protocols, axis)
    engine = video_engine(work, given)  # before the run directory: a refused Ray run leaves nothing
    try:
        with RunLock(config.out).acquire(wait=config.wait_lock), Store(config.out) as store:
            stored, ds_info = _claim(store, config, protocols, datasets, signatures, axis)
            if config.retry_failed:
                store.delete_failed(config.models)
            invocation = start_invocation(store, config)
            for m in config.models:
                invocation["counters"][m] = {"encoder_calls": 0, "propagations": 0, "video_frames": 0}
            try:
                added = _execute(store, work, invocation, given, engine)
            except BaseException as exc:
                end_invocation(store, invocation, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                               time.perf_counter() - t0)
                raise
            end_invocation(store, invocation, "finished", time.perf_counter() - t0)
            manifest = record_manifest(store, ledger, signatures, ds_info, stored, invocation)
            counts, rows, objects = manifest["rows"], store.frame(), store.objects()
    finally:
        if engine is not None:
            engine.close()
    return {"run_dir": config.out, "rows_added": added, "counts": counts, "counters": invocation["counters"],
            "wall_time_s": time.perf_counter() - t0, "manifest": manifest, "rows": rows, "objects": objects}


def condition_groups(config: RunConfig, protocols: list[Protocol],
                     axis: list) -> Iterator[tuple[tuple, list[Protocol]]]:
    """Each condition of the run (clean first) with the protocols that run under it."""
    for condition in axis:
        yield condition, [p for p in protocols if condition[1] == 0 or condition in
                          corr.parse_specs(list(p.card.corruptions) + list(config.corruptions))]


def video_tracks(config: RunConfig, protocols: list[Protocol], axis: list, adapters: dict, ds, video_id: str,
                 dones: dict, truth: dict) -> Iterator[tuple[str, list[Row], list[tuple], dict]]:
    """Every condition and model of one video: per track, ``(model, rows, tracks entries, counter increments)``
    (``dones``: model → the video's stored :data:`~sambench.store.IMAGE_ROW_COLUMNS`)."""
    for condition, group in condition_groups(config, protocols, axis):
        for model in config.models:
            ad, opened = adapters[model], {}
            before = ad.counters()
            for rows, tracks in evaluate_video(ad, model, ds, video_id, group, dones[model], condition,
                                               config.corruption_seed, counters=opened, truth=truth):
                now = ad.counters()
                delta = {k: v - before.get(k, 0) for k, v in now.items()}
                delta["video_frames"] = opened.pop("video_frames", 0)
                before = now
                yield model, rows, tracks, delta


class VideoWorker:
    """Runs whole videos in one process: its own datasets and adapters (built from the config; objects given in
    hand are copies in a pool worker or a Ray actor), one video per job ``(dataset index, video id, dones)``,
    whose result is the list of :func:`video_tracks` items. The driver's instance (``adapters`` and
    ``datasets`` already opened) is also the Ray engine's work object (``unit``, ``lost``, ``release_models``)."""

    #: What one job is (the Ray engine's messages say it).
    unit = "video"

    def __init__(self, config: RunConfig, given: dict, adapters: Optional[dict] = None,
                 datasets: Optional[list] = None) -> None:
        self.config, self.protocols = config, protocols_of(config)
        self.axis = corr.parse_specs([c for p in self.protocols for c in p.card.corruptions] + list(config.corruptions))
        self.datasets = list(datasets) if datasets is not None else [open_video_spec(d) for d in config.datasets]
        self.adapters = dict(adapters if adapters is not None else given)
        for m in config.models:
            if m not in self.adapters:
                self.adapters[m] = build_video_adapter(m, device=config.device, checkpoint=config.checkpoints.get(m),
                                                       plugin=config.plugins.get(m),
                                                       options=config.model_options.get(m))

    def __call__(self, job: tuple) -> list:
        index, video_id, dones = job
        return list(video_tracks(self.config, self.protocols, self.axis, self.adapters, self.datasets[index],
                                 video_id, dones, {}))

    def lost(self, jobs: list[tuple], why: str) -> list[list]:
        """Per job, failed rows (:func:`video_failure_rows`) of every model and condition still to do."""
        out = []
        for index, video_id, dones in jobs:
            name = self.datasets[index].name
            out.append([(m, video_failure_rows(m, name, video_id, group, condition, why, dones[m]), [], {})
                        for condition, group in condition_groups(self.config, self.protocols, self.axis)
                        for m in self.config.models])
        return out

    def release_models(self) -> None:
        """Drop this process's adapters (the Ray driver: the actors hold the replicas)."""
        self.adapters.clear()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


_WORKER: dict = {}


def video_worker_init(config: RunConfig, given: dict) -> None:
    """Pool worker / Ray actor start: end with the parent (even by SIGKILL), leave Ctrl-C to it, build the models
    once."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["work"] = VideoWorker(config, given)


def video_worker_job(job: tuple) -> list:
    """One video on this worker's :class:`VideoWorker` (the process pool's task)."""
    return _WORKER["work"](job)


def video_worker_batch(jobs: list[tuple]) -> list[list]:
    """Videos on this worker's :class:`VideoWorker` (a Ray actor's task: one video per task)."""
    return [_WORKER["work"](job) for job in jobs]


def video_engine(work: VideoWorker, given: dict) -> Optional[Any]:
    """The Ray engine over videos for ``--engine ray`` (else None): started (connected, its actors' room checked,
    the actors created) before the run directory exists, so a refused Ray run leaves nothing."""
    if work.config.engine != "ray":
        return None
    return RayEngine(work, work.config.workers, init=video_worker_init, init_args=(work.config, given),
                     fn=video_worker_batch, batch=1)


def _execute(store: Store, work: VideoWorker, invocation: dict, given: dict, engine: Optional[Any] = None) -> int:
    """Every selected video of every dataset, in this process (one worker), on a pool of ``config.workers``
    processes that each run whole videos (started as :func:`sambench.execution.engines.pool_context` says, each
    with its own adapters; videos come back in order) or on the Ray ``engine``'s actors (in completion order);
    the parent alone writes, a track's rows per transaction."""
    config, added = work.config, 0

    def commit(model: str, rows: list, tracks: list, delta: dict) -> int:
        counters = invocation["counters"][model]
        for k, v in delta.items():
            counters[k] = counters.get(k, 0) + v
        return store.write(rows, invocation=invocation, tracks=tracks)

    pool = None
    if engine is None and ((config.workers or 1) > 1 or config.engine == "process"):  # None: one per CPU
        pool = ProcessPoolExecutor(max_workers=config.workers, initializer=video_worker_init, initargs=(config, given),
                                   mp_context=pool_context())
    try:
        truth: dict = {}  # the current video's GT, read once for all its models and conditions
        for index, ds in enumerate(work.datasets):
            videos = select_images(ds.name, ds.videos(), config.limit, config.shard)
            bar = tqdm(total=len(videos), desc=ds.name, unit="video", disable=not config.progress,
                       dynamic_ncols=True, file=sys.stderr)
            jobs = ((index, v, {m: store.done_keys(m, ds.name, v) for m in config.models}) for v in videos)
            if engine is None and pool is None:
                for _, video_id, dones in jobs:
                    for item in video_tracks(config, work.protocols, work.axis, work.adapters, ds, video_id, dones,
                                             truth):
                        added += commit(*item)
                    bar.update(1)
            else:
                results = engine.map(jobs) if engine is not None else pool.map(video_worker_job, list(jobs))
                for result in results:
                    for item in result:
                        added += commit(*item)
                    bar.update(1)
            bar.close()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return added


__all__ = ["VERIFIED_DRAWS", "CorruptedFrames", "Scored", "VideoTask", "VideoTruth", "VideoWorker", "evaluate_video",
           "condition_groups", "is_video_run", "kept_masks", "open_video_spec", "prompt_frame_of", "realise",
           "run_video", "score_propagation", "track_tasks", "video_engine", "video_failure_rows", "video_tracks",
           "video_worker_batch", "video_worker_init", "video_worker_job"]
