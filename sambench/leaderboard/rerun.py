"""``--verify --rerun N``: re-run the recorded model on N stored images and compare its masks with the stored ones.

The plain ``--verify`` (:mod:`sambench.leaderboard.verify`) proves that every stored number is what its stored
mask scores and that every prompt is the one its key draws; it cannot tell which model made the masks (a
store of GT masks passes it). Re-running closes that gap. For every model of a run directory:

1. **Images**: N of the images the model holds rows for, drawn without replacement by
   ``keyed_rng("rerun", <run identity>, model, N)``, where the run identity is the stable hash of the
   manifest's model signature, protocol identities and dataset content hashes: the same store gives the same
   sample on any machine, and a different store (other weights, other prompts) another one.
2. **Model**: rebuilt from its card (``manifest.models[m]``'s name) with the options the run recorded
   (``config.model_options``) and its weights found by the recorded hash (``weights_sha256``): a 64-hex
   SHA-256 is looked for among the ``--checkpoint`` files given here, the path the run recorded, the card's
   file in ``$SAMBENCH_CHECKPOINTS`` and every ``.pt``/``.pth``/``.safetensors``/``.bin`` file there
   (digests cached, :func:`sambench.adapters.weights.file_digests`); a card without a checkpoint file
   (``hf:<dir>`` and the transformers cards, whose identity hashes the directory's weight files) loads its
   own weights; ``random-init:<seed>`` is rebuilt from the seed, with no checkpoint (``sam-tiny`` and the other random-weight cards). The rebuilt adapter's
   identity (``sambench.store.MODEL_IDENTITY``: adapter, version, weights, variant, options, plug-in) must
   equal the recorded one. Weights not found, or another identity, is **not re-run** (never passed): the
   check says "not re-run: weights with hash … not found" (or which identity field differs). Package
   versions that differ from the recorded ones are listed, not refused.
3. **Masks**: each sampled image is loaded from the dataset the manifest records (its content hash must be
   the recorded one) and run through the run's own batch path (:func:`sambench.execution.image.evaluate_images`:
   every prompt regenerated from its key by the recorded protocol identity, one encoder pass per image,
   preprocessing mode and stored corruption condition; click sequences replayed on the model). Every stored
   row of the image is compared with its re-run by :func:`sambench.analysis.agree.mask_agreement`, the
   comparison ``sambench agree`` makes: the re-run passes when every prompt's regenerated prompt hash equals
   the stored one and every stored mask agrees with its re-run at IoU >= the tolerance (a stored failed row
   is not compared, only counted: it scores 0 on the board whatever the model does now).
4. **Tolerance**: ``--min-iou`` if given, else by the dtype the model recorded (:data:`DTYPE_MIN_IOU`):
   fp32 0.999 (float reductions differ between thread counts and devices, flipping a few boundary pixels),
   fp16 0.99 and bf16 0.98 (half-precision logits near the threshold flip more of them).

Nothing stored is changed. :class:`RerunCheck` is what the board records (N, device, date, worst IoU).
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import pandas as pd

from sambench.adapters import build_adapter
from sambench.adapters.weights import checkpoint_dir, file_digests
from sambench.analysis.agree import mask_agreement, prompt_text
from sambench.config import load_model_card
from sambench.execution.image import CorruptedSample, evaluate_images
from sambench.leaderboard.verify import recorded_protocol, reopen_dataset, verify_runs
from sambench.store import COLUMNS, MODEL_IDENTITY, Store, read_manifest
from sambench.types import SambenchError, first_line, keyed_rng, stable_hash

#: The default agreement a re-run mask must reach, by the dtype the model recorded (option ``dtype``).
DTYPE_MIN_IOU = {"fp32": 0.999, "fp16": 0.99, "bf16": 0.98}
WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
RANDOM_INIT = re.compile(r"^random-init:(\d+)$")
MAX_LISTED = 5


class NotRerun(Exception):
    """The recorded model cannot be rebuilt here; the message is the board's reason."""


