"""Prompt protocols: pure, keyed functions from (protocol, level, draw, object) to a prompt.

Every random prompt is drawn from ``numpy.random.default_rng(key)`` where ``key`` is the sha256 of the
canonical JSON of ``[seed, protocol name, protocol version, level, draw, dataset, image id,
object id]`` read as an integer. Nothing else — not the order of objects, not the process, not the shard,
not the number of draws before it — can change a prompt. No global RNG is touched.

Conventions (docs/protocols.md says the same):

* **GT box** ``(x0, y0, x1, y1)`` = (min column, min row, max column, max row) of the object's
  foreground pixels, i.e. the indices of the extreme pixels, in the original image frame. This is
  torchvision's ``masks_to_boxes`` and HQ-SAM's ``misc.masks_to_boxes`` convention (a one-pixel object has
  x0 == x1).
* **Box frame** (card field ``box_frame``): ``label`` (default) measures the GT box on the original label as
  above. ``hq-sam-1024`` measures it as HQ-SAM's evaluation does (``train/train.py`` ``evaluate``): the
  0/255 label resized to 1024×1024 without keeping aspect (``F.interpolate``, bilinear,
  ``align_corners=False``, its dataloader's ``Resize``), foreground = value > 128, then the extreme pixel
  indices (``misc.masks_to_boxes``) — and that 1024-frame box is expressed back in original pixels
  (x·W/1024, y·H/1024), so that a model under ``hq-sam-1024`` preprocessing, which scales prompts by
  1024/W and 1024/H, receives HQ-SAM's integer box. Noise (below) is then added in the original frame,
  which equals adding it in the 1024 frame (every term scales with the box, and the clamp to [0, W] is the
  clamp to [0, 1024]) except for the 1-px minimum side.
* **Noisy box** (HQ-SAM's ``box_noise``, after DN-DETR): convert to centre/size (cx, cy, w, h); draw
  u ~ U[-1, 1) independently for each of the four; cx += u0·(w/2)·s, cy += u1·(h/2)·s, w += u2·w·s,
  h += u3·h·s; back to corners; clamp x to [0, W] and y to [0, H] (HQ-SAM clamps to its 1024 frame, which
  is the image frame here). ``box-shift`` applies only the centre terms, ``box-scale`` only the size terms.
  Never degenerate: if a side collapses below 1 px after clamping, it is widened to 1 px around its
  centre, inside the image — unless the GT box itself is narrower (a 1-px object has x0 == x1): a side
  is never widened beyond the GT box's own extent, so ``s = 0`` gives exactly the GT box for every
  object, and a 1-px object (whose noise terms are all 0) gets its GT box at every level.
* **Points**: k foreground pixels drawn uniformly without replacement (with replacement if the object
  has fewer than k pixels), as (x, y) = (column, row) pixel indices, label 1 — HQ-SAM's
  ``masks_sample_points``. Optional negatives: n background pixels drawn uniformly from the whole image,
  label 0.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from sambench.config import ProtocolCard, Setting
from sambench.inputs import replay
from sambench.types import Object, Prompt, SambenchError, keyed_rng


def prompt_rng(seed: int, protocol: str, version: int, level: str, draw: int, dataset: str,
               image_id: str, object_id: str) -> np.random.Generator:
    """The generator of one prompt: :func:`sambench.types.keyed_rng` of its key (module docstring)."""
    return keyed_rng(int(seed), str(protocol), int(version), str(level), int(draw), str(dataset),
                     str(image_id), str(object_id))


def gt_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(min x, min y, max x, max y) foreground pixel indices of ``mask``; raises on an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise SambenchError("empty mask: the object has no foreground pixel, so it has no box or point")
    return float(cols[0]), float(rows[0]), float(cols[-1]), float(rows[-1])


#: The side of HQ-SAM's evaluation frame (``--input_size`` 1024×1024 in its ``train/train.py``).
HQ_SAM_FRAME = 1024


def hq_sam_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """HQ-SAM's evaluation GT box of ``mask`` (``box_frame: hq-sam-1024``, module docstring), in original pixels."""
    import torch  # lazy: only the hq-sam-1024 box frame needs torch (HQ-SAM's own resize); keeps it out of start-up
    import torch.nn.functional as F  # lazy: as above

    h, w = mask.shape[:2]
    label = torch.from_numpy(np.where(mask, np.float32(255.0), np.float32(0.0)))[None, None]
    resized = F.interpolate(label, (HQ_SAM_FRAME, HQ_SAM_FRAME), mode="bilinear", align_corners=False)[0, 0] > 128
    try:
        x0, y0, x1, y1 = gt_box(resized.numpy())
    except SambenchError:
        raise SambenchError(f"the object ({int(np.count_nonzero(mask))} px) vanishes when its {w}×{h} label is resized "
                            f"to {HQ_SAM_FRAME}×{HQ_SAM_FRAME} (box_frame hq-sam-1024): no pixel stays > 128") from None
    sx, sy = w / HQ_SAM_FRAME, h / HQ_SAM_FRAME
    return x0 * sx, y0 * sy, x1 * sx, y1 * sy


