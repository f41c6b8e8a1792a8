"""Readers of the public video segmentation layouts. docs/video.md ("Datasets") says the same.

* **DAVIS 2016** (:class:`Davis2016Dataset`): ``JPEGImages/<res>/<video>/<frame>.jpg`` and
  ``Annotations/<res>/<video>/<frame>.png`` (``res`` = ``480p`` by default, or ``Full-Resolution`` /
  ``1080p``), one object ``"1"`` = every non-zero pixel (binary {0, 255} files; a palette file's
  objects are merged, its 255 void excluded). ``split``: ``ImageSets/<res>/<split>.txt`` (or
  ``ImageSets/2016/<split>.txt``), whose lines are frame pairs ``/JPEGImages/480p/bear/00000.jpg
  /Annotations/480p/bear/00000.png`` or bare sequence names.
* **DAVIS 2017** (:class:`Davis2017Dataset`): the same folders with palette PNGs, one index per object
  (``"1"``, ``"2"``, ...), 0 background, 255 void (:meth:`void`). ``split``: ``ImageSets/2017/<split>.txt``
  (one sequence per line), as davis2017-evaluation reads it. A video's objects are every index found in
  its annotated frames.
* **YouTube-VOS / MOSE** (:class:`YtvosDataset`): ``<split>/JPEGImages/<video>/<frame>.jpg``,
  ``<split>/Annotations/<video>/<frame>.png`` (palette indices) and ``<split>/meta.json``
  (``{"videos": {video: {"objects": {"1": {"category": ..., "frames": [...]}}}}}``; MOSE's
  ``meta_<split>.json`` next to the split folder is read too; without a meta file objects come from the
  PNGs). Frames with a PNG are annotated. ``valid`` and ``test`` (or ``sparse=true``) are **sparse**:
  each PNG annotates only the objects that first appear in it, so ``masks(t)`` holds only the objects
  present in that PNG and a missing key means "not annotated for this object". Other splits are dense:
  every object of the video is in ``masks(t)``, all-False where absent.
* **SA-V**: :mod:`sambench.datasets.video_sav`.

Every reader lists files once, reads a frame or a mask file only when asked, and raises SambenchError with
one line naming the file and the problem.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from sambench.datasets.base import parse_bool, read_mask_values
from sambench.datasets.video_base import VideoDataset
from sambench.types import SambenchError, first_line

FRAME_EXTS = (".jpg", ".jpeg", ".png")
VOID = 255


def list_folder(path: Path, what: str) -> list[str]:
    """Sorted entries of a folder; SambenchError naming it (as ``what``) when missing or unreadable."""
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        raise SambenchError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise SambenchError(f"{path}: cannot list {what}: {exc.strerror or exc}") from None


def file_stems(path: Path, exts: tuple[str, ...], what: str) -> dict[str, str]:
    """stem -> file name of the files in ``path`` with one of ``exts`` (sorted by stem)."""
    out = {}
    for f in list_folder(path, what):
        stem, ext = os.path.splitext(f)
        if ext.lower() in exts and not f.startswith("."):
            out.setdefault(stem, f)
    return dict(sorted(out.items()))


def load_json(path: Path) -> Any:
    """A JSON file's content; SambenchError (one line naming the file) when missing or malformed."""
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise SambenchError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise SambenchError(f"{path}: cannot read JSON ({first_line(exc)})") from None


def sort_ids(ids) -> list[str]:
    """Object ids in numeric order where they are numbers ("2" before "10"), then the others."""
    return sorted(ids, key=lambda s: (0, int(s), "") if s.isdigit() else (1, 0, s))


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header (no decode)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise SambenchError(f"{path}: frame file not found") from None
    except (OSError, ValueError) as exc:
        raise SambenchError(f"{path}: cannot read image header ({exc})") from None
    return h, w


