"""Replayed prompts: the ``replay`` protocol reads its prompts from a file instead of generating them.

A replay card (``kind: replay``, ``file:``, ``format:``; docs/protocols.md "Replayed prompts") names a file
of prompts made elsewhere — by people, by another tool, or by ``sambench prompts export``. This module reads
the three formats sambench knows into one list of :class:`ReplayPrompt` (dataset, image id, object id,
level, prompt, where in the file), then

* :func:`resolve` makes the card executable: its levels are the file's groups in order of first
  appearance, its ``draws`` the most prompts one object has at one level, and its identity gains the file's
  sha256 (each level carries it too, so a store holding another file's prompts refuses this one);
* :func:`check_dataset` refuses, in one line naming the file and the id, a file made for another dataset,
  an image or object id the dataset does not have, and a prompt outside its image — before any work;
* :meth:`ReplayFile.prompts_for` gives one image's prompts per (object, level), in file order: draw ``d`` of
  an object at a level is its ``d``-th prompt there.

Formats (``format: auto`` picks by the path: a directory is ``breps``, ``*.csv`` is ``rclicks``, anything
else ``sambench``):

* ``sambench`` — the JSON ``sambench prompts export`` writes: ``prompts: [{dataset, image_id, object_id,
  level, prompt: {box | points, labels}, prompt_hash?}]`` plus ``dataset: {name, content_hash?}``; a
  ``prompt_hash`` must match its prompt, a ``content_hash`` the dataset's.
* ``rclicks`` — RClicks' ``clicks.csv`` (Antonov et al., NeurIPS 2024; github.com/emb-ai/rclicks, MIT):
  one row per click with ``dataset, image_stem, object_stem, click_type, x, y, w, h`` and optionally
  ``device``. Only ``click_type == first`` rows are prompts (the others correct a mask of a model sambench
  does not have), each a single positive click (x, y) given on a w×h copy of the image; level = ``device``
  (``pc`` / ``mobile``), or ``user`` without that column. Object ``object_stem`` (empty: the image's only
  object).
* ``breps`` — BREPS' user-study box folder (Moskalenko et al., AAAI 2026; github.com/emb-ai/BREPS, CC BY 4.0):
  one PNG per user box, named ``<image>_1_<rest>.png`` (or ``<image>.png``), whose non-zero pixels' extreme
  indices are the box (BREPS' ``get_bbox_from_mask``); one level, ``user``; the image's only object.

Coordinates given on a w×h copy of an image of another size are scaled by W/w and H/h. A prompt is inside its
W×H image when every point has 0 <= x < W and 0 <= y < H and the box 0 <= x0 <= x1 <= W, 0 <= y0 <= y1 <= H.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from sambench.config import ProtocolCard, make_setting
from sambench.config.vocabulary import REPLAY_KIND
from sambench.types import Object, Prompt, SambenchError, file_digests_of

#: RClicks' ``dataset`` values and the sambench dataset (preset) names they are replayed on.
RCLICKS_DATASETS = {"GrabCut": "grabcut", "Berkeley": "berkeley", "DAVIS": "davis-345", "COCO": "coco-mval",
                    "TETRIS": "tetris"}
#: The RClicks columns a click file must have (``device`` is optional: without it every click is level ``user``).
RCLICKS_COLUMNS = ("dataset", "image_stem", "object_stem", "click_type", "x", "y", "w", "h")
#: The level of a file that defines no groups (RClicks without ``device``, BREPS).
SINGLE_LEVEL = "user"


@dataclass(frozen=True)
class ReplayPrompt:
    """One prompt of a replay file: where it goes (dataset, image, object, level), what it is, where it was read.

    ``dataset`` is the name the file gives ("" when it names none); ``object_id`` None means the image's only
    object; ``frame`` the (W, H) its coordinates were given on, None for the image's own size."""

    dataset: str
    image_id: str
    object_id: Optional[str]
    level: str
    prompt: Prompt
    source: str
    frame: Optional[tuple[int, int]] = None


