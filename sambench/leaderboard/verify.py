"""``sambench leaderboard --verify``: re-score every stored mask against the ground truth, without any model.

For every run directory: each dataset is reopened from the spec its manifest records
(``manifest["datasets"][name]["spec"]``) and its content hash must equal the recorded one (else the GT is
not the GT the run was scored against). Then, for every successful row, the stored mask is decoded from its
RLE and compared with the object's GT mask: the recomputed IoU and boundary IoU (``sambench.metrics``) must
equal the stored ones within ``tol`` (1e-9: the same computation on the same masks gives the same float),
the stored ``gt_area``/``pred_area`` must equal the pixel counts, the mask must have the image's size, the
stored ``prompt_hash`` must be the hash of the stored prompt, and that prompt must be the one the protocol
draws for the row's key: it is regenerated from the protocol identity the store recorded before its first
row (seed, version, level settings; ``sambench.inputs.prompts``), so a run cannot pass off easier prompts under a
harder level. A click sequence (``kind: clicks``) has no prompt before the model answers: it is replayed
with :func:`sambench.inputs.clicks.run_sequence` from its keyed start and the stored masks in place of the model,
so every stored step must hold exactly the click the rule picks from the previous stored mask. A failed
row carries no number and is not re-scored (it is counted, and scores 0 on the board). Any mismatch fails
verification; nothing is repaired.

The board's aggregates are computed from the same rows at build time, so a verified store gives a verified
board. Stored rows are never changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from sambench.config import ProtocolCard, Setting
from sambench.datasets import DatasetSpec
from sambench.execution.sequences import start_box
from sambench.inputs.clicks import run_sequence
from sambench.metrics import boundary_iou, decode_rle, iou
from sambench.inputs.prompts import Protocol
from sambench.leaderboard.verify_video import reopen_recorded, verify_video_rows
from sambench.store import Store, read_manifest
from sambench.types import Object, Prompt, SambenchError

TOL = 1e-9
MAX_LISTED = 20


@dataclass
class VerifyResult:
    """``checked`` rows re-scored, ``failed_rows`` not re-scorable (failed), ``mismatches`` one line each."""

    checked: int = 0
    failed_rows: int = 0
    mismatches: list[str] = field(default_factory=list)
    n_mismatches: int = 0

    @property
    def ok(self) -> bool:
        return self.n_mismatches == 0

    def add(self, text: str) -> None:
        self.n_mismatches += 1
        if len(self.mismatches) < MAX_LISTED:
            self.mismatches.append(text)

    def summary(self) -> str:
        head = (f"verify: {self.checked} stored mask(s) re-scored against the ground truth and their prompts "
                f"regenerated, "
                f"{self.failed_rows} failed row(s) without a mask")
        if self.ok:
            return head + ": every stored number matches"
        more = self.n_mismatches - len(self.mismatches)
        return "\n".join([head + f": {self.n_mismatches} MISMATCH(ES)"] + ["  " + m for m in self.mismatches] +
                         ([f"  ... and {more} more"] if more else []))


def reopen_dataset(spec: dict):
    """The dataset a manifest's ``spec`` records (``sambench.datasets.DatasetSpec.to_dict()``)."""
    return DatasetSpec.from_dict(spec).open()


def _key(r) -> str:
    return f"{r.model}/{r.dataset}/{r.image_id}/{r.object_id}/{r.protocol}/{r.level}/draw {r.draw}"


def _differs(stored, value: float, tol: float) -> bool:
    return stored is None or not np.isfinite(stored) or abs(float(stored) - value) > tol