@dataclass
class RerunCheck:
    """One (run, model) re-run: ``status`` is ``passed``, ``failed`` or ``not re-run`` (with ``reason``)."""

    run: str
    model: str
    status: str
    reason: str = ""
    n_requested: int = 0
    images: list = field(default_factory=list)
    prompts: int = 0
    worst_iou: Optional[float] = None
    worst_prompt: str = ""
    min_iou: Optional[float] = None
    device: str = ""
    dtype: str = ""
    date: str = ""
    weights_sha256: Optional[str] = None
    weights_file: Optional[str] = None
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def line(self) -> str:
        head = f"rerun {self.run} {self.model}: "
        if self.status == "not re-run":
            return head + self.reason
        worst = "-" if self.worst_iou is None else f"{self.worst_iou:.6f}"
        text = (f"{self.status.upper()}: {len(self.images)} image(s), {self.prompts} prompt(s) re-run on {self.device} "
                f"({self.dtype}), worst mask IoU {worst} (tolerance {self.min_iou:g})")
        if self.worst_prompt and self.status == "failed":
            text += f" at {self.worst_prompt}"
        extra = [f"  {p}" for p in self.problems[:MAX_LISTED]]
        if len(self.problems) > MAX_LISTED:
            extra.append(f"  ... and {len(self.problems) - MAX_LISTED} more")
        return "\n".join([head + text] + extra + [f"  note: {n}" for n in self.notes])

    def to_dict(self) -> dict:
        return asdict(self)


def run_identity(manifest: dict) -> str:
    """The stable hash a run's image sample is keyed by (see the module docstring)."""
    return stable_hash({"models": manifest.get("models") or {},
                        "protocols": {p: (e or {}).get("identity") for p, e in (manifest.get("protocols") or {}).items()},
                        "datasets": {d: (e or {}).get("content_hash") for d, e in (manifest.get("datasets") or {}).items()}})


def sample_images(images: Sequence[tuple[str, str]], n: int, key: str, model: str) -> list[tuple[str, str]]:
    """``n`` of the sorted (dataset, image_id) pairs, drawn by ``keyed_rng("rerun", key, model, n)``."""
    pool = sorted(set(images))
    if n >= len(pool):
        return pool
    picked = keyed_rng("rerun", key, model, n).choice(len(pool), size=n, replace=False)
    return [pool[i] for i in sorted(picked)]


def _weight_candidates(model: str, card, manifest: dict, checkpoints: Iterable[str]) -> list[Path]:
    out: list[Path] = []
    for c in checkpoints:
        name, sep, path = str(c).partition("=")
        if sep and name != model:
            continue
        out.append(Path(path if sep else c).expanduser())
    recorded = ((manifest.get("config") or {}).get("checkpoints") or {}).get(model)
    if recorded:
        out.append(Path(recorded).expanduser())
    d = checkpoint_dir()
    if card.checkpoint is not None:
        out.append(d / card.checkpoint.file)
    if d.is_dir():
        out.extend(sorted(p for p in d.iterdir() if p.suffix in WEIGHT_SUFFIXES))
    seen, unique = set(), []
    for p in out:
        if p not in seen and p.is_file():
            seen.add(p)
            unique.append(p)
    return unique


def find_weights(sha256: str, candidates: Sequence[Path]) -> Optional[Path]:
    """The first of ``candidates`` whose SHA-256 is ``sha256`` (digests cached by size and mtime)."""
    for p in candidates:
        try:
            if file_digests(p).sha256 == sha256:
                return p
        except SambenchError:
            continue
    return None


