"""The video dataset interface: :class:`Track`, :class:`VideoDataset`, :class:`VideoFrames`.

Public names are re-exported by :mod:`sambench.datasets.video` (the module to import from).

A :class:`VideoDataset` holds videos; each video has frames (RGB uint8, read one file at a time, in any
order, with a tiny LRU) and per-frame object masks. The unit of scoring is a :class:`Track`, one object of
one video. Conventions:

* ``frame_ids(video)`` are the frame names in order (``"00000"``...); frame ``t`` is the ``t``-th of them.
* ``masks(video, t)`` maps object id -> bool (H, W) for an **annotated** frame, ``None`` for an
  unannotated one (YouTube-VOS / MOSE valid, SA-V at 6 fps in a 24 fps video). An object absent from an
  annotated frame is an all-False mask, never a missing key, except in YouTube-VOS / MOSE sparse splits
  (``valid``, ``test``), whose PNG annotates only the objects first seen in it: there a missing key means
  "not annotated for this object" (see :mod:`sambench.datasets.video_formats`).
* ``void(video, t)``: DAVIS 2017's void pixels (index 255) as bool (H, W), or ``None`` (every other format).
  DAVIS's semi-supervised evaluation does not use them; they are exposed for callers that want them.
* ``tracks(video)``: one :class:`Track` per object, with ``first_frame`` = the first annotated frame where
  its mask is non-empty (objects that appear late start late). An object never present is not a track.

``open_video_dataset(spec)`` opens ``davis2016:PATH``, ``davis2017:PATH``, ``ytvos:PATH``, ``mose:PATH``,
``sav:PATH``, the shipped ``grabcut-video-sample``, or a bare PATH whose format is detected.
"""

from __future__ import annotations

import abc
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from sambench.datasets.base import file_sha256, read_image
from sambench.types import SambenchError, did_you_mean, stable_hash

#: Frames kept decoded per dataset (a propagation reads frame t, then t+1: a tiny cache is enough).
FRAME_CACHE = 4


@dataclass(frozen=True)
class Track:
    """One object track: the unit of scoring."""

    dataset: str
    video_id: str
    object_id: str      #: DAVIS 2017 palette index as str ("1", "2"); DAVIS 2016 "1"
    first_frame: int    #: index of the object's first annotated frame where it is present (non-empty)