def verify_run(run_dir: str | Path, result: Optional[VerifyResult] = None, tol: float = TOL,
               opener: Callable[[dict], object] = reopen_dataset) -> VerifyResult:
    """Re-score every stored mask of one run directory (see the module docstring)."""
    run_dir = Path(run_dir)
    result = result or VerifyResult()
    manifest = read_manifest(run_dir)
    with Store(run_dir, create=False) as st:
        rows = st.frame(with_masks=True)
        ok = rows[rows["status"] == "ok"]
        protocols = {p: recorded_protocol(st, manifest, p) for p in sorted(ok["protocol"].unique())}
        video = {p: (st.identity("protocol", p) or {}).get("prompt_frame", "first") for p in protocols
                 if (st.identity("protocol", p) or {}).get("video")}
        tracks = st.tracks(with_masks=True) if video else None
    result.failed_rows += int((rows["status"] == "failed").sum())
    if video:  # video rows: their numbers are per frame, in the tracks table (sambench/leaderboard/verify_video.py)
        verify_video_rows(run_dir, manifest, ok[ok["protocol"].isin(video)], tracks, protocols, video, result, tol)
        ok = ok[~ok["protocol"].isin(video)]
    for dataset, drows in ok.groupby("dataset", sort=True):
        ds = reopen_recorded(run_dir, manifest, dataset, opener, result)
        if ds is None:
            continue
        for image_id, irows in drows.groupby("image_id", sort=True):
            sample = ds.load(image_id)
            gts = {str(o.id): np.asarray(o.mask, dtype=bool) for o in sample.objects}
            clicked = irows["protocol"].map(lambda p: protocols.get(p) is not None and protocols[p].card.clicks is not None)
            for r in irows.itertuples(index=False):
                _check_row(run_dir, r, gts.get(str(r.object_id)), result, tol)
            for r in irows[~clicked].itertuples(index=False):
                _check_prompt(run_dir, r, protocols.get(r.protocol), gts.get(str(r.object_id)), result)
            objects = {str(o.id): o for o in sample.objects}
            for key, seq in irows[clicked].groupby(["model", "protocol", "object_id", "draw", "corruption", "severity"]):
                if str(key[2]) in objects:
                    _check_click_sequence(run_dir, seq, protocols[key[1]], objects[str(key[2])], result)
    return result


def recorded_protocol(store: Store, manifest: dict, name: str) -> Optional[Protocol]:
    """The protocol as the run recorded it (the store's identity, else the manifest's), or None."""
    ident = store.identity("protocol", name)
    if ident is None:
        ident = dict(((manifest.get("protocols") or {}).get(name) or {}).get("identity") or {})
        if isinstance(ident.get("settings"), list):
            ident["settings"] = {str(d.get("level")): d for d in ident["settings"] if isinstance(d, dict)}
    try:
        settings = tuple(Setting.from_dict({**d, "level": level}, name) for level, d in ident["settings"].items())
        card = ProtocolCard(name=name, version=int(ident["version"]), description="", settings=settings,
                            draws=int(ident["draws"]), seed=int(ident["seed"]),
                            mask_selection=str(ident.get("mask_selection")),
                            preprocessing=str(ident.get("preprocessing")), path=None,
                            replay=ident.get("replay"))  # a replay protocol's prompts: its recorded file
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return Protocol(card)


def _check_prompt(run_dir: Path, r, protocol: Optional[Protocol], gt: Optional[np.ndarray],
                  result: VerifyResult) -> None:
    where = f"{run_dir}: {_key(r)}"
    if gt is None:
        return
    if protocol is None:
        result.add(f"{where}: the run records no identity of protocol '{r.protocol}': its prompts cannot be regenerated")
        return
    if int(r.protocol_version) != protocol.card.version:
        result.add(f"{where}: stored protocol_version {r.protocol_version}, the run recorded version "
                   f"{protocol.card.version}")
        return
    try:
        setting = protocol.card.setting(str(r.level))
        expected = protocol.prompt(setting, int(r.draw), str(r.dataset), str(r.image_id), Object(str(r.object_id), gt))
    except SambenchError as exc:
        result.add(f"{where}: its prompt cannot be regenerated ({exc})")
        return
    if expected.hash() != r.prompt_hash:
        result.add(f"{where}: stored prompt {r.prompt} is not the one protocol '{r.protocol}' v{protocol.card.version} "
                   f"(seed {protocol.card.seed}) draws: {expected.to_json()}")