def box_in_frame(mask: np.ndarray, frame: str = "label") -> tuple[float, float, float, float]:
    """The GT box of ``mask`` measured in ``frame`` (:data:`sambench.config.vocabulary.BOX_FRAMES`), in original pixels."""
    return hq_sam_box(mask) if frame == "hq-sam-1024" else gt_box(mask)


def noisy_box(box: tuple[float, float, float, float], image_size: tuple[int, int], scale: float,
              rng: np.random.Generator, shift: bool = True, resize: bool = True) -> tuple[float, float, float, float]:
    """HQ-SAM/DN-DETR box noise at noise scale ``scale`` (see module docstring); ``image_size`` = (H, W)."""
    h_img, w_img = image_size
    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0
    u = rng.uniform(-1.0, 1.0, size=4)
    if shift:
        cx, cy = cx + u[0] * (w / 2.0) * scale, cy + u[1] * (h / 2.0) * scale
    if resize:
        w, h = w + u[2] * w * scale, h + u[3] * h * scale
    nx0, nx1 = _clamped_span(cx - w / 2.0, cx + w / 2.0, w_img, x1 - x0)
    ny0, ny1 = _clamped_span(cy - h / 2.0, cy + h / 2.0, h_img, y1 - y0)
    return nx0, ny0, nx1, ny1


def _clamped_span(a: float, b: float, limit: int, gt_extent: float) -> tuple[float, float]:
    """Clamp ``[a, b]`` to ``[0, limit]``; a span narrower than ``min(1, gt_extent)`` is widened to that.

    ``gt_extent`` is the GT box's own ``x1 - x0`` (0 for a 1-px object): the minimum width never exceeds
    it, so an un-noised box is returned unchanged (s = 0 is exactly the GT box).
    """
    a, b = min(max(a, 0.0), float(limit)), min(max(b, 0.0), float(limit))
    least = min(1.0, max(float(gt_extent), 0.0))
    if b - a < least:  # collapsed: widen around the centre, inside [0, limit]
        half = least / 2.0
        c = min(max((a + b) / 2.0, half), limit - half)
        a, b = c - half, c + half
    return a, b