class FrameFolders(VideoDataset):
    """A video dataset whose frames are ``<frames_dir>/<video>/<frame>.<ext>`` (shared by every reader)."""

    frames_dir: Path

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._frame_names: dict[str, dict[str, str]] = {}
        self._frame_files: dict[str, list[str]] = {}
        self._sizes: dict[str, tuple[int, int]] = {}

    def _frame_map(self, video_id: str) -> dict[str, str]:
        m = self._frame_names.get(video_id)
        if m is None:
            self._check_video(video_id)
            m = file_stems(self.frames_dir / video_id, FRAME_EXTS, "frame folder")
            if not m:
                raise SambenchError(f"{self.frames_dir / video_id}: no frames (.jpg/.png) in the video's folder")
            self._frame_names[video_id] = m
            self._frame_files[video_id] = list(m.values())
        return m

    def frame_ids(self, video_id: str) -> list[str]:
        return list(self._frame_map(video_id))

    def frame_file(self, video_id: str, t: int) -> Path:
        self._frame_map(video_id)
        return self.frames_dir / video_id / self._frame_files[video_id][t]

    def frame_size(self, video_id: str) -> tuple[int, int]:
        """(H, W) of the video's first frame, from its header."""
        if video_id not in self._sizes:
            self._sizes[video_id] = _image_size(self.frame_file(video_id, 0))
        return self._sizes[video_id]

    def _check_size(self, arr: np.ndarray, video_id: str, path: Path) -> None:
        h, w = self.frame_size(video_id)
        if arr.shape[:2] != (h, w):
            raise SambenchError(f"{path}: mask is {arr.shape[1]}x{arr.shape[0]}, the video's frames are {w}x{h}")


class PngAnnotated(FrameFolders):
    """Frames in ``frames_dir/<video>/``, one annotation PNG per annotated frame in ``ann_dir/<video>/``
    (DAVIS, YouTube-VOS, MOSE); a frame is annotated when its PNG exists."""

    ann_dir: Path
    #: A video without an annotation folder: an error (DAVIS) or a video with no annotated frame.
    ann_folder_required = True

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._videos: list[str] = []
        self._ann_names: dict[str, dict[str, str]] = {}
        self._first: dict[str, dict[str, int]] = {}

    def videos(self) -> list[str]:
        return list(self._videos)

    def _ann_map(self, video_id: str) -> dict[str, str]:
        m = self._ann_names.get(video_id)
        if m is None:
            self._check_video(video_id)
            d = self.ann_dir / video_id
            if d.is_dir():
                m = file_stems(d, (".png",), "annotation folder")
            elif self.ann_folder_required:
                raise SambenchError(f"{d}: annotation folder of video {video_id!r} not found")
            else:
                m = {}
            self._ann_names[video_id] = m
        return m

    def annotated(self, video_id: str) -> list[int]:
        ann = self._ann_map(video_id)
        return [t for t, fid in enumerate(self.frame_ids(video_id)) if fid in ann]

    def annotation_files(self, video_id: str) -> list[Path]:
        return [self.ann_dir / video_id / f for f in self._ann_map(video_id).values()]

    def _values(self, video_id: str, t: int) -> Optional[tuple[np.ndarray, str, Path]]:
        """Frame ``t``'s annotation values, kind and file (None when not annotated); size-checked."""
        t = self._check_t(video_id, t)
        f = self._ann_map(video_id).get(self.frame_ids(video_id)[t])
        if f is None:
            return None
        path = self.ann_dir / video_id / f
        values, kind = read_mask_values(path)
        self._check_size(values, video_id, path)
        return values, kind, path

    def _indices(self, video_id: str, t: int) -> Optional[np.ndarray]:
        """Frame ``t``'s object indices (0 background, 255 void), None when not annotated."""
        got = self._values(video_id, t)
        if got is None:
            return None
        values, kind, _ = got
        return values.astype(np.uint8) if kind == "binary" else values

    def _scan(self, video_id: str) -> dict[str, int]:
        """Index (as str) -> first annotated frame holding it, from one pass over the PNGs (cached)."""
        if video_id not in self._first:
            first: dict[str, int] = {}
            for t in self.annotated(video_id):
                for v in np.unique(self._indices(video_id, t)).tolist():
                    if v not in (0, VOID) and str(v) not in first:
                        first[str(v)] = t
            self._first[video_id] = first
        return self._first[video_id]


