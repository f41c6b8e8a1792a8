"""``grabcut-video-sample``: short synthetic videos built from the shipped GrabCut images, with exact GT.

docs/video.md ("The shipped synthetic sequences") says the same. Each video pastes one or two GrabCut
objects (cut out with their GT masks) over another GrabCut image used as background, and moves them:

* **canvas** 320×240 (W×H), 10 frames, 5 videos (:data:`VIDEOS`: object images, background image);
* **background**: the background image resized to cover the canvas (aspect kept, centre crop, INTER_AREA);
* **path**: each object's centre follows a quadratic Bézier curve from a start to an end point through a
  control point, all three drawn from ``keyed_rng("grabcut-video-sample", GENERATOR_VERSION, video,
  object)``; the object's height goes linearly from a start to an end scale (fractions of the canvas
  height, drawn from the same generator: the scale change);
* **late entry**: a second object (video ``v5-two-objects``) enters from outside the canvas, so it is
  absent (all-False mask) in the first frames and its track starts late;
* **occluder**: a solid gray bar 36 px wide, full canvas height, crosses the canvas from left to right
  over the video at a keyed speed and offset, drawn over the objects;
* **exact GT**: each object's mask is its GT mask resized with nearest neighbour to the pasted size and
  clipped to the canvas; the pasted pixels are exactly the mask's pixels (the colour is resized with
  INTER_AREA), later objects are drawn over earlier ones, and every mask loses the pixels covered by
  what is drawn over it (the occluder, a later object). Masks are therefore the visible pixels exactly.

A frame is rendered on demand from ``t`` alone (nothing holds a whole video); rendering one costs about a
millisecond. Same generator version, same frames, bit for bit, on any machine with the same OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from sambench.datasets.base import file_sha256, read_image, read_mask
from sambench.datasets.presets import GRABCUT_SAMPLE_DIR
from sambench.datasets.video_base import VideoDataset
from sambench.types import SambenchError, keyed_rng, stable_hash

#: Bumped whenever a frame or a mask would change (it is part of the keys and the hash).
GENERATOR_VERSION = 1
WIDTH, HEIGHT, FRAMES = 320, 240, 10
OCCLUDER_WIDTH, OCCLUDER_GRAY = 36, 128

#: video id -> (object images, in drawing order; background image)
VIDEOS: dict[str, tuple[tuple[str, ...], str]] = {
    "v1-banana": (("banana1",), "stone2"),
    "v2-flower": (("flower",), "bush"),
    "v3-llama": (("llama",), "grave"),
    "v4-teddy": (("teddy",), "memorial"),
    "v5-two-objects": (("book", "sheep"), "cross"),
}

GRABCUT_VIDEO_DESCRIPTION = (f"{len(VIDEOS)} synthetic videos ({FRAMES} frames, {WIDTH}x{HEIGHT}) generated from the "
                             "shipped GrabCut images: objects moved along keyed paths with scale change, a crossing "
                             "occluder and a late entry; exact GT (research use only)")


@dataclass(frozen=True)
class _Motion:
    start: tuple[float, float]
    control: tuple[float, float]
    end: tuple[float, float]
    scale0: float
    scale1: float

    def at(self, t: int) -> tuple[float, float, float]:
        """(centre x, centre y, height as a fraction of the canvas) at frame t."""
        s = t / (FRAMES - 1)
        x = (1 - s) ** 2 * self.start[0] + 2 * (1 - s) * s * self.control[0] + s ** 2 * self.end[0]
        y = (1 - s) ** 2 * self.start[1] + 2 * (1 - s) * s * self.control[1] + s ** 2 * self.end[1]
        return x, y, self.scale0 + (self.scale1 - self.scale0) * s


def _motion(video_id: str, index: int, obj: str) -> _Motion:
    rng = keyed_rng("grabcut-video-sample", GENERATOR_VERSION, video_id, index, obj)
    scale0, scale1 = rng.uniform(0.45, 0.65), rng.uniform(0.3, 0.5)
    if index == 0:
        start = (rng.uniform(0.3, 0.45) * WIDTH, rng.uniform(0.4, 0.6) * HEIGHT)
    else:   # enters from the right edge: fully outside at t = 0
        start = (WIDTH * 1.6, rng.uniform(0.45, 0.6) * HEIGHT)
    end = (rng.uniform(0.55, 0.7) * WIDTH, rng.uniform(0.4, 0.6) * HEIGHT)
    control = (rng.uniform(0.35, 0.65) * WIDTH, rng.uniform(0.25, 0.75) * HEIGHT)
    return _Motion(start, control, end, scale0, scale1)


def _occluder_x(video_id: str, t: int) -> int:
    """Left edge of the occluding bar at frame t: it crosses the canvas once over the video."""
    rng = keyed_rng("grabcut-video-sample", GENERATOR_VERSION, video_id, "occluder")
    x0, x1 = rng.uniform(-OCCLUDER_WIDTH, 0.15 * WIDTH), rng.uniform(0.8 * WIDTH, WIDTH)
    return int(round(x0 + (x1 - x0) * t / (FRAMES - 1)))


class SyntheticVideoDataset(VideoDataset):
    """The shipped ``grabcut-video-sample`` (module docstring); frames are rendered lazily."""

    format = "grabcut-video"

    def __init__(self, source: Path = GRABCUT_SAMPLE_DIR, name: Optional[str] = None) -> None:
        super().__init__()
        self.name = name or "grabcut-video-sample"
        self.root = Path(source)
        self._sprites: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._backgrounds: dict[str, np.ndarray] = {}
        for objs, bg in VIDEOS.values():
            for f in [self._image(o) for o in objs] + [self._mask(o) for o in objs] + [self._image(bg)]:
                if not f.is_file():
                    raise SambenchError(f"{f}: source file of grabcut-video-sample not found")

    def _image(self, name: str) -> Path:
        return self.root / "images" / f"{name}.jpg"

    def _mask(self, name: str) -> Path:
        return self.root / "masks" / f"{name}.png"

    # -- sources ---------------------------------------------------------------------------------------------
    def _sprite(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The object's image and mask cropped to the mask's bounding box."""
        if name not in self._sprites:
            img, mask = read_image(self._image(name)), read_mask(self._mask(name))
            ys, xs = np.nonzero(mask)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            self._sprites[name] = (img[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy())
        return self._sprites[name]

    def background(self, video_id: str) -> np.ndarray:
        """The video's background (RGB uint8, canvas size): every frame pixel outside the masks and the occluder."""
        self._check_video(video_id)
        return self._background(VIDEOS[video_id][1]).copy()

    def _background(self, name: str) -> np.ndarray:
        if name not in self._backgrounds:
            img = read_image(self._image(name))
            h, w = img.shape[:2]
            s = max(WIDTH / w, HEIGHT / h)
            nw, nh = max(WIDTH, int(round(w * s))), max(HEIGHT, int(round(h * s)))
            big = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
            y0, x0 = (nh - HEIGHT) // 2, (nw - WIDTH) // 2
            self._backgrounds[name] = np.ascontiguousarray(big[y0:y0 + HEIGHT, x0:x0 + WIDTH])
        return self._backgrounds[name]

    # -- rendering -------------------------------------------------------------------------------------------
    def _layers(self, video_id: str, t: int):
        """Each object's (colour, mask, x0, y0) placement at frame t, in drawing order."""
        objs, _ = VIDEOS[video_id]
        for i, obj in enumerate(objs):
            img, mask = self._sprite(obj)
            cx, cy, scale = _motion(video_id, i, obj).at(t)
            h = max(2, int(round(scale * HEIGHT)))
            w = max(2, int(round(mask.shape[1] * h / mask.shape[0])))
            yield (cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA),
                   cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool),
                   int(round(cx - w / 2)), int(round(cy - h / 2)))

    def render(self, video_id: str, t: int, with_image: bool = True) -> tuple[Optional[np.ndarray], dict]:
        """Frame ``t`` (RGB uint8, or None when ``with_image`` is False) and its exact visible masks."""
        self._check_video(video_id)
        t = self._check_t(video_id, t)
        frame = self._background(VIDEOS[video_id][1]).copy() if with_image else None
        masks: dict[str, np.ndarray] = {}
        for i, (img, mask, x0, y0) in enumerate(self._layers(video_id, t)):
            full = np.zeros((HEIGHT, WIDTH), bool)
            cy0, cy1, cx0, cx1 = max(0, y0), min(HEIGHT, y0 + mask.shape[0]), max(0, x0), min(WIDTH, x0 + mask.shape[1])
            if cy0 < cy1 and cx0 < cx1:
                m = mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
                full[cy0:cy1, cx0:cx1] = m
                if frame is not None:
                    region = frame[cy0:cy1, cx0:cx1]
                    region[m] = img[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0][m]
            for earlier in masks.values():
                earlier &= ~full
            masks[str(i + 1)] = full
        ox = _occluder_x(video_id, t)
        a, b = max(0, ox), min(WIDTH, ox + OCCLUDER_WIDTH)
        if a < b:
            if frame is not None:
                frame[:, a:b] = OCCLUDER_GRAY
            for m in masks.values():
                m[:, a:b] = False
        return frame, masks

    # -- VideoDataset ----------------------------------------------------------------------------------------
    def videos(self) -> list[str]:
        return sorted(VIDEOS)

    def frame_ids(self, video_id: str) -> list[str]:
        self._check_video(video_id)
        return [f"{t:05d}" for t in range(FRAMES)]

    def object_ids(self, video_id: str) -> list[str]:
        self._check_video(video_id)
        return [str(i + 1) for i in range(len(VIDEOS[video_id][0]))]

    def annotated(self, video_id: str) -> list[int]:
        self._check_video(video_id)
        return list(range(FRAMES))

    def _read_frame(self, video_id: str, t: int) -> np.ndarray:
        return self.render(video_id, t)[0]

    def masks(self, video_id: str, t: int) -> Optional[dict[str, np.ndarray]]:
        return self.render(video_id, t, with_image=False)[1]

    def source_files(self, video_id: str) -> list[Path]:
        objs, bg = VIDEOS[video_id]
        return [self._image(o) for o in objs] + [self._mask(o) for o in objs] + [self._image(bg)]

    def video_hash(self, video_id: str) -> str:
        self._check_video(video_id)
        files = [[f.relative_to(self.root).as_posix(), file_sha256(f)] for f in self.source_files(video_id)]
        return stable_hash("sambench-video", self.format, GENERATOR_VERSION, video_id, VIDEOS[video_id],
                           [WIDTH, HEIGHT, FRAMES, OCCLUDER_WIDTH, OCCLUDER_GRAY], files)

    def describe(self) -> dict:
        return {**super().describe(), "generator_version": GENERATOR_VERSION, "source": "grabcut_sample"}


def grabcut_video_sample(*, name: Optional[str] = None, **options: Any) -> SyntheticVideoDataset:
    """The shipped ``grabcut-video-sample`` (no options)."""
    if options:
        raise SambenchError(f"dataset 'grabcut-video-sample': takes no options (got {', '.join(sorted(options))})")
    return SyntheticVideoDataset(name=name)
