"""The few types every stage of sambench shares.

Conventions (docs/protocols.md and docs/metrics.md say the same):

* Images are RGB ``uint8`` arrays of shape ``(H, W, 3)`` in their original resolution.
* Masks are boolean arrays of shape ``(H, W)`` in the original image frame.
* Boxes are ``(x0, y0, x1, y1)`` floats in original-image pixel coordinates (x = column, y = row).
* Points are ``(x, y)`` floats in the same frame; labels are 1 (foreground) or 0 (background).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np


class SambenchError(Exception):
    """A user-facing error: its message is one line naming the file or name and the problem."""


def first_line(exc: BaseException, empty: Optional[str] = None) -> str:
    """The first line of ``exc``'s message once surrounding whitespace is dropped; ``empty`` if there is none
    (by default its type name: pass ``""`` where the caller prints the type name already).

    What a one-line error quotes of a library's exception (SQLite, pickle, PIL, ...), whose own message
    may span lines (a traceback-like dump) or be empty.
    """
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else (type(exc).__name__ if empty is None else empty)


def check_choice(value: Any, choices: Sequence, name: str, where: str = "") -> None:
    """Refuse ``value`` unless it is one of ``choices``, in one line: ``[WHERE: ]NAME must be one of A, B, got 'v'``."""
    if value not in choices:
        raise SambenchError(f"{where + ': ' if where else ''}{name} must be one of {', '.join(map(str, choices))}, "
                            f"got {value!r}")


def check_min(value: Any, low: Any, name: str, where: str = "", strict: bool = False) -> None:
    """Refuse ``value`` below ``low`` (or equal to it when ``strict``), NaN included, in one line:
    ``[WHERE: ]NAME must be >= LOW, got V`` (``> LOW`` when strict)."""
    if not (value > low if strict else value >= low):
        raise SambenchError(f"{where + ': ' if where else ''}{name} must be {'>' if strict else '>='} {low}, got {value}")


def did_you_mean(name: str, known) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``known`` to a mistyped ``name`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the byte-stable form used for every hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def stable_hash(*parts: Any) -> str:
    """sha256 hex digest of the canonical JSON of ``parts``; identical across processes and Pythons."""
    return hashlib.sha256(canonical_json(list(parts)).encode("ascii")).hexdigest()


def file_digests_of(path, algorithms: Sequence[str] = ("sha256",), chunk: int = 1 << 20) -> tuple[int, dict]:
    """(size, {algorithm: hex digest}) of a file's bytes, read once in ``chunk``-byte blocks.

    Raises OSError as ``open`` does; callers turn it into their own one-line error.
    """
    hashers = {a: hashlib.new(a, usedforsecurity=False) if a == "md5" else hashlib.new(a) for a in algorithms}
    size = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            size += len(block)
            for h in hashers.values():
                h.update(block)
    return size, {a: h.hexdigest() for a, h in hashers.items()}


@dataclass(frozen=True)
class Object:
    """One annotated object of an image: a stable id and its boolean mask (H×W, original resolution).

    ``ignore``: optional boolean H×W mask of pixels that are neither object nor background (GrabCut's
    unlabelled band, VOC's void): excluded from IoU and never clicked. None = every pixel counts.
    """

    id: str
    mask: np.ndarray
    meta: dict = field(default_factory=dict, compare=False)
    ignore: Optional[np.ndarray] = field(default=None, compare=False)


@dataclass
class Sample:
    """One image with its objects. ``dataset/image_id/object.id`` is a stable, unique key."""

    dataset: str
    image_id: str
    image: np.ndarray
    objects: list[Object]
    meta: dict = field(default_factory=dict)
    #: object id → one-line reason, for annotated objects of this image that cannot be used (a malformed
    #: or empty COCO segmentation): each is recorded as a failed row, the other objects are still scored.
    failed_objects: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])


#: The forms a prompt takes (:attr:`Prompt.form`); an adapter's ``capabilities`` is a subset.
PROMPT_FORMS = ("box", "points", "box+points")


def keyed_rng(*parts: Any) -> np.random.Generator:
    """A fresh PCG64 generator seeded with the 256-bit integer of :func:`stable_hash` of ``parts``: the one
    source of randomness in sambench (prompts, bootstrap resamples, training order)."""
    return np.random.default_rng(int(stable_hash(*parts), 16))


def _round(v: float) -> float:
    # Prompts are stored and hashed with 4 decimals (1e-4 px): enough for any model, and immune to
    # last-bit float differences between platforms.
    return float(round(float(v), 4))


@dataclass(frozen=True)
class Prompt:
    """A box and/or a set of points, in original-image pixel coordinates.

    ``box`` is ``(x0, y0, x1, y1)``; ``points`` is a tuple of ``(x, y)``; ``labels`` holds 1 for a
    foreground click and 0 for a background click. Coordinates are rounded to 1e-4 px on creation so
    that the JSON form (and so the hash) is byte-identical everywhere.
    """

    box: Optional[tuple[float, float, float, float]] = None
    points: Optional[tuple[tuple[float, float], ...]] = None
    labels: Optional[tuple[int, ...]] = None

    def __post_init__(self) -> None:
        if self.box is None and not self.points:
            raise ValueError("a prompt needs a box or at least one point")
        if self.box is not None:
            b = tuple(_round(v) for v in self.box)
            if len(b) != 4 or not (b[0] <= b[2] and b[1] <= b[3]):
                raise ValueError(f"invalid box {self.box}: need x0 <= x1 and y0 <= y1")
            object.__setattr__(self, "box", b)
        if self.points is not None:
            pts = tuple((_round(x), _round(y)) for x, y in self.points)
            labels = tuple(int(v) for v in (self.labels if self.labels is not None else [1] * len(pts)))
            if len(labels) != len(pts) or any(v not in (0, 1) for v in labels):
                raise ValueError("point labels must be 0/1, one per point")
            object.__setattr__(self, "points", pts)
            object.__setattr__(self, "labels", labels)

    @property
    def form(self) -> str:
        """What the prompt carries: one of :data:`PROMPT_FORMS` (adapters list the forms they take)."""
        if self.box is not None and self.points:
            return "box+points"
        return "box" if self.box is not None else "points"

    def to_dict(self) -> dict:
        d: dict = {}
        if self.box is not None:
            d["box"] = list(self.box)
        if self.points:
            d["points"] = [list(p) for p in self.points]
            d["labels"] = list(self.labels)
        return d

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "Prompt":
        return cls(
            box=tuple(d["box"]) if d.get("box") is not None else None,
            points=tuple(tuple(p) for p in d["points"]) if d.get("points") else None,
            labels=tuple(d["labels"]) if d.get("labels") is not None else None,
        )

    @classmethod
    def from_json(cls, s: str) -> "Prompt":
        return cls.from_dict(json.loads(s))

    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode("ascii")).hexdigest()


@dataclass
class Prediction:
    """What an adapter returns for a batch of N prompts.

    ``masks``: bool (N, H, W) at the original image resolution: a numpy array, or a torch bool tensor
    (e.g. on the CUDA device that computed it; the runner then scores it there, see sambench.metrics.fast).
    ``scores``: float (N,) — the model's own quality estimate (SAM: predicted IoU), NaN if it has none.
    ``extras``: optional per-prompt JSON-serialisable dicts (e.g. Stable-SAM sampling locations).
    ``low_res_logits``: optional float32 (N, h, w) logits of each returned mask in the model's own
    low-resolution frame (SAM: 256×256), filled only when asked (``predict(..., return_logits=True)``) by
    adapters with ``mask_prompts``: what the interactive protocol feeds back as the next mask prompt.
    """

    masks: Any
    scores: np.ndarray
    extras: Optional[list[dict]] = None
    low_res_logits: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        is_bool = self.masks.dtype == np.bool_ if isinstance(self.masks, np.ndarray) else str(self.masks.dtype) == "torch.bool"
        if self.masks.ndim != 3 or not is_bool:
            raise ValueError(f"Prediction.masks must be bool (N,H,W), got {self.masks.dtype} {self.masks.shape}")
        if self.scores.shape != (self.masks.shape[0],):
            raise ValueError("Prediction.scores must have one value per mask")
