"""``leaderboard --verify`` for the rows of video protocols (docs/video.md "Runs and store").

A video row's numbers live in its ``tracks`` entry. For every ok row of a video protocol, against the video
dataset reopened from the manifest's spec (its content hash must equal the recorded one):

* the entry exists, and its numbers agree with each other within ``tol``: the row's ``iou`` is ``j_mean``,
  ``j_mean``/``f_mean`` are the means of ``j_frames``/``f_frames``, ``jf`` is their mean, recall and decay
  are :func:`sambench.metrics.video.track_scores` of the per-frame values;
* the prompt frame is the one the protocol's ``prompt_frame`` rule picks, the scored frames are the annotated
  frames other than it on the propagated side, ``gt_area`` is the GT area there and ``pred_area`` the stored
  prompt-frame mask's;
* the stored prompt is the one the protocol draws for the row's key on that frame (box and points levels;
  ``gt-mask`` has none; a click sequence depends on the model's own prompt-frame masks, which are not stored,
  so its prompt is not regenerated);
* where the per-frame masks are kept (``masks_rle``: the draws of
  :data:`sambench.execution.video.VERIFIED_DRAWS`), every frame's J and F are recomputed from them and must
  equal the stored values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from sambench.analysis.video import TRACK_STATS
from sambench.execution.video import VideoTruth, open_video_spec, prompt_frame_of
from sambench.inputs.prompts import Protocol
from sambench.metrics import decode_rle
from sambench.metrics.video import frame_scores, track_scores
from sambench.store import KEY_COLUMNS
from sambench.types import Object, Prompt, SambenchError


def _far(a, b, tol: float) -> bool:
    a = float("nan") if a is None else float(a)
    b = float("nan") if b is None else float(b)
    if np.isnan(a) or np.isnan(b):
        return np.isnan(a) != np.isnan(b)
    return abs(a - b) > tol


def reopen_recorded(run_dir: Path, manifest: dict, dataset: str, opener, result, kind: str = "dataset"):
    """The dataset a run recorded, reopened by ``opener`` from its manifest spec; None, with one line added to
    ``result``, when its content hash differs here (its rows cannot be checked against this ground truth).
    A missing spec or a dataset that cannot be reopened is a one-line error. Image and video rows alike."""
    entry = (manifest.get("datasets") or {}).get(dataset) or {}
    if not isinstance(entry.get("spec"), dict):
        raise SambenchError(f"{run_dir}: the manifest records no spec for dataset '{dataset}': cannot re-score it")
    try:
        ds = opener(entry["spec"])
    except SambenchError as exc:
        raise SambenchError(f"{run_dir}: cannot reopen {kind} '{dataset}' to verify it ({exc})") from None
    recorded, found = entry.get("content_hash"), ds.content_hash()
    if recorded != found:
        result.add(f"{run_dir}: dataset '{dataset}' content hash is {str(found)[:12]} here, the run recorded "
                   f"{str(recorded)[:12]}: its rows cannot be checked against this ground truth")
        return None
    return ds


def verify_video_rows(run_dir: Path, manifest: dict, ok: pd.DataFrame, tracks: pd.DataFrame,
                      protocols: dict[str, Optional[Protocol]], prompt_frames: dict[str, str], result,
                      tol: float) -> None:
    """Check ``ok`` (ok rows of video protocols) against ``tracks`` (with masks) and the reopened datasets,
    adding one line per mismatch to ``result`` (module docstring)."""
    entries = {tuple(r[c] for c in KEY_COLUMNS): r for r in tracks.to_dict("records")}
    for dataset, drows in ok.groupby("dataset", sort=True):
        ds = reopen_recorded(run_dir, manifest, dataset, open_video_spec, result, "video dataset")
        if ds is None:
            continue
        for video_id, vrows in drows.groupby("image_id", sort=True):
            truth = VideoTruth(ds, str(video_id))
            first = {t.object_id: t.first_frame for t in ds.tracks(str(video_id))}
            for r in vrows.itertuples(index=False):
                result.checked += 1
                where = f"{run_dir}: {r.model}/{dataset}/{video_id}/{r.object_id}/{r.protocol}/{r.level}/draw {r.draw}"
                e = entries.get(tuple(getattr(r, c) for c in KEY_COLUMNS))
                if e is None:
                    result.add(f"{where}: no tracks entry (per-frame J/F) for this row")
                    continue
                if str(r.object_id) not in first:
                    result.add(f"{where}: the dataset has no track of object '{r.object_id}'")
                    continue
                _check(where, r, e, truth, first[str(r.object_id)], protocols.get(r.protocol),
                       prompt_frames.get(r.protocol, "first"), result, tol)


def _check(where: str, r, e: dict, truth: VideoTruth, first: int, protocol: Optional[Protocol], how: str, result,
           tol: float) -> None:
    oid = str(r.object_id)
    pf, direction = prompt_frame_of(truth, oid, how, first)
    if int(e["prompt_frame"]) != pf or e["direction"] != direction:
        result.add(f"{where}: stored prompt frame {e['prompt_frame']} ({e['direction']}), the protocol's rule "
                   f"'{how}' picks {pf} ({direction})")
        return
    frames, j, f = json.loads(e["frames"]), json.loads(e["j_frames"]), json.loads(e["f_frames"])
    side = [t for t in sorted(truth.shape) if t != pf and (direction == "both" or t > pf) and truth.annotates(t, oid)]
    if frames != side:
        result.add(f"{where}: stored scored frames {frames}, the annotated frames besides the prompt frame are {side}")
        return
    stats = track_scores(j, f)
    for col, name in TRACK_STATS.items():
        if _far(e[col], stats[name], tol):
            result.add(f"{where}: stored {col} {e[col]!r}, its per-frame values give {stats[name]!r}")
    if _far(r.iou, e["j_mean"], tol):
        result.add(f"{where}: stored iou {r.iou!r} is not the track's mean J {e['j_mean']!r}")
    gt = truth.mask(pf, oid)
    if int(r.gt_area) != int(gt.sum()):
        result.add(f"{where}: stored gt_area {int(r.gt_area)}, the prompt frame's GT has {int(gt.sum())} pixels")
    try:
        first_mask = decode_rle(json.loads(r.mask_rle))
        if first_mask.shape != gt.shape or int(first_mask.sum()) != int(r.pred_area):
            result.add(f"{where}: stored prompt-frame mask does not match pred_area or the frame's size")
    except (ValueError, TypeError, KeyError):
        result.add(f"{where}: stored prompt-frame mask is not a valid RLE")
    if isinstance(r.prompt, str) and r.prompt and protocol is not None and not protocol.card.interactive:
        try:
            expected = protocol.prompt(protocol.card.setting(str(r.level)), int(r.draw), str(r.dataset),
                                       str(r.image_id), Object(oid, gt))
        except SambenchError as exc:
            result.add(f"{where}: its prompt cannot be regenerated ({exc})")
        else:
            if Prompt.from_json(r.prompt) != expected:
                result.add(f"{where}: stored prompt {r.prompt} is not the one protocol '{r.protocol}' draws: "
                           f"{expected.to_json()}")
    if isinstance(e.get("masks_rle"), str) and e["masks_rle"]:
        masks = json.loads(e["masks_rle"])
        for t, rle, jt, ft in zip(frames, masks, j, f):
            jm, fm = frame_scores(decode_rle(rle), truth.mask(t, oid))
            if _far(jt, jm, tol) or _far(ft, fm, tol):
                result.add(f"{where}: frame {t}: stored J/F {jt!r}/{ft!r}, the stored mask scores {jm!r}/{fm!r}")


__all__ = ["reopen_recorded", "verify_video_rows"]
