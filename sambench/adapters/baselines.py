"""Classical baselines that need no weights: ``box-fill`` and ``grabcut``.

``box-fill`` — the prompt box itself as the mask: every pixel whose centre lies inside the box. With
sambench's box convention (x0, y0, x1, y1 = min/max foreground pixel indices) pixel (r, c) is inside when
``x0 <= c <= x1`` and ``y0 <= r <= y1`` after rounding the box to the nearest pixel index. For point prompts
it returns an empty mask (a box-less floor). Score: NaN (no quality estimate). This is the floor every
model must beat.

``grabcut`` — OpenCV's GrabCut (Rother et al. 2004). A box initialises the rectangle (outside =
definite background, inside = probable foreground); points become definite-foreground seeds (label 1) or
definite-background seeds (label 0) on a probable-background mask; a box with points uses both — which
is how it takes the interactive protocol's corrective clicks, as GrabCut's user-marked fg/bg strokes (a
disk of radius ~1% of the short side per click; it takes no mask prompt, so each step re-runs GrabCut
from the box and all clicks so far). To make
it practical on CPU it works on a copy downscaled so that its longest side is at most ``max_side``
pixels (card default 320; 0 = full resolution) with ``iterations`` rounds (card default 3), and the result is
resized back to the original size with nearest-neighbour interpolation. OpenCV's k-means initialisation
uses OpenCV's thread RNG: it is reseeded from the prompt's hash before every call, so the result of a
prompt never depends on what ran before it. benchmarks/bench_grabcut.py measures the accuracy cost of the
speed-ups against full-resolution 5-iteration GrabCut.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from sambench.adapters.base import Adapter, OptionValueError, known_options
from sambench.config import ModelCard
from sambench.types import Prediction, Prompt, SambenchError

BASELINE_VERSION = "1"


class _ImageState:
    __slots__ = ("image", "small", "scale")

    def __init__(self, image: np.ndarray, small: np.ndarray, scale: float) -> None:
        self.image, self.small, self.scale = image, small, scale


class BoxFillAdapter(Adapter):
    """The prompt box as the predicted mask (see module docstring)."""

    name = "box-fill"
    capabilities = frozenset({"box", "points", "box+points"})
    interactive = False  # points never change its mask: corrective clicks mean nothing to it

    def __init__(self, name: str = "box-fill") -> None:
        super().__init__()
        self.name = name

    def signature(self) -> dict:
        return {"model": self.name, "adapter": "box-fill", "adapter_version": BASELINE_VERSION,
                "weights_sha256": None}

    def encode(self, image: np.ndarray, preprocessing: str = "sam") -> Any:
        self.encoder_calls += 1
        return image.shape[:2]

    def predict(self, state: Any, prompts: Sequence[Prompt], mask_selection: str = "single") -> Prediction:
        h, w = state
        masks = np.zeros((len(prompts), h, w), dtype=bool)
        for i, p in enumerate(prompts):
            if p.box is not None:
                x0, y0, x1, y1 = (int(np.floor(v + 0.5)) for v in p.box)
                masks[i, max(y0, 0):max(y1 + 1, 0), max(x0, 0):max(x1 + 1, 0)] = True
        self.decoded_prompts += len(prompts)
        return Prediction(masks=masks, scores=np.full(len(prompts), np.nan))


class GrabCutAdapter(Adapter):
    """OpenCV GrabCut on a downscaled copy (see module docstring)."""

    name = "grabcut"
    capabilities = frozenset({"box", "points", "box+points"})

    def __init__(self, name: str = "grabcut", max_side: int = 320, iterations: int = 3) -> None:
        super().__init__()
        for key, value, low in (("iterations", iterations, 1), ("max_side", max_side, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise OptionValueError(f"model '{name}'", key, f"must be an integer >= {low}, got {value!r}")
        self.name, self.max_side, self.iterations = name, int(max_side), int(iterations)

    def signature(self) -> dict:
        return {"model": self.name, "adapter": "grabcut", "adapter_version": BASELINE_VERSION,
                "weights_sha256": None, "options": {"max_side": self.max_side, "iterations": self.iterations},
                "opencv": cv2.__version__}

    def encode(self, image: np.ndarray, preprocessing: str = "sam") -> Any:
        self.encoder_calls += 1
        h, w = image.shape[:2]
        scale = 1.0 if not self.max_side or max(h, w) <= self.max_side else self.max_side / max(h, w)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        small = bgr if scale == 1.0 else cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                    interpolation=cv2.INTER_AREA)
        return _ImageState(image, np.ascontiguousarray(small), scale)

    def _one(self, st: _ImageState, p: Prompt) -> np.ndarray:
        sh, sw = st.small.shape[:2]
        sx, sy = sw / st.image.shape[1], sh / st.image.shape[0]
        cv2.setRNGSeed(int(p.hash()[:7], 16))  # 28 bits: fits a C int
        mask = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
        if p.box is not None:
            x0 = min(max(int(np.floor(p.box[0] * sx)), 0), sw - 1)
            y0 = min(max(int(np.floor(p.box[1] * sy)), 0), sh - 1)
            x1 = min(max(int(np.ceil((p.box[2] + 1) * sx)), x0 + 1), sw)
            y1 = min(max(int(np.ceil((p.box[3] + 1) * sy)), y0 + 1), sh)
            mask[:] = cv2.GC_BGD
            mask[y0:y1, x0:x1] = cv2.GC_PR_FGD
        if p.points:
            for (x, y), lab in zip(p.points, p.labels):
                c = min(max(int(x * sx), 0), sw - 1)
                r = min(max(int(y * sy), 0), sh - 1)
                cv2.circle(mask, (c, r), max(1, round(min(sh, sw) / 100)), cv2.GC_FGD if lab else cv2.GC_BGD, -1)
        fg_possible = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
        if fg_possible.all() or not fg_possible.any():
            # GrabCut needs both a background and a foreground sample; a box covering the whole image
            # has no background sample: the best it can say is the box itself.
            out = fg_possible
        else:
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            cv2.grabCut(st.small, mask, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
            out = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        if st.scale != 1.0:
            out = cv2.resize(out.astype(np.uint8), (st.image.shape[1], st.image.shape[0]),
                             interpolation=cv2.INTER_NEAREST).astype(bool)
        return out

    def predict(self, state: Any, prompts: Sequence[Prompt], mask_selection: str = "single") -> Prediction:
        masks = np.stack([self._one(state, p) for p in prompts]) if prompts else \
            np.zeros((0,) + state.image.shape[:2], dtype=bool)
        self.decoded_prompts += len(prompts)
        return Prediction(masks=masks, scores=np.full(len(prompts), np.nan))


def _no_weights(card: ModelCard, checkpoint, plugin) -> None:
    if checkpoint or plugin:
        raise SambenchError(f"model '{card.name}' is a classical baseline: it takes no --checkpoint/--plugin")


def build_box_fill(card: ModelCard, *, device: str = "auto", checkpoint=None, plugin=None, options=None) -> Adapter:
    _no_weights(card, checkpoint, plugin)
    known_options(options, (), f"model '{card.name}'")
    return BoxFillAdapter(card.name)


def build_grabcut(card: ModelCard, *, device: str = "auto", checkpoint=None, plugin=None, options=None) -> Adapter:
    _no_weights(card, checkpoint, plugin)
    return GrabCutAdapter(card.name, **known_options(options, ("max_side", "iterations"), f"model '{card.name}'"))