@dataclass(frozen=True)
class ReplayFile:
    """A read replay file: its path, format, sha256 and prompts in file order (see the module docstring)."""

    path: str
    format: str
    sha256: str
    prompts: tuple
    #: dataset name → content hash, for the files that record one (sambench's own export)
    content_hashes: dict = field(default_factory=dict, hash=False)

    @property
    def levels(self) -> list[str]:
        """The file's levels (groups), in order of first appearance."""
        return list(dict.fromkeys(p.level for p in self.prompts))

    def most_draws(self) -> int:
        """The most prompts one object has at one level (the protocol's ``draws``)."""
        counts: dict = {}
        for p in self.prompts:
            key = (p.dataset, p.image_id, p.object_id, p.level)
            counts[key] = counts.get(key, 0) + 1
        return max(counts.values())

    def for_dataset(self, name: str) -> list[ReplayPrompt]:
        """The prompts made for dataset ``name``, or one error line when the file names other datasets only."""
        named = sorted({p.dataset for p in self.prompts if p.dataset})
        if not named:
            return list(self.prompts)
        mine = [p for p in self.prompts if p.dataset and _same_dataset(p.dataset, name)]
        if not mine:
            raise SambenchError(f"{self.path}: a file made for dataset {', '.join(named)}, not '{name}' "
                                f"(docs/protocols.md, Replayed prompts)")
        return mine

    def prompts_for(self, dataset: str, image_id: str, objects: list[Object],
                    only: Optional[str] = None) -> dict[tuple[str, str], list[Prompt]]:
        """(object id, level) → the prompts of image ``image_id`` of ``dataset`` in file order, scaled to the
        image and checked: an unknown object id, an object-less prompt on an image of several objects, or a
        prompt outside the image raise one line naming the file and the id. ``only``: the prompts of that one
        object (``objects`` is then that object alone; an object-less prompt is taken as its)."""
        out: dict[tuple[str, str], list[Prompt]] = {}
        mine = self._index(dataset).get(image_id, [])
        if only is not None:
            mine = [p for p in mine if p.object_id in (None, only)]
        if not mine or not objects:  # an image whose objects are all unusable has their failed rows already
            return out
        ids = [o.id for o in objects]
        h, w = objects[0].mask.shape[:2]
        for p in mine:
            where = f"{self.path}: {p.source} (image '{image_id}'"
            if p.object_id is None:
                if len(ids) != 1:
                    raise SambenchError(f"{where}) names no object, and the image has {len(ids)} objects "
                                        f"({', '.join(ids[:5])}): give its object id")
                oid = ids[0]
            elif p.object_id not in ids:
                raise SambenchError(f"{where}): unknown object id '{p.object_id}' (the image has "
                                    f"{', '.join(ids[:5]) or 'no usable object'})")
            else:
                oid = p.object_id
            prompt = _scaled(p.prompt, p.frame, (w, h))
            _check_inside(prompt, (w, h), f"{where}, object '{oid}')")
            out.setdefault((oid, p.level), []).append(prompt)
        return out

    def _index(self, dataset: str) -> dict[str, list[ReplayPrompt]]:
        cache = self.__dict__.setdefault("_by_image", {})
        if dataset not in cache:
            by_image: dict[str, list[ReplayPrompt]] = {}
            for p in self.for_dataset(dataset):
                by_image.setdefault(p.image_id, []).append(p)
            cache[dataset] = by_image
        return cache[dataset]


def _same_dataset(named: str, dataset: str) -> bool:
    """Whether a file's dataset name ``named`` is the run's ``dataset`` (exactly, or RClicks' name of it)."""
    return named == dataset or RCLICKS_DATASETS.get(named) == dataset


def _scaled(prompt: Prompt, frame: Optional[tuple[int, int]], size: tuple[int, int]) -> Prompt:
    """``prompt`` given on a ``frame`` (W, H) copy, in the ``size`` (W, H) image's pixels."""
    if frame is None or tuple(frame) == tuple(size):
        return prompt
    sx, sy = size[0] / frame[0], size[1] / frame[1]
    box = None if prompt.box is None else (prompt.box[0] * sx, prompt.box[1] * sy, prompt.box[2] * sx, prompt.box[3] * sy)
    points = None if not prompt.points else tuple((x * sx, y * sy) for x, y in prompt.points)
    return Prompt(box=box, points=points, labels=prompt.labels)


