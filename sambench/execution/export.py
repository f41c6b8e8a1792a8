"""``sambench prompts export``: the realised prompts of a protocol on a dataset, as JSON.

The document lists every (image, object, level, draw) with its prompt and sha256, plus
``prompt_hash`` — the same order-independent hash a run records in its manifest
(``manifest["protocols"][name]["prompt_hash"][dataset]``), so anyone can check that two machines, or a
run and a hand-written evaluation, used byte-identical prompts.

A video protocol (``video: true``) on a video dataset exports, per (video, track, level, draw), the prompt on
the track's prompt frame (``prompt_frame``: its index, ``frame_id``: its name, ``direction``: how it is
propagated), with ``image_id`` the video id as the results rows store it; its ``prompt_hash`` is the one a
video run records. A ``gt-mask`` level has no prompt to export (the prompt is the GT mask): its entries say
``"mask": "gt"`` and are not part of the hash, as their rows are not.
"""

from __future__ import annotations

from typing import Optional

import sambench
from sambench.config import load_protocol_card, with_overrides
from sambench.datasets import open_dataset
from sambench.execution.video import VideoTask, VideoTruth, open_video_spec, prompt_frame_of, realise
from sambench.inputs.prompts import Protocol, prompt_set_hash
from sambench.inputs.replay import check_dataset, resolve
from sambench.types import SambenchError


def export_prompts(protocol: str, dataset, levels: Optional[list[str]] = None, draws: Optional[int] = None,
                   seed: Optional[int] = None, limit: Optional[int] = None) -> dict:
    """``dataset``: a name/path, or a :class:`sambench.datasets.DatasetSpec` (as a run records it)."""
    card = load_protocol_card(protocol)
    if card.interactive:
        raise SambenchError(f"protocol '{card.name}' is interactive: each click depends on the model's previous "
                            f"mask, so its prompts exist only in a run's rows (they cannot be exported before one)")
    card = with_overrides(resolve(card), levels=levels, draws=draws, seed=seed)
    proto = Protocol(card)
    if card.video:
        ds = open_video_spec(dataset if hasattr(dataset, "open") else str(dataset))
        prompts, failures = _video_prompts(proto, ds, limit)
    else:
        ds = dataset.open() if hasattr(dataset, "open") else open_dataset(dataset)
        prompts, failures = _image_prompts(proto, ds, limit)
    hashed = [p for p in prompts if "prompt_hash" in p]
    return {
        "sambench_version": sambench.__version__,
        "protocol": card.identity(),
        "dataset": {"name": ds.name, "content_hash": ds.content_hash()},
        "prompt_hash": prompt_set_hash((p["image_id"], p["object_id"], p["level"], p["draw"], p["prompt_hash"])
                                       for p in hashed),
        "failed": len(failures),
        "failures": failures,
        "prompts": prompts,
    }


def _image_prompts(proto: Protocol, ds, limit: Optional[int]) -> tuple[list, list]:
    card = proto.card
    if card.replayed:
        check_dataset(card, ds)
    prompts, failures = [], []
    for image_id in ds.ids()[:limit] if limit else ds.ids():
        try:
            sample = ds.load(image_id)
        except SambenchError as exc:
            failures.append({"image_id": image_id, "error": str(exc)})
            continue
        for t in proto.tasks(ds.name, image_id, sample.objects):
            entry = {"dataset": ds.name, "image_id": image_id, "object_id": t.object_id, "level": t.level,
                     "draw": t.draw}
            if t.prompt is None:
                failures.append({**entry, "error": t.error})
            else:
                prompts.append({**entry, "prompt": t.prompt.to_dict(), "prompt_hash": t.prompt.hash()})
    return prompts, failures


def _video_prompts(proto: Protocol, ds, limit: Optional[int]) -> tuple[list, list]:
    """Per video, track, level and draw (a video run's keys and order), the prompt on the track's prompt frame."""
    card = proto.card
    prompts, failures = [], []
    for video_id in ds.videos()[:limit] if limit else ds.videos():
        try:
            truth, tracks, frame_ids = VideoTruth(ds, video_id), ds.tracks(video_id), ds.frame_ids(video_id)
        except SambenchError as exc:
            failures.append({"image_id": video_id, "error": str(exc)})
            continue
        for track in tracks:
            pf, direction = prompt_frame_of(truth, track.object_id, card.prompt_frame, track.first_frame)
            gt = truth.mask(pf, track.object_id)
            for setting in card.settings:
                for draw in range(card.draws_for(setting)):
                    task = VideoTask(card, setting, draw, track.object_id)
                    realise(proto, task, ds.name, video_id, gt, pf)
                    entry = {"dataset": ds.name, "image_id": video_id, "object_id": track.object_id,
                             "level": setting.level, "draw": draw, "prompt_frame": pf, "frame_id": frame_ids[pf],
                             "direction": direction}
                    if task.error is not None:
                        failures.append({**entry, "error": task.error})
                    elif task.prompt is None:
                        prompts.append({**entry, "mask": "gt"})
                    else:
                        prompts.append({**entry, "prompt": task.prompt.to_dict(), "prompt_hash": task.prompt.hash()})
    return prompts, failures