# -- DAVIS ---------------------------------------------------------------------------------------------------
class _Davis(PngAnnotated):
    year = ""

    def __init__(self, root: os.PathLike | str, split: Optional[str] = None, name: Optional[str] = None,
                 resolution: str = "480p") -> None:
        super().__init__(name or f"davis{self.year}")
        self.format = f"davis{self.year}"
        root = Path(root)
        if not root.is_dir():
            raise SambenchError(f"{root}: DAVIS root directory not found")
        if not (root / "JPEGImages").is_dir() and (root / "DAVIS" / "JPEGImages").is_dir():
            root = root / "DAVIS"
        self.root, self.split, self.resolution = root, split, str(resolution)
        self.frames_dir = root / "JPEGImages" / self.resolution
        self.ann_dir = root / "Annotations" / self.resolution
        for d in (self.frames_dir, self.ann_dir):
            if not d.is_dir():
                raise SambenchError(f"{d}: not found (a DAVIS root holds JPEGImages/{self.resolution}/ and "
                                    f"Annotations/{self.resolution}/)")
        on_disk = [v for v in list_folder(self.frames_dir, "frame folder") if (self.frames_dir / v).is_dir()]
        if split is None:
            self._videos = on_disk
        else:
            listed = self._split_videos(split)
            missing = sorted(set(listed) - set(on_disk))
            if missing:
                raise SambenchError(f"{self._split_file}: lists {len(missing)} sequence(s) with no folder in "
                                    f"{self.frames_dir} (e.g. {missing[0]})")
            self._videos = sorted(listed)

    def _split_candidates(self, split: str) -> list[Path]:
        return [self.root / "ImageSets" / self.year / f"{split}.txt"]

    def _split_videos(self, split: str) -> list[str]:
        cands = self._split_candidates(split)
        f = next((c for c in cands if c.is_file()), None)
        if f is None:
            raise SambenchError(f"{cands[0]}: split file for split '{split}' not found")
        self._split_file = f
        seqs = []
        for line in f.read_text().splitlines():
            tok = line.split()
            if not tok:
                continue
            parts = [p for p in tok[0].split("/") if p]
            seq = parts[-2] if len(parts) >= 3 else parts[0]   # a frame pair, or a bare sequence name
            if seq not in seqs:
                seqs.append(seq)
        if not seqs:
            raise SambenchError(f"{f}: empty split file")
        return seqs

    def _hash_options(self) -> Any:
        return {"resolution": self.resolution}

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "resolution": self.resolution}


class Davis2016Dataset(_Davis):
    """DAVIS 2016: binary annotations, one object ``"1"`` per video (module docstring)."""

    year = "2016"

    def _split_candidates(self, split: str) -> list[Path]:
        return [self.root / "ImageSets" / self.resolution / f"{split}.txt",
                self.root / "ImageSets" / "2016" / f"{split}.txt"]

    def object_ids(self, video_id: str) -> list[str]:
        return ["1"]

    def masks(self, video_id: str, t: int) -> Optional[dict[str, np.ndarray]]:
        got = self._values(video_id, t)
        if got is None:
            return None
        values, kind, _ = got
        if kind == "binary":
            return {"1": values}
        return {"1": (values != 0) & (values != VOID) if kind == "index" else values != 0}


class Davis2017Dataset(_Davis):
    """DAVIS 2017: palette PNGs, one index per object, 255 void (module docstring)."""

    year = "2017"

    def _indices(self, video_id: str, t: int) -> Optional[np.ndarray]:
        got = self._values(video_id, t)
        if got is None:
            return None
        values, kind, path = got
        if kind == "binary" or (kind == "gray" and set(np.unique(values).tolist()) <= {0, 255}
                                and values.any()):
            raise SambenchError(f"{path}: a binary {{0, 255}} mask, not DAVIS 2017 object indices "
                                f"(open DAVIS 2016 data as davis2016:PATH)")
        return values

    def object_ids(self, video_id: str) -> list[str]:
        return sort_ids(self._scan(video_id))

    def first_frames(self, video_id: str) -> dict[str, int]:
        return dict(self._scan(video_id))

    def masks(self, video_id: str, t: int) -> Optional[dict[str, np.ndarray]]:
        values = self._indices(video_id, t)
        if values is None:
            return None
        return {oid: values == int(oid) for oid in self.object_ids(video_id)}

    def void(self, video_id: str, t: int) -> Optional[np.ndarray]:
        values = self._indices(video_id, t)
        return None if values is None else values == VOID


# -- YouTube-VOS / MOSE --------------------------------------------------------------------------------------
SPARSE_SPLITS = ("valid", "test")