def _check_click_sequence(run_dir: Path, seq, protocol: Protocol, obj: Object, result: VerifyResult) -> None:
    """The stored (successful) steps of one click sequence are the ones the click rule gives when the stored
    masks stand in for the model: :func:`sambench.inputs.clicks.run_sequence`, replayed."""
    card, clicks = protocol.card, protocol.card.clicks
    seq = seq.sort_values("level_value")
    first = seq.iloc[0]
    try:
        box = start_box(card, clicks, str(first.dataset), str(first.image_id), obj, int(first.draw))
    except SambenchError as exc:
        result.add(f"{run_dir}: {_key(first)}: its start box cannot be regenerated ({exc})")
        return
    stored = {int(r.level_value): r for r in seq.itertuples(index=False)}
    level = iter(clicks.levels)

    def replay(prompt: Prompt, _logits):
        lv = next(level)
        if lv not in stored:
            raise SambenchError("no stored mask")
        return decode_rle(json.loads(stored[lv].mask_rle)), 0.0, None

    steps = run_sequence(obj.mask, replay, clicks.max_clicks, ignore=obj.ignore, start_box=box)
    for step in steps:
        r = stored.get(step.level)
        if r is not None and step.error is None and step.prompt.hash() != r.prompt_hash:
            result.add(f"{run_dir}: {_key(r)}: stored prompt {r.prompt} is not the step the click rule gives after the "
                       f"stored masks: {step.prompt.to_json()}")
            return


def _check_row(run_dir: Path, r, gt: Optional[np.ndarray], result: VerifyResult, tol: float) -> None:
    result.checked += 1
    where = f"{run_dir}: {_key(r)}"
    if gt is None:
        result.add(f"{where}: the dataset has no object '{r.object_id}'")
        return
    if not isinstance(r.mask_rle, str) or not r.mask_rle:
        result.add(f"{where}: no stored mask")
        return
    try:
        mask = decode_rle(json.loads(r.mask_rle))
    except (ValueError, TypeError, KeyError) as exc:
        result.add(f"{where}: stored mask is not a valid RLE ({type(exc).__name__})")
        return
    if mask.shape != gt.shape:
        result.add(f"{where}: stored mask is {mask.shape}, the image is {gt.shape}")
        return
    v = iou(mask, gt)
    if _differs(r.iou, v, tol):
        result.add(f"{where}: stored IoU {r.iou!r}, the stored mask scores {v!r}")
    b = boundary_iou(mask, gt)
    if _differs(r.biou, b, tol):
        result.add(f"{where}: stored boundary IoU {r.biou!r}, the stored mask scores {b!r}")
    if r.pred_area is not None and not (isinstance(r.pred_area, float) and np.isnan(r.pred_area)) \
            and int(r.pred_area) != int(mask.sum()):
        result.add(f"{where}: stored pred_area {int(r.pred_area)}, the stored mask has {int(mask.sum())} pixels")
    if r.gt_area is not None and not (isinstance(r.gt_area, float) and np.isnan(r.gt_area)) \
            and int(r.gt_area) != int(gt.sum()):
        result.add(f"{where}: stored gt_area {int(r.gt_area)}, the ground truth has {int(gt.sum())} pixels")
    if isinstance(r.prompt, str) and r.prompt:
        try:
            h = Prompt.from_json(r.prompt).hash()
        except (ValueError, TypeError, KeyError):
            h = None
        if h != r.prompt_hash:
            result.add(f"{where}: stored prompt_hash is not the hash of the stored prompt")


def verify_runs(run_dirs: Iterable[str | Path], tol: float = TOL,
                opener: Callable[[dict], object] = reopen_dataset) -> VerifyResult:
    """:func:`verify_run` over several run directories, into one result."""
    result = VerifyResult()
    for d in run_dirs:
        verify_run(d, result, tol=tol, opener=opener)
    return result