def rebuild_model(model: str, manifest: dict, checkpoints: Iterable[str] = (), device: str = "auto"):
    """(adapter, weights file or None, notes) of the model a run recorded; :class:`NotRerun` with the reason."""
    signature = (manifest.get("models") or {}).get(model)
    if not isinstance(signature, dict):
        raise NotRerun(f"not re-run: the manifest records no signature of model '{model}'")
    try:
        card = load_model_card(model)
    except SambenchError as exc:
        raise NotRerun(f"not re-run: no model card '{model}' here ({first_line(exc)})") from None
    weights = signature.get("weights_sha256")
    options = dict(((manifest.get("config") or {}).get("model_options") or {}).get(model) or {})
    checkpoint, plugin = None, ((manifest.get("config") or {}).get("plugins") or {}).get(model)
    if isinstance(weights, str) and SHA256.match(weights):
        checkpoint = find_weights(weights, _weight_candidates(model, card, manifest, checkpoints))
        # a card without a checkpoint file (transformers directories and hub ids, whose identity hashes several
        # files) finds its own weights: the rebuilt identity below is compared with the recorded hash
        if checkpoint is None and card.checkpoint is not None:
            raise NotRerun(f"not re-run: weights with hash {weights[:12]}… not found (pass --checkpoint PATH or put "
                           f"the file in {checkpoint_dir()})")
    elif isinstance(weights, str) and RANDOM_INIT.match(weights) and "seed" in card.options:
        options.setdefault("seed", int(RANDOM_INIT.match(weights).group(1)))
    if plugin and not Path(plugin).expanduser().is_file():
        raise NotRerun(f"not re-run: plug-in file {plugin} (recorded) not found")
    try:
        adapter = build_adapter(card, device=device, checkpoint=None if checkpoint is None else str(checkpoint),
                                plugin=plugin, options=options)
    except SambenchError as exc:
        raise NotRerun(f"not re-run: cannot rebuild model '{model}' ({first_line(exc)})") from None
    rebuilt = adapter.signature()
    if rebuilt.get("weights_sha256") != weights:
        adapter.close()
        raise NotRerun(f"not re-run: weights with hash {str(weights)[:12]}… not found (this machine builds "
                       f"{str(rebuilt.get('weights_sha256'))[:12]}…)")
    for key in MODEL_IDENTITY:
        if key in signature and signature[key] != rebuilt.get(key):
            adapter.close()
            raise NotRerun(f"not re-run: the rebuilt model's {key} is {rebuilt.get(key)!r}, the run recorded "
                           f"{signature[key]!r}")
    notes = [f"package {k} {v} here, {signature['packages'].get(k)} in the run"
             for k, v in sorted((rebuilt.get("packages") or {}).items())
             if isinstance(signature.get("packages"), dict) and signature["packages"].get(k) != v]
    return adapter, checkpoint, notes