class YtvosDataset(PngAnnotated):
    ann_folder_required = False

    """YouTube-VOS and MOSE: ``<split>/JPEGImages``, ``<split>/Annotations``, ``meta.json`` (module docstring)."""

    def __init__(self, root: os.PathLike | str, split: Optional[str] = None, name: Optional[str] = None,
                 sparse: Any = None) -> None:
        super().__init__(name or "ytvos")
        self.format = "ytvos"
        root = Path(root)
        if not root.is_dir():
            raise SambenchError(f"{root}: YouTube-VOS/MOSE root directory not found")
        if (root / "JPEGImages").is_dir():          # root is a split folder itself
            base, split = root, split or root.name
        else:
            if split is None:
                split = next((s for s in ("train", "valid", "val") if (root / s / "JPEGImages").is_dir()), None)
                if split is None:
                    raise SambenchError(f"{root}: no <split>/JPEGImages folder (train/, valid/) nor JPEGImages/")
            base = root / split
            if not (base / "JPEGImages").is_dir():
                raise SambenchError(f"{base / 'JPEGImages'}: not found (split '{split}')")
        self.root, self.split, self.base = root, split, base
        self.frames_dir, self.ann_dir = base / "JPEGImages", base / "Annotations"
        if not self.ann_dir.is_dir():
            raise SambenchError(f"{self.ann_dir}: annotation folder not found")
        self.sparse = split in SPARSE_SPLITS if sparse is None else parse_bool(sparse, "sparse")
        self.meta_file = next((m for m in (base / "meta.json", root / f"meta_{split}.json", root / "meta.json")
                               if m.is_file()), None)
        self._meta: Optional[dict] = None
        if self.meta_file is not None:
            meta = load_json(self.meta_file)
            vids = meta.get("videos") if isinstance(meta, dict) else None
            if not isinstance(vids, dict):
                raise SambenchError(f"{self.meta_file}: expected {{\"videos\": {{video: {{\"objects\": ...}}}}}}")
            self._meta = vids
        on_disk = [v for v in list_folder(self.frames_dir, "frame folder") if (self.frames_dir / v).is_dir()]
        self._videos = sorted(v for v in on_disk if self._meta is None or v in self._meta)

    def annotation_files(self, video_id: str) -> list[Path]:
        return super().annotation_files(video_id) + ([self.meta_file] if self.meta_file is not None else [])

    def _hash_options(self) -> Any:
        return {"sparse": self.sparse, "split": self.split}

    def _objects_meta(self, video_id: str) -> Optional[dict]:
        if self._meta is None:
            return None
        objs = self._meta.get(video_id, {}).get("objects")
        if not isinstance(objs, dict):
            raise SambenchError(f"{self.meta_file}: video {video_id!r} has no \"objects\" mapping")
        return objs

    def object_ids(self, video_id: str) -> list[str]:
        objs = self._objects_meta(video_id)
        return sort_ids(objs) if objs is not None else sort_ids(self._scan(video_id))

    def first_frames(self, video_id: str) -> dict[str, int]:
        objs = self._objects_meta(video_id)
        if objs is None:
            return dict(self._scan(video_id))
        # meta's "frames" lists where each object is present; its first frame that is annotated here
        pos = {fid: t for t, fid in enumerate(self.frame_ids(video_id))}
        ann = set(self.annotated(video_id))
        first = {}
        for oid, o in objs.items():
            ts = sorted(pos[f] for f in (o.get("frames") or []) if f in pos and pos[f] in ann)
            if ts:
                first[str(oid)] = ts[0]
        return first

    def masks(self, video_id: str, t: int) -> Optional[dict[str, np.ndarray]]:
        values = self._indices(video_id, t)
        if values is None:
            return None
        if self.sparse:
            present = [str(v) for v in np.unique(values).tolist() if v not in (0, VOID)]
            return {oid: values == int(oid) for oid in sort_ids(present)}
        return {oid: values == int(oid) for oid in self.object_ids(video_id)}

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "sparse": self.sparse}


# -- detection -----------------------------------------------------------------------------------------------
def detect_format(path: Path) -> str:
    """The reader of a directory from its layout (``davis2016``, ``davis2017``, ``ytvos``, ``sav``)."""
    if not path.is_dir():
        raise SambenchError(f"{path}: a video dataset is a directory (DAVIS, YouTube-VOS/MOSE or SA-V layout)")
    root = path / "DAVIS" if (path / "DAVIS" / "JPEGImages").is_dir() else path
    ann = root / "Annotations"
    if (root / "JPEGImages").is_dir() and ann.is_dir():
        if (root / "ImageSets" / "2017").is_dir():
            return "davis2017"
        res = [d for d in list_folder(ann, "annotation folder") if (ann / d).is_dir()]
        if (root / "JPEGImages" / "480p").is_dir() and "480p" in res:
            for video in list_folder(ann / "480p", "annotation folder"):
                pngs = sorted((ann / "480p" / video).glob("*.png"))
                if pngs:
                    with Image.open(pngs[0]) as im:
                        return "davis2017" if im.mode == "P" else "davis2016"
            return "davis2016"
        return "ytvos"   # a YouTube-VOS split folder: JPEGImages/<video>/ directly
    if any((path / s / "JPEGImages").is_dir() for s in ("train", "valid", "val", "test")):
        return "ytvos"
    if (path / "Annotations_6fps").is_dir() or any(f.endswith("_manual.json") for f in list_folder(path, "folder")):
        return "sav"
    raise SambenchError(f"{path}: not a known video layout (DAVIS JPEGImages/+Annotations/, YouTube-VOS/MOSE "
                        f"<split>/JPEGImages, SA-V *_manual.json or Annotations_6fps/); name it as FORMAT:PATH")

