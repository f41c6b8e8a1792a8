"""Two weight-free video baselines: ``mask-hold`` (the floor) and ``flow-warp`` (optical flow).

Both start from a **prompt-frame mask** and differ only in how it reaches the other frames:

* a mask prompt (``video-mask``, the GT mask) is used as it is;
* a prompt with a box (``video-noisy-box``; a box with points too) becomes the box itself, by the
  ``box-fill`` image baseline's rule: every pixel whose centre lies inside the box rounded to the nearest
  pixel index (sambench/adapters/baselines.py);
* a points-only prompt (``video-points``, ``video-clicks``) becomes the ``grabcut`` image baseline's mask on
  the prompt frame (its card defaults: longest side 320 px, 3 iterations; positive points are definite
  foreground seeds, negative ones definite background, OpenCV's RNG reseeded from the prompt's hash), because
  box-fill's rule gives an empty mask for points, which would make every points level score 0 and say nothing.

``mask-hold`` yields the prompt-frame mask unchanged on every frame: what a model that does not track scores,
the floor every video model must beat.

``flow-warp`` carries the mask frame to frame with dense optical flow: for the next frame ``u`` after frame
``t`` (``u = t + 1`` forward, ``t - 1`` backward) it computes the flow from ``u`` to ``t`` on the grey frames
(for each pixel of ``u``, where it was in ``t``), samples the previous mask there (``cv2.remap``, bilinear on
the 0/1 mask, pixels mapped outside the frame read 0) and keeps the pixels >= 0.5. The mask is chained: frame
``t + 2`` warps the warped mask of ``t + 1``, so errors accumulate as they would for a tracker without
re-detection. Flow: OpenCV's DIS (``cv2.DISOpticalFlow``, preset ``medium``; option ``method: dis``, the
default) or Farneback (``method: farneback``, OpenCV's documented parameters: pyramid scale 0.5, 3 levels,
window 15, 3 iterations, poly_n 5, poly_sigma 1.2). Frames larger than ``max_side`` (option, default 480; 0 =
full resolution) along their longest side are downscaled (INTER_AREA) for the flow, which is then upscaled and
rescaled to full resolution.

**Encode once**: a session converts each frame to grey at most once (``encoder_calls`` counts frames
converted) and computes each (u, t) flow at most once, however many prompts are propagated; flows are kept
as float16 on the session (about 0.5 MB per frame pair at 480 px), released by :meth:`close`. Scores are
None (no quality estimate).
"""

from __future__ import annotations

from typing import Iterator, Optional

import cv2
import numpy as np

from sambench.adapters.base import known_options
from sambench.adapters.baselines import BoxFillAdapter, GrabCutAdapter
from sambench.adapters.video.base import FrameSource, VideoAdapter, frame_order
from sambench.config import ModelCard
from sambench.types import Prompt, SambenchError, check_choice

VIDEO_BASELINE_VERSION = "1"
FLOW_METHODS = ("dis", "farneback")


class _Session:
    """One video's frames and what a baseline derived from them (grey frames, flows), computed once."""

    def __init__(self, frames: FrameSource) -> None:
        self.frames = frames
        self.grey: dict[int, np.ndarray] = {}
        self.flows: dict[tuple[int, int], np.ndarray] = {}
        self.size: Optional[tuple[int, int]] = None


class _PromptFrameBaseline(VideoAdapter):
    """The shared part: a session, the prompt-frame mask (module docstring) and the frame order."""

    capabilities = frozenset({"box", "points", "box+points", "mask"})
    kind = ""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._box_fill = BoxFillAdapter()
        self._grabcut = GrabCutAdapter()

    def _options(self) -> dict:
        return {}

    def signature(self) -> dict:
        sig = {"model": self.name, "adapter": self.kind, "adapter_version": VIDEO_BASELINE_VERSION,
               "weights_sha256": None, "options": self._options()}
        return {**sig, "opencv": cv2.__version__}

    def open(self, frames: FrameSource) -> _Session:
        return _Session(frames)

    def close(self, session: _Session) -> None:
        session.grey.clear()
        session.flows.clear()

    def prompt_mask(self, frame: np.ndarray, prompt: Optional[Prompt], mask: Optional[np.ndarray]) -> np.ndarray:
        """The prompt-frame mask of ``prompt`` or ``mask`` on ``frame`` (module docstring)."""
        if mask is not None:
            return np.asarray(mask, dtype=bool).copy()
        image = self._box_fill if prompt.box is not None else self._grabcut
        return np.asarray(image.predict(image.encode(frame), [prompt]).masks[0], dtype=bool)

    def propagate(self, session: _Session, prompt_frame: int, prompt: Optional[Prompt] = None,
                  mask: Optional[np.ndarray] = None, direction: str = "forward"
                  ) -> Iterator[tuple[int, np.ndarray, Optional[float]]]:
        self.check_request(session.frames, prompt_frame, prompt, mask, direction)
        self.propagations += 1
        first = self.prompt_mask(session.frames[prompt_frame], prompt, mask)
        yield prompt_frame, first, None
        previous = {prompt_frame: first}
        for t in frame_order(len(session.frames), prompt_frame, direction)[1:]:
            source = t - 1 if t > prompt_frame else t + 1  # the frame this one is carried from
            previous[t] = self.carry(session, previous.pop(source) if source != prompt_frame else first, source, t)
            yield t, previous[t], None

    def carry(self, session: _Session, mask: np.ndarray, source: int, target: int) -> np.ndarray:
        """The mask of frame ``target`` given the mask of the adjacent frame ``source``."""
        raise NotImplementedError