def _check_inside(prompt: Prompt, size: tuple[int, int], where: str) -> None:
    w, h = size
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        if not (0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h):
            raise SambenchError(f"{where}: box {list(prompt.box)} is outside the {w}x{h} image")
    for x, y in prompt.points or ():
        if not (0 <= x < w and 0 <= y < h):
            raise SambenchError(f"{where}: point ({x}, {y}) is outside the {w}x{h} image")


# ------------------------------------------------------------------------------------------- readers


def read_replay(path: str | Path, fmt: str = "auto") -> ReplayFile:
    """The replay file at ``path`` in format ``fmt`` (module docstring), or one error line naming it."""
    p = Path(path)
    if not p.exists():
        raise SambenchError(f"{p}: replay file not found")
    if fmt == "auto":
        fmt = "breps" if p.is_dir() else "rclicks" if p.suffix.lower() == ".csv" else "sambench"
    reader = {"sambench": _read_sambench, "rclicks": _read_rclicks, "breps": _read_breps}[fmt]
    if (fmt == "breps") != p.is_dir():
        raise SambenchError(f"{p}: a {fmt} replay file is {'a folder of PNGs' if fmt == 'breps' else 'one file'}")
    try:
        sha = _folder_sha256(p) if p.is_dir() else file_digests_of(p)[1]["sha256"]
    except OSError as exc:
        raise SambenchError(f"{p}: cannot read replay file: {exc.strerror}") from None
    prompts, hashes = reader(p)
    if not prompts:
        raise SambenchError(f"{p}: no prompt to replay in this {fmt} file")
    return ReplayFile(path=str(p), format=fmt, sha256=sha, prompts=tuple(prompts), content_hashes=hashes)


