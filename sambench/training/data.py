"""What one training step is fed: the recipe's configuration, the data, augmentation, prompts and targets.

Steps 1–3 of the recipe in :mod:`sambench.training.train` (which runs the loop): the training datasets
(``--data``), the keyed augmentation into the 1024 × 1024 input frame (flip, HQ-SAM's large-scale
jitter, crop, pad), one random prompt per sampled object (GT box, noisy box or k positive points, drawn
with :mod:`sambench.inputs.prompts`) and the soft 256 × 256 target of each. Every draw comes from the
generator the loop passes in, keyed by ``(seed, epoch, step, slot)``; nothing reads global random state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from sambench.adapters.stable_sam.modules import PluginConfig
from sambench.datasets import open_dataset
from sambench.inputs.prompts import gt_box, noisy_box, random_points
from sambench.types import SambenchError, check_min

FRAME = 1024
LOWRES = 256
#: The prompt kinds (a subset of sambench.config.vocabulary.PROMPT_KINDS) training draws from.
TRAINING_PROMPT_KINDS = ("gt-box", "noisy-box", "points")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights (recorded in the plug-in and resume files).

    See the module docstring for the meaning of each field; ``plugin`` holds the
    :class:`~sambench.adapters.stable_sam.modules.PluginConfig` fields.
    """

    epochs: int = 1
    batch_size: int = 4
    lr: float = 1e-3
    seed: int = 0
    objects_per_image: int = 4
    prompt_kinds: tuple = TRAINING_PROMPT_KINDS
    point_counts: tuple = (1, 2, 3, 5, 10)
    noise_scale: tuple = (0.1, 0.5)
    augment: bool = True
    jitter: tuple = (0.1, 2.0)
    min_object_pixels: int = 16
    plugin_seed: int = 0
    plugin: dict = field(default_factory=lambda: PluginConfig().to_dict())

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.objects_per_image < 1:
            raise SambenchError("train stable-sam: epochs, batch size and objects per image must be >= 1")
        check_min(self.lr, 0, "learning rate", "train stable-sam", strict=True)
        bad = [k for k in self.prompt_kinds if k not in TRAINING_PROMPT_KINDS]
        if bad or not self.prompt_kinds:
            raise SambenchError(f"train stable-sam: prompt kinds must be among {', '.join(TRAINING_PROMPT_KINDS)}, got {bad or 'none'}")
        if not self.point_counts or any(int(k) < 1 for k in self.point_counts):
            raise SambenchError("train stable-sam: point counts must be integers >= 1")
        lo, hi = self.jitter
        if not 0 < lo <= hi:
            raise SambenchError(f"train stable-sam: jitter range must satisfy 0 < min <= max, got {self.jitter}")

    def identity(self) -> dict:
        d = asdict(self)
        for k in ("prompt_kinds", "point_counts", "noise_scale", "jitter"):
            d[k] = list(d[k])
        return d


@dataclass
class TrainItem:
    """One augmented image in the 1024 frame with its prompts (input-frame pixels) and soft targets."""

    image: np.ndarray  # uint8 1024×1024×3
    cache_key: Optional[tuple]
    kinds: list
    boxes: list  # per prompt: (4,) float array or None
    points: list  # per prompt: (k, 2) float array or None
    targets: np.ndarray  # float32 N×256×256


def open_training_data(specs: Sequence[Any]) -> list:
    """Datasets for ``--data`` values: a directory → ``open_dataset(dir, format="folder")``; any other
    string → ``open_dataset(name)`` (e.g. ``grabcut-sample``); a Dataset object is used as is."""
    out = []
    for s in specs:
        if hasattr(s, "ids") and hasattr(s, "load"):
            out.append(s)
            continue
        spec = str(s)
        out.append(open_dataset(spec, format="folder") if Path(spec).expanduser().is_dir() else open_dataset(spec))
    if not out:
        raise SambenchError("train stable-sam: no training data (give --data DIR at least once)")
    return out