def random_points(mask: np.ndarray, k: int, rng: np.random.Generator, negatives: int = 0) -> Prompt:
    """k uniform foreground pixels (label 1) then ``negatives`` uniform background pixels (label 0)."""
    fg = np.flatnonzero(mask.ravel())
    if fg.size == 0:
        raise SambenchError("empty mask: the object has no foreground pixel, so it has no box or point")
    width = mask.shape[1]
    pick = rng.choice(fg.size, size=k, replace=fg.size < k)
    idx = [int(i) for i in fg[pick]]
    labels = [1] * k
    if negatives:
        bg = np.flatnonzero(~mask.ravel())
        if bg.size == 0:
            raise SambenchError("the object covers the whole image: no background pixel for a negative point")
        nidx = bg[rng.choice(bg.size, size=negatives, replace=bg.size < negatives)]
        idx += [int(i) for i in nidx]
        labels += [0] * negatives
    return Prompt(points=tuple((float(i % width), float(i // width)) for i in idx), labels=tuple(labels))


def make_prompt(setting: Setting, mask: np.ndarray, rng: np.random.Generator) -> Prompt:
    """The prompt of one setting for one object mask, using ``rng`` for any randomness."""
    p = dict(setting.params)
    if setting.kind == "gt-mask":  # a video protocol's ceiling: sambench/execution/video.py gives the mask itself
        raise SambenchError("a 'gt-mask' setting prompts with the GT mask itself, not a box or points")
    if setting.kind == "points":
        return random_points(mask, p["k"], rng, p.get("negatives", 0))
    box = box_in_frame(mask, p.get("box_frame", "label"))
    if setting.kind == "gt-box":
        return Prompt(box=box)
    shift = setting.kind in ("noisy-box", "box-shift")
    resize = setting.kind in ("noisy-box", "box-scale")
    return Prompt(box=noisy_box(box, mask.shape[:2], p["scale"], rng, shift=shift, resize=resize))


@dataclass(frozen=True)
class PromptTask:
    """One (level, draw, object) cell of a protocol, with its realised prompt (or the error it raised)."""

    protocol: str
    version: int
    level: str
    level_value: Optional[float]
    draw: int
    object_id: str
    prompt: Optional[Prompt]
    error: Optional[str] = None


class Protocol:
    """A protocol card made executable: iterate the prompts of every object of an image.

    A replay card (``kind: replay``) is resolved here (its levels and draws read from its file,
    :func:`sambench.inputs.replay.resolve`) unless it already was; its prompts are the file's."""

    def __init__(self, card: ProtocolCard) -> None:
        self.card = replay.resolve(card)

    @property
    def name(self) -> str:
        return self.card.name

    def prompt(self, setting: Setting, draw: int, dataset: str, image_id: str, obj: Object) -> Prompt:
        if setting.replayed:
            if not self.card.replayed:
                raise SambenchError(f"protocol '{self.card.name}' level '{setting.level}' replays a file, and no "
                                    f"file is recorded with it")
            found = replay.replay_file(self.card).prompts_for(dataset, image_id, [obj], only=obj.id)
            found = found.get((obj.id, setting.level), [])
            if draw >= len(found):
                raise SambenchError(f"{self.card.replay['file']}: no prompt {draw} of {dataset}/{image_id}/{obj.id} "
                                    f"at level '{setting.level}' (it has {len(found)})")
            return found[draw]
        rng = prompt_rng(self.card.seed, self.card.name, self.card.version, setting.level, draw, dataset,
                         image_id, obj.id)
        return make_prompt(setting, obj.mask, rng)

    def tasks(self, dataset: str, image_id: str, objects: list[Object]) -> Iterator[PromptTask]:
        """Every (level, draw, object) of this image in a fixed order; failures become error tasks.

        Click sequences (``kind: clicks``) have no prompt before the model answers: they yield nothing
        here and run in :mod:`sambench.execution.sequences`."""
        if self.card.replayed:
            yield from self._replayed_tasks(dataset, image_id, objects)
            return
        for setting in self.card.settings:
            if setting.interactive:
                continue
            for draw in range(self.card.draws_for(setting)):
                for obj in objects:
                    try:
                        prompt, err = self.prompt(setting, draw, dataset, image_id, obj), None
                    except SambenchError as exc:
                        prompt, err = None, str(exc)
                    yield PromptTask(self.card.name, self.card.version, setting.level, setting.level_value, draw,
                                     obj.id, prompt, err)


    def _replayed_tasks(self, dataset: str, image_id: str, objects: list[Object]) -> Iterator[PromptTask]:
        """The replayed prompts of this image: per level, draw d of an object is its d-th prompt of the level
        in the file (up to ``draws``); an object without one at a level has no task there. A file that does
        not fit the image raises its one line (:func:`sambench.inputs.replay.check_dataset` checks it first)."""
        found = replay.replay_file(self.card).prompts_for(dataset, image_id, objects)
        for setting in self.card.settings:
            for draw in range(self.card.draws):
                for obj in objects:
                    prompts = found.get((obj.id, setting.level), [])
                    if draw < len(prompts):
                        yield PromptTask(self.card.name, self.card.version, setting.level, setting.level_value, draw,
                                         obj.id, prompts[draw])


def prompt_set_hash(entries) -> str:
    """sha256 of a set of realised prompts, order-independent.

    ``entries``: iterable of ``(image_id, object_id, level, draw, prompt_hash)``. Used by run manifests
    (per protocol and dataset) and by ``sambench prompts export``, so the two can be compared.
    """
    h = hashlib.sha256()
    for image_id, object_id, level, draw, ph in sorted(set((str(a), str(b), str(c), int(d), str(e)) for a, b, c, d, e in entries)):
        h.update(f"{image_id}\x1f{object_id}\x1f{level}\x1f{draw}\x1f{ph}\n".encode("utf-8"))
    return h.hexdigest()