class VideoFrames:
    """A video's frames as a lazy sequence (the adapters' ``FrameSource``): ``len`` and ``[t]`` only.

    ``key`` = (dataset, video, corruption, severity) with the clean frames' ``("none", 0)``; a corrupting
    wrapper makes its own key.
    """

    def __init__(self, dataset: "VideoDataset", video_id: str) -> None:
        self._dataset = dataset
        self.video_id = video_id
        self._n = dataset.frame_count(video_id)
        self.key = (dataset.name, video_id, "none", 0)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, t: int) -> np.ndarray:
        if not isinstance(t, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {type(t).__name__}")
        if t < 0:
            t += self._n
        if not 0 <= t < self._n:
            raise IndexError(f"{self.video_id}: frame {t} out of range (0..{self._n - 1})")
        return self._dataset.frame(self.video_id, int(t))


class VideoDataset(abc.ABC):
    """A set of videos, each with frames and per-frame object masks (module docstring: conventions).

    Subclasses implement :meth:`videos`, :meth:`frame_ids`, :meth:`frame_file`, :meth:`object_ids`,
    :meth:`annotated` and :meth:`masks`; errors are :class:`SambenchError` with one line naming the file.
    """

    name: str
    format: str = ""
    root: Optional[Path] = None

    def __init__(self) -> None:
        self._frames: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._tracks: dict[str, list[Track]] = {}

    # -- what a format provides -------------------------------------------------------------------------
    @abc.abstractmethod
    def videos(self) -> list[str]:
        """Sorted video ids."""

    @abc.abstractmethod
    def frame_ids(self, video_id: str) -> list[str]:
        """The video's frame names, in order (``"00000"``, ...)."""

    @abc.abstractmethod
    def object_ids(self, video_id: str) -> list[str]:
        """The video's object ids (sorted numerically where they are numbers)."""

    @abc.abstractmethod
    def annotated(self, video_id: str) -> list[int]:
        """Indices of the frames that carry an annotation."""

    @abc.abstractmethod
    def masks(self, video_id: str, t: int) -> Optional[dict[str, np.ndarray]]:
        """object id -> bool (H, W) at frame ``t``; None when frame ``t`` is not annotated."""

    def frame_file(self, video_id: str, t: int) -> Optional[Path]:
        """The file frame ``t`` is read from (None for generated frames)."""
        return None

    def _read_frame(self, video_id: str, t: int) -> np.ndarray:
        f = self.frame_file(video_id, t)
        if f is None:
            raise SambenchError(f"{self.name}/{video_id}: frame {t} has no file")
        return read_image(f)

    def void(self, video_id: str, t: int) -> Optional[np.ndarray]:
        """Void pixels of frame ``t`` (bool (H, W)) or None; only DAVIS 2017 has them."""
        return None

    def annotation_files(self, video_id: str) -> list[Path]:
        """The files the video's annotation is read from (hashing, messages)."""
        return []

    # -- shared ------------------------------------------------------------------------------------------
    def _check_video(self, video_id: str) -> None:
        if video_id not in self._video_set():
            raise SambenchError(f"{self.name}: unknown video {video_id!r}{did_you_mean(video_id, self.videos())}")

    def _video_set(self) -> set:
        s = getattr(self, "_videos_cache", None)
        if s is None:
            s = self._videos_cache = set(self.videos())
        return s

    def _check_t(self, video_id: str, t: int) -> int:
        n = self.frame_count(video_id)
        if not isinstance(t, (int, np.integer)) or not 0 <= t < n:
            raise SambenchError(f"{self.name}/{video_id}: frame index {t!r} out of range (0..{n - 1})")
        return int(t)

    def frame_count(self, video_id: str) -> int:
        return len(self.frame_ids(video_id))

    def frame(self, video_id: str, t: int) -> np.ndarray:
        """Frame ``t`` as RGB uint8 (H, W, 3); reads one file (a tiny LRU keeps the last few)."""
        t = self._check_t(video_id, t)
        key = (video_id, t)
        with self._lock:
            img = self._frames.get(key)
            if img is not None:
                self._frames.move_to_end(key)
                return img
        img = self._read_frame(video_id, t)
        img.setflags(write=False)
        with self._lock:
            self._frames[key] = img
            while len(self._frames) > FRAME_CACHE:
                self._frames.popitem(last=False)
        return img

    def frames(self, video_id: str) -> VideoFrames:
        """The video's frames as a lazy sequence (what execution hands a video adapter)."""
        self._check_video(video_id)
        return VideoFrames(self, video_id)

    def first_frames(self, video_id: str) -> dict[str, int]:
        """object id -> first annotated frame where its mask is non-empty (objects never present are left
        out). The default reads every annotated frame's masks once; formats with an index override it."""
        first: dict[str, int] = {}
        wanted = set(self.object_ids(video_id))
        for t in self.annotated(video_id):
            m = self.masks(video_id, t) or {}
            for oid, mask in m.items():
                if oid not in first and mask.any():
                    first[oid] = t
            if wanted <= set(first):
                break
        return first

    def tracks(self, video_id: str) -> list[Track]:
        """One :class:`Track` per object present somewhere in the video, ordered by object id (cached)."""
        self._check_video(video_id)
        if video_id not in self._tracks:
            first = self.first_frames(video_id)
            self._tracks[video_id] = [Track(self.name, video_id, oid, first[oid])
                                      for oid in self.object_ids(video_id) if oid in first]
        return list(self._tracks[video_id])

    def all_tracks(self) -> list[Track]:
        return [tr for v in self.videos() for tr in self.tracks(v)]

    def video_hash(self, video_id: str) -> str:
        """sha256 of everything that determines one video's frames and masks (file bytes, format)."""
        files = [self.frame_file(video_id, t) for t in range(self.frame_count(video_id))]
        files += self.annotation_files(video_id)
        root = self.root
        payload = [[os.path.relpath(f, root) if root else f.name, file_sha256(f)] for f in files if f is not None]
        return stable_hash("sambench-video", self.format, self._hash_options(), payload)

    def _hash_options(self) -> Any:
        return None

    def content_hash(self) -> str:
        """sha256 over every video's :meth:`video_hash` (cached)."""
        h = getattr(self, "_content_hash", None)
        if h is None:
            h = self._content_hash = stable_hash("sambench-video-dataset", self.format, self.name,
                                                 [[v, self.video_hash(v)] for v in self.videos()])
        return h

    def describe(self) -> dict:
        vids = self.videos()
        return {"name": self.name, "format": self.format, "root": str(self.root) if self.root else None,
                "n_videos": len(vids), "n_frames": sum(self.frame_count(v) for v in vids)}

    def __len__(self) -> int:
        return len(self.videos())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({len(self.videos())} videos)>"