def _resize(a: np.ndarray, size_wh: tuple[int, int], shrink: bool) -> np.ndarray:
    return cv2.resize(a, size_wh, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def augment_sample(image: np.ndarray, masks: list, rng: Optional[np.random.Generator], cfg: TrainConfig,
                   jitter: bool = True) -> tuple[np.ndarray, list, tuple[int, int]]:
    """Flip + large-scale jitter (``rng`` given and ``cfg.augment``) or the plain SAM resize (no rng).

    Returns the 1024 × 1024 uint8 image, the boolean 1024 × 1024 masks and the (h, w) of the valid
    (un-padded) area. See the module docstring for the exact policy.
    """
    h, w = image.shape[:2]
    scale = 1.0
    if rng is not None and cfg.augment:
        if rng.random() < 0.5:
            image = image[:, ::-1]
            masks = [m[:, ::-1] for m in masks]
        scale = float(rng.uniform(*cfg.jitter)) if jitter else 1.0
    f = FRAME * scale / max(h, w)
    nh, nw = max(1, int(h * f + 0.5)), max(1, int(w * f + 0.5))
    shrink = f < 1.0
    img = _resize(np.ascontiguousarray(image), (nw, nh), shrink)
    ms = [_resize(np.ascontiguousarray(m, dtype=np.float32), (nw, nh), shrink) >= 0.5 for m in masks]
    y0 = int(rng.integers(0, nh - FRAME + 1)) if (rng is not None and nh > FRAME) else 0
    x0 = int(rng.integers(0, nw - FRAME + 1)) if (rng is not None and nw > FRAME) else 0
    vh, vw = min(nh, FRAME), min(nw, FRAME)
    canvas = np.zeros((FRAME, FRAME, 3), dtype=np.uint8)
    canvas[:vh, :vw] = img[y0:y0 + vh, x0:x0 + vw]
    out_masks = []
    for m in ms:
        c = np.zeros((FRAME, FRAME), dtype=bool)
        c[:vh, :vw] = m[y0:y0 + vh, x0:x0 + vw]
        out_masks.append(c)
    return canvas, out_masks, (vh, vw)


def training_prompt(kind: str, mask: np.ndarray, valid_hw: tuple[int, int], rng: np.random.Generator,
                cfg: TrainConfig) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(box (4,), None) or (None, points (k, 2)) for one object mask in the 1024 frame."""
    if kind == "points":
        k = int(cfg.point_counts[int(rng.integers(len(cfg.point_counts)))])
        p = random_points(mask, k, rng)
        return None, np.asarray(p.points, dtype=np.float32)
    box = gt_box(mask)
    if kind == "noisy-box":
        s = float(rng.uniform(*cfg.noise_scale))
        box = noisy_box(box, valid_hw, s, rng)
    return np.asarray(box, dtype=np.float32), None


def soft_target(mask: np.ndarray) -> np.ndarray:
    """A 1024² boolean mask area-averaged to 256² float32 (fraction of foreground per low-res pixel)."""
    return cv2.resize(mask.astype(np.float32), (LOWRES, LOWRES), interpolation=cv2.INTER_AREA)


def build_item(dataset, image_id: str, rng: np.random.Generator, cfg: TrainConfig) -> Optional[TrainItem]:
    """Load, augment and prompt one image; None when no object is left (after a jitter-free retry)."""
    sample = dataset.load(image_id)
    masks = [o.mask for o in sample.objects]
    if not masks:
        return None
    for attempt in (True, False):
        img, ms, valid = augment_sample(sample.image, masks, rng, cfg, jitter=attempt)
        ok = [i for i, m in enumerate(ms) if int(m.sum()) >= cfg.min_object_pixels]
        if ok:
            break
    else:
        return None
    n = min(cfg.objects_per_image, len(ok))
    chosen = [ok[int(i)] for i in rng.choice(len(ok), size=n, replace=False)]
    kinds, boxes, points, targets = [], [], [], []
    for oi in chosen:
        kind = cfg.prompt_kinds[int(rng.integers(len(cfg.prompt_kinds)))]
        b, p = training_prompt(kind, ms[oi], valid, rng, cfg)
        kinds.append(kind)
        boxes.append(b)
        points.append(p)
        targets.append(soft_target(ms[oi]))
    key = None if cfg.augment else (getattr(dataset, "name", "?"), image_id)
    return TrainItem(image=img, cache_key=key, kinds=kinds, boxes=boxes, points=points,
                     targets=np.stack(targets).astype(np.float32))