def _stored_rows(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    with Store(run_dir, create=False) as st:
        rows = st.frame(with_masks=True)
        names = sorted(rows["protocol"].unique())
        protocols = {p: recorded_protocol(st, read_manifest(run_dir), p) for p in names}
    return rows, protocols


def rerun_run(run_dir: str | Path, n: int, checkpoints: Iterable[str] = (), min_iou: Optional[float] = None,
              device: str = "auto", opener=reopen_dataset) -> list[RerunCheck]:
    """Re-run every model of ``run_dir`` on ``n`` keyed images (see the module docstring); one check per model."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SambenchError(f"--rerun must be an integer >= 1 (images per run), got {n!r}")
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    rows, protocols = _stored_rows(run_dir)
    key = run_identity(manifest)
    checks = []
    for model in sorted(rows["model"].unique()):
        checks.append(_rerun_model(run_dir, manifest, rows[rows["model"] == model], protocols, model, n, key,
                                   list(checkpoints), min_iou, device, opener))
    return checks


def _rerun_model(run_dir: Path, manifest: dict, rows: pd.DataFrame, protocols: dict, model: str, n: int, key: str,
                 checkpoints: list, min_iou: Optional[float], device: str, opener) -> RerunCheck:
    sig = (manifest.get("models") or {}).get(model) or {}
    dtype = str((sig.get("options") or {}).get("dtype") or sig.get("dtype") or "fp32")
    check = RerunCheck(str(run_dir), model, "not re-run", n_requested=n, dtype=dtype,
                       date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                       weights_sha256=sig.get("weights_sha256"),
                       min_iou=min_iou if min_iou is not None else DTYPE_MIN_IOU.get(dtype, DTYPE_MIN_IOU["fp32"]))
    answered = rows[rows["level"] != ""]
    images = sample_images(list(zip(answered["dataset"], answered["image_id"])), n, key, model)
    try:
        adapter, weights_file, check.notes = rebuild_model(model, manifest, checkpoints, device)
    except NotRerun as exc:
        check.reason = str(exc)
        return check
    check.weights_file = None if weights_file is None else str(weights_file)
    # an adapter without a device (the OpenCV baselines) computes on the CPU, whatever --device says
    check.device = str(getattr(adapter, "device", "cpu"))
    try:
        fresh = _rerun_images(manifest, rows, protocols, model, adapter, images, check, opener)
    finally:
        adapter.close()
    if check.status == "not re-run":
        return check
    chosen = rows.set_index(["dataset", "image_id"]).index.isin(images)
    stored = rows[chosen & (rows["level"] != "").to_numpy()]
    compared = mask_agreement(stored, fresh, [(model, model)])
    _judge(check, stored, compared)
    return check


def _rerun_images(manifest: dict, rows: pd.DataFrame, protocols: dict, model: str, adapter, images: list,
                  check: RerunCheck, opener) -> pd.DataFrame:
    """Every row the batch path makes again for the sampled images (under each stored condition)."""
    seed = (manifest.get("corruptions") or {}).get("seed", (manifest.get("config") or {}).get("seed") or 0)
    opened: dict = {}
    made = []
    for dataset, image_id in images:
        if dataset not in opened:
            entry = (manifest.get("datasets") or {}).get(dataset) or {}
            try:
                ds = opener(entry["spec"])
            except (KeyError, TypeError, SambenchError) as exc:
                check.reason = f"not re-run: cannot reopen dataset '{dataset}' ({first_line(exc) if str(exc) else 'no spec'})"
                return pd.DataFrame(columns=list(COLUMNS))
            if ds.content_hash() != entry.get("content_hash"):
                check.reason = (f"not re-run: dataset '{dataset}' content hash here differs from the recorded "
                                f"{str(entry.get('content_hash'))[:12]}")
                return pd.DataFrame(columns=list(COLUMNS))
            opened[dataset] = ds
        sample = opened[dataset].load(image_id)
        mine = rows[(rows["dataset"] == dataset) & (rows["image_id"] == image_id)]
        for (corruption, severity), cond_rows in mine.groupby(["corruption", "severity"], sort=True):
            condition = (str(corruption), int(severity))
            names = sorted(p for p in cond_rows["protocol"].unique() if protocols.get(p) is not None)
            missing = sorted(set(cond_rows["protocol"].unique()) - set(names))
            if missing:
                check.problems.append(f"protocol(s) {', '.join(missing)}: the run records no identity to regenerate "
                                      f"their prompts from")
            seen = sample if not severity else CorruptedSample(sample, condition, int(seed))
            found = evaluate_images(adapter, model, [seen], [set()], [protocols[p] for p in names], 64,
                                    condition=condition)[0]
            made.extend(r.values() for r in found)
    check.status = "passed"
    return pd.DataFrame(made, columns=list(COLUMNS))


def _judge(check: RerunCheck, stored: pd.DataFrame, compared: pd.DataFrame) -> None:
    check.images = sorted({f"{d}/{i}" for d, i in zip(stored["dataset"], stored["image_id"])})
    check.prompts = int(len(compared))
    lost = len(stored) - len(compared)
    if lost:
        check.problems.append(f"{lost} stored prompt(s) were not made again by the re-run (their keys are not what "
                              f"the recorded protocols draw)")
    hashes = compared[(compared["prompt_hash_a"] != compared["prompt_hash_b"]) & compared["prompt_hash_a"].notna()]
    if len(hashes):
        check.problems.append(f"{len(hashes)} stored prompt(s) differ from the regenerated ones, e.g. "
                              f"{prompt_text(hashes.iloc[0])}")
    stored_failed = compared[compared["status_a"] != "ok"]
    if len(stored_failed):
        check.notes.append(f"{len(stored_failed)} stored failed row(s) not compared (a failure scores 0 on the board; "
                           f"{int((stored_failed['status_b'] == 'ok').sum())} answered by the re-run)")
    values = compared[compared["status_a"] == "ok"].dropna(subset=["agreement"])
    if len(values):
        worst = values.sort_values("agreement", kind="mergesort").iloc[0]
        check.worst_iou, check.worst_prompt = float(worst["agreement"]), prompt_text(worst)
        below = values[values["agreement"] < check.min_iou]
        if len(below):
            check.problems.append(f"{len(below)} of {len(values)} re-run mask(s) agree with the stored ones below IoU "
                                  f"{check.min_iou:g}")
    check.status = "failed" if check.problems else "passed"


def rerun_runs(run_dirs: Iterable[str | Path], n: int, checkpoints: Iterable[str] = (),
               min_iou: Optional[float] = None, device: str = "auto") -> list[RerunCheck]:
    """:func:`rerun_run` over several run directories."""
    checks: list[RerunCheck] = []
    for d in run_dirs:
        checks.extend(rerun_run(d, n, checkpoints, min_iou, device))
    return checks


@dataclass
class Verification:
    """``--verify`` (every stored mask re-scored, :class:`~sambench.leaderboard.verify.VerifyResult`) and, with
    ``--rerun N``, one :class:`RerunCheck` per (run, model). ``ok``: nothing mismatched and no re-run failed; an
    entry not re-run does not fail it but is never reported as passed."""

    rescore: object
    checks: list = field(default_factory=list)
    rerun: int = 0

    @property
    def ok(self) -> bool:
        return self.rescore.ok and all(c.ok for c in self.checks)

    def summary(self) -> str:
        lines = [self.rescore.summary()] + [c.line() for c in self.checks]
        if self.rerun:
            counts = {s: sum(c.status == s for c in self.checks) for s in ("passed", "failed", "not re-run")}
            lines.append(f"rerun: {counts['passed']} passed, {counts['failed']} failed, {counts['not re-run']} not re-run "
                         f"(of {len(self.checks)} run/model entries, {self.rerun} image(s) each)")
        return "\n".join(lines)

    def record(self) -> dict:
        """The board's ``verification`` section."""
        return {"rescored_masks": self.rescore.checked, "rescore_mismatches": self.rescore.n_mismatches,
                "rerun_images": self.rerun, "rerun": [c.to_dict() for c in self.checks]}


def verify(run_dirs: Sequence[str | Path], rerun: int = 0, checkpoints: Iterable[str] = (),
           min_iou: Optional[float] = None, device: str = "auto") -> Verification:
    """Re-score every stored mask of ``run_dirs`` and, when ``rerun`` > 0, re-run each model on ``rerun`` images."""
    if min_iou is not None and not (0.0 <= float(min_iou) <= 1.0):
        raise SambenchError(f"--min-iou must be an IoU in [0, 1], got {min_iou!r}")
    result = Verification(verify_runs(run_dirs), rerun=int(rerun or 0))
    if rerun:
        result.checks = rerun_runs(run_dirs, int(rerun), checkpoints, min_iou, device)
    return result


__all__ = ["DTYPE_MIN_IOU", "NotRerun", "RerunCheck", "find_weights", "rebuild_model", "rerun_run", "rerun_runs",
           "run_identity", "sample_images", "Verification", "verify"]