class MaskHoldAdapter(_PromptFrameBaseline):
    """The prompt-frame mask on every frame: the floor (module docstring)."""

    kind = "mask-hold"

    def carry(self, session: _Session, mask: np.ndarray, source: int, target: int) -> np.ndarray:
        return mask


class FlowWarpAdapter(_PromptFrameBaseline):
    """The prompt-frame mask warped frame to frame by dense optical flow (module docstring)."""

    kind = "flow-warp"

    def __init__(self, name: str, method: str = "dis", max_side: int = 480) -> None:
        super().__init__(name)
        check_choice(method, FLOW_METHODS, "'method'", f"model '{name}'")
        if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 0:
            raise SambenchError(f"model '{name}': 'max_side' must be an integer >= 0, got {max_side!r}")
        self.method, self.max_side = method, int(max_side)

    def _options(self) -> dict:
        return {"method": self.method, "max_side": self.max_side}

    def _grey(self, session: _Session, t: int) -> np.ndarray:
        if t not in session.grey:
            frame = session.frames[t]
            h, w = frame.shape[:2]
            session.size = (h, w)
            grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
            scale = 1.0 if not self.max_side or max(h, w) <= self.max_side else self.max_side / max(h, w)
            if scale != 1.0:
                grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))),
                                  interpolation=cv2.INTER_AREA)
            session.grey[t] = grey
            self.encoder_calls += 1
        return session.grey[t]

    def flow(self, session: _Session, target: int, source: int) -> np.ndarray:
        """Flow (H, W, 2) float32 at full resolution from ``target`` to ``source``: pixel (x, y) of ``target`` was
        at (x + fx, y + fy) in ``source``. Computed once per session and pair."""
        key = (target, source)
        if key not in session.flows:
            a, b = self._grey(session, target), self._grey(session, source)
            if self.method == "dis":
                flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)
            else:
                flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            session.flows[key] = flow.astype(np.float16)
        flow = session.flows[key].astype(np.float32)
        h, w = session.size
        fh, fw = flow.shape[:2]
        if (fh, fw) != (h, w):
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
            flow[..., 0] *= w / fw
            flow[..., 1] *= h / fh
        return flow

    def carry(self, session: _Session, mask: np.ndarray, source: int, target: int) -> np.ndarray:
        flow = self.flow(session, target, source)
        h, w = mask.shape
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        warped = cv2.remap(mask.astype(np.float32), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        return warped >= 0.5


def _no_weights(card: ModelCard, checkpoint, plugin) -> None:
    if checkpoint or plugin:
        raise SambenchError(f"model '{card.name}' is a weight-free video baseline: it takes no --checkpoint/--plugin")


def build_mask_hold(card: ModelCard, *, device: str = "auto", checkpoint=None, plugin=None,
                    options=None) -> MaskHoldAdapter:
    _no_weights(card, checkpoint, plugin)
    known_options(options, (), f"model '{card.name}'")
    return MaskHoldAdapter(card.name)


def build_flow_warp(card: ModelCard, *, device: str = "auto", checkpoint=None, plugin=None,
                    options=None) -> FlowWarpAdapter:
    _no_weights(card, checkpoint, plugin)
    return FlowWarpAdapter(card.name, **known_options(options, ("method", "max_side"), f"model '{card.name}'"))


__all__ = ["FLOW_METHODS", "FlowWarpAdapter", "MaskHoldAdapter", "VIDEO_BASELINE_VERSION",
           "build_flow_warp", "build_mask_hold"]