def _folder_sha256(folder: Path) -> str:
    """sha256 of a folder's PNGs: their sorted names with each file's sha256."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.png")):
        h.update(f"{f.name}\x1f{file_digests_of(f)[1]['sha256']}\n".encode("utf-8"))
    return h.hexdigest()


def _prompt(d, where: str) -> Prompt:
    try:
        return Prompt.from_dict(d)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SambenchError(f"{where}: not a prompt ({exc})") from None


def _read_sambench(path: Path) -> tuple[list[ReplayPrompt], dict]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SambenchError(f"{path}: not a sambench prompts file (JSON: {exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("prompts"), list):
        raise SambenchError(f"{path}: not a sambench prompts file: no 'prompts' list (sambench prompts export)")
    ds = doc.get("dataset") if isinstance(doc.get("dataset"), dict) else {}
    hashes = {str(ds["name"]): str(ds["content_hash"])} if ds.get("name") and ds.get("content_hash") else {}
    out = []
    for i, e in enumerate(doc["prompts"]):
        where = f"{path}: prompts[{i}]"
        missing = [k for k in ("image_id", "object_id", "level", "prompt") if not isinstance(e, dict) or k not in e]
        if missing:
            raise SambenchError(f"{where} has no {', '.join(missing)}")
        prompt = _prompt(e["prompt"], where)
        if e.get("prompt_hash") is not None and e["prompt_hash"] != prompt.hash():
            raise SambenchError(f"{where}: its prompt_hash does not match its prompt (edited by hand?)")
        out.append(ReplayPrompt(str(e.get("dataset", ds.get("name", "")) or ""), str(e["image_id"]),
                                str(e["object_id"]), str(e["level"]), prompt, f"prompts[{i}]"))
    return out, hashes


def _read_rclicks(path: Path) -> tuple[list[ReplayPrompt], dict]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in RCLICKS_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise SambenchError(f"{path}: not an RClicks click file: no column {', '.join(missing)}")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise SambenchError(f"{path}: not an RClicks click file ({exc})") from None
    out = []
    for i, r in enumerate(rows):
        if r["click_type"] != "first":
            continue
        where = f"{path}: row {i + 2}"  # the header is line 1
        try:
            x, y, w, h = float(r["x"]), float(r["y"]), int(float(r["w"])), int(float(r["h"]))
        except ValueError:
            raise SambenchError(f"{where}: x, y, w, h must be numbers, got {r['x']!r}, {r['y']!r}, {r['w']!r}, "
                                f"{r['h']!r}") from None
        if w < 1 or h < 1:
            raise SambenchError(f"{where}: the image size w x h must be positive, got {w}x{h}")
        obj = r["object_stem"].strip()
        level = (r.get("device") or "").strip() or SINGLE_LEVEL
        out.append(ReplayPrompt(r["dataset"], r["image_stem"], obj or None, level,
                                _prompt({"points": [[x, y]], "labels": [1]}, where), f"row {i + 2}", (w, h)))
    return out, {}


def _read_breps(folder: Path) -> tuple[list[ReplayPrompt], dict]:
    out = []
    for f in sorted(folder.glob("*.png")):
        stem = f.stem
        image_id = stem[:stem.find("_1_")] if "_1_" in stem else stem
        mask = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise SambenchError(f"{f}: not a readable PNG")
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            raise SambenchError(f"{f}: an empty box mask (no non-zero pixel)")
        box = (float(cols[0]), float(rows[0]), float(cols[-1]), float(rows[-1]))
        out.append(ReplayPrompt("", image_id, None, SINGLE_LEVEL, Prompt(box=box), f.name,
                                (int(mask.shape[1]), int(mask.shape[0]))))
    return out, {}


# ----------------------------------------------------------------------------------------- the protocol

_read: dict[tuple[str, str], ReplayFile] = {}


def replay_file(card: ProtocolCard) -> ReplayFile:
    """The file of replay card ``card``, read once per process (and refused if its bytes changed since the
    card was resolved: its sha256 is in the card's identity)."""
    key = (card.replay["file"], card.replay.get("format", "auto"))
    want = card.replay.get("sha256")
    rf = _read.get(key)
    if rf is None or want is None or rf.sha256 != want:  # an unresolved card reads the file's bytes as they are now
        rf = _read[key] = read_replay(*key)
    if want and rf.sha256 != want:
        raise SambenchError(f"{rf.path}: the replay file changed: sha256 {rf.sha256[:12]}…, the protocol "
                            f"'{card.name}' recorded {want[:12]}…")
    return rf


def resolve(card: ProtocolCard) -> ProtocolCard:
    """``card`` made executable: for a replay card, its levels, draws and file hash from its file (module
    docstring); any other card unchanged."""
    if not card.replayed or card.settings:
        return card
    rf = replay_file(card)
    where = f"protocol '{card.name}' ({rf.path})"
    settings = tuple(make_setting(REPLAY_KIND, {"file_sha256": rf.sha256}, lv, where, card.name) for lv in rf.levels)
    most = rf.most_draws()
    return replace(card, settings=settings, draws=min(card.draws, most) if card.draws else most,
                   replay={**card.replay, "format": rf.format, "sha256": rf.sha256, "prompts": len(rf.prompts)})


def check_dataset(card: ProtocolCard, dataset) -> int:
    """Refuse, before any work, a replay file that does not fit ``dataset`` (an opened
    :class:`sambench.datasets.Dataset`): made for another dataset, an unknown image or object id, a prompt
    outside its image, another content hash. Loads each image the file names once. Returns the prompts checked."""
    rf = replay_file(card)
    mine = rf.for_dataset(dataset.name)
    want = rf.content_hashes.get(dataset.name)
    if want and want != dataset.content_hash():
        raise SambenchError(f"{rf.path}: made for dataset '{dataset.name}' with content hash {want[:12]}…, this "
                            f"dataset has {dataset.content_hash()[:12]}…: another copy or version of it")
    known = set(dataset.ids())
    images = list(dict.fromkeys(p.image_id for p in mine))
    unknown = [p for p in mine if p.image_id not in known]
    if unknown:
        also = "none of its images is there: a file for another dataset?" if len(unknown) == len(mine) else \
            f"{len({p.image_id for p in unknown})} unknown image id(s)"
        raise SambenchError(f"{rf.path}: {unknown[0].source}: unknown image id '{unknown[0].image_id}' in dataset "
                            f"'{dataset.name}' ({also})")
    n = 0
    for image_id in images:
        sample = dataset.load(image_id)
        n += sum(len(v) for v in rf.prompts_for(dataset.name, image_id, sample.objects).values())
    return n


__all__ = ["RCLICKS_COLUMNS", "RCLICKS_DATASETS", "SINGLE_LEVEL", "ReplayFile", "ReplayPrompt", "check_dataset",
           "read_replay", "replay_file", "resolve"]
