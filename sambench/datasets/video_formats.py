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
* **SA-V** (:class:`SavDataset`): the train layout, ``<video>_manual.json`` (``masklet``: a list over
  annotated frames of lists over objects of COCO RLEs; ``masklet_id``: the object ids) with the JPEG
  frames extracted as sam2's ``training/scripts/sav_frame_extraction_submitit.py`` writes them
  (``JPEGImages_24fps/<video>/<24fps index:05d>.jpg``, or ``<video>/``); masklet entry ``k`` annotates the
  frame named ``k * annot_rate`` (``annot_rate`` = 4: 6 fps annotation of 24 fps video), others are
  unannotated. The val/test layout (``JPEGImages_24fps/`` + ``Annotations_6fps/<video>/<obj>/<frame>.png``,
  ``sav_<split>.txt``) is read too.

Every reader lists files once, reads a frame or a mask file only when asked, and raises SambenchError with
one line naming the file and the problem.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from sambench.datasets.base import parse_bool, read_mask_values
from sambench.datasets.video_base import VideoDataset
from sambench.types import SambenchError, check_min

FRAME_EXTS = (".jpg", ".jpeg", ".png")
VOID = 255


def _listdir(path: Path, what: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        raise SambenchError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise SambenchError(f"{path}: cannot list {what}: {exc.strerror or exc}") from None


def _stems(path: Path, exts: tuple[str, ...], what: str) -> dict[str, str]:
    """stem -> file name of the files in ``path`` with one of ``exts`` (sorted by stem)."""
    out = {}
    for f in _listdir(path, what):
        stem, ext = os.path.splitext(f)
        if ext.lower() in exts and not f.startswith("."):
            out.setdefault(stem, f)
    return dict(sorted(out.items()))


def _load_json(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise SambenchError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise SambenchError(f"{path}: cannot read JSON ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def _sort_ids(ids) -> list[str]:
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
        self._sizes: dict[str, tuple[int, int]] = {}

    def _frame_map(self, video_id: str) -> dict[str, str]:
        m = self._frame_names.get(video_id)
        if m is None:
            self._check_video(video_id)
            m = _stems(self.frames_dir / video_id, FRAME_EXTS, "frame folder")
            if not m:
                raise SambenchError(f"{self.frames_dir / video_id}: no frames (.jpg/.png) in the video's folder")
            self._frame_names[video_id] = m
        return m

    def frame_ids(self, video_id: str) -> list[str]:
        return list(self._frame_map(video_id))

    def frame_file(self, video_id: str, t: int) -> Path:
        m = self._frame_map(video_id)
        return self.frames_dir / video_id / list(m.values())[t]

    def frame_size(self, video_id: str) -> tuple[int, int]:
        """(H, W) of the video's first frame, from its header."""
        if video_id not in self._sizes:
            self._sizes[video_id] = _image_size(self.frame_file(video_id, 0))
        return self._sizes[video_id]

    def _check_size(self, arr: np.ndarray, video_id: str, path: Path) -> None:
        h, w = self.frame_size(video_id)
        if arr.shape[:2] != (h, w):
            raise SambenchError(f"{path}: mask is {arr.shape[1]}x{arr.shape[0]}, the video's frames are {w}x{h}")


# -- DAVIS ---------------------------------------------------------------------------------------------------
class _Davis(FrameFolders):
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
        on_disk = [v for v in _listdir(self.frames_dir, "frame folder") if (self.frames_dir / v).is_dir()]
        if split is None:
            self._videos = on_disk
        else:
            listed = self._split_videos(split)
            missing = sorted(set(listed) - set(on_disk))
            if missing:
                raise SambenchError(f"{self._split_file}: lists {len(missing)} sequence(s) with no folder in "
                                    f"{self.frames_dir} (e.g. {missing[0]})")
            self._videos = sorted(listed)
        self._index: dict[str, tuple[list[str], dict[str, int]]] = {}
        self._ann_names: dict[str, dict[str, str]] = {}

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

    def videos(self) -> list[str]:
        return list(self._videos)

    def _ann_map(self, video_id: str) -> dict[str, str]:
        m = self._ann_names.get(video_id)
        if m is None:
            self._check_video(video_id)
            d = self.ann_dir / video_id
            if not d.is_dir():
                raise SambenchError(f"{d}: annotation folder of video {video_id!r} not found")
            m = self._ann_names[video_id] = _stems(d, (".png",), "annotation folder")
        return m

    def annotated(self, video_id: str) -> list[int]:
        ann = self._ann_map(video_id)
        return [t for t, fid in enumerate(self.frame_ids(video_id)) if fid in ann]

    def annotation_files(self, video_id: str) -> list[Path]:
        return [self.ann_dir / video_id / f for f in self._ann_map(video_id).values()]

    def _hash_options(self) -> Any:
        return {"resolution": self.resolution}

    def _values(self, video_id: str, t: int) -> Optional[tuple[np.ndarray, str, Path]]:
        t = self._check_t(video_id, t)
        fid = self.frame_ids(video_id)[t]
        f = self._ann_map(video_id).get(fid)
        if f is None:
            return None
        path = self.ann_dir / video_id / f
        values, kind = read_mask_values(path)
        self._check_size(values, video_id, path)
        return values, kind, path

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

    def _indices(self, video_id: str, t: int) -> Optional[tuple[np.ndarray, Path]]:
        got = self._values(video_id, t)
        if got is None:
            return None
        values, kind, path = got
        if kind == "binary" or (kind == "gray" and set(np.unique(values).tolist()) <= {0, 255}
                                and values.any()):
            raise SambenchError(f"{path}: a binary {{0, 255}} mask, not DAVIS 2017 object indices "
                                f"(open DAVIS 2016 data as davis2016:PATH)")
        return values, path

    def _scan(self, video_id: str) -> tuple[list[str], dict[str, int]]:
        """Object ids and first non-empty frames, from one pass over the annotated frames (cached)."""
        if video_id not in self._index:
            first: dict[str, int] = {}
            for t in self.annotated(video_id):
                values, _ = self._indices(video_id, t)
                for v in np.unique(values).tolist():
                    if v not in (0, VOID) and str(v) not in first:
                        first[str(v)] = t
            self._index[video_id] = (_sort_ids(first), first)
        return self._index[video_id]

    def object_ids(self, video_id: str) -> list[str]:
        return list(self._scan(video_id)[0])

    def first_frames(self, video_id: str) -> dict[str, int]:
        return dict(self._scan(video_id)[1])

    def masks(self, video_id: str, t: int) -> Optional[dict[str, np.ndarray]]:
        got = self._indices(video_id, t)
        if got is None:
            return None
        values, _ = got
        return {oid: values == int(oid) for oid in self.object_ids(video_id)}

    def void(self, video_id: str, t: int) -> Optional[np.ndarray]:
        got = self._indices(video_id, t)
        return None if got is None else got[0] == VOID


# -- YouTube-VOS / MOSE --------------------------------------------------------------------------------------
SPARSE_SPLITS = ("valid", "test")


class YtvosDataset(FrameFolders):
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
            meta = _load_json(self.meta_file)
            vids = meta.get("videos") if isinstance(meta, dict) else None
            if not isinstance(vids, dict):
                raise SambenchError(f"{self.meta_file}: expected {{\"videos\": {{video: {{\"objects\": ...}}}}}}")
            self._meta = vids
        on_disk = [v for v in _listdir(self.frames_dir, "frame folder") if (self.frames_dir / v).is_dir()]
        self._videos = sorted(v for v in on_disk if self._meta is None or v in self._meta)
        self._ann_names: dict[str, dict[str, str]] = {}
        self._scanned: dict[str, dict[str, int]] = {}

    def videos(self) -> list[str]:
        return list(self._videos)

    def _ann_map(self, video_id: str) -> dict[str, str]:
        m = self._ann_names.get(video_id)
        if m is None:
            self._check_video(video_id)
            d = self.ann_dir / video_id
            m = self._ann_names[video_id] = _stems(d, (".png",), "annotation folder") if d.is_dir() else {}
        return m

    def annotated(self, video_id: str) -> list[int]:
        ann = self._ann_map(video_id)
        return [t for t, fid in enumerate(self.frame_ids(video_id)) if fid in ann]

    def annotation_files(self, video_id: str) -> list[Path]:
        files = [self.ann_dir / video_id / f for f in self._ann_map(video_id).values()]
        return files + ([self.meta_file] if self.meta_file is not None else [])

    def _hash_options(self) -> Any:
        return {"sparse": self.sparse, "split": self.split}

    def _objects_meta(self, video_id: str) -> Optional[dict]:
        if self._meta is None:
            return None
        objs = self._meta.get(video_id, {}).get("objects")
        if not isinstance(objs, dict):
            raise SambenchError(f"{self.meta_file}: video {video_id!r} has no \"objects\" mapping")
        return objs

    def _indices(self, video_id: str, t: int) -> Optional[np.ndarray]:
        t = self._check_t(video_id, t)
        f = self._ann_map(video_id).get(self.frame_ids(video_id)[t])
        if f is None:
            return None
        path = self.ann_dir / video_id / f
        values, kind = read_mask_values(path)
        if kind == "binary":
            values = values.astype(np.uint8)
        self._check_size(values, video_id, path)
        return values

    def _scan(self, video_id: str) -> dict[str, int]:
        if video_id not in self._scanned:
            first: dict[str, int] = {}
            for t in self.annotated(video_id):
                for v in np.unique(self._indices(video_id, t)).tolist():
                    if v not in (0, VOID) and str(v) not in first:
                        first[str(v)] = t
            self._scanned[video_id] = first
        return self._scanned[video_id]

    def object_ids(self, video_id: str) -> list[str]:
        objs = self._objects_meta(video_id)
        return _sort_ids(objs) if objs is not None else _sort_ids(self._scan(video_id))

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
            return {oid: values == int(oid) for oid in _sort_ids(present)}
        return {oid: values == int(oid) for oid in self.object_ids(video_id)}

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "sparse": self.sparse}


# -- SA-V ----------------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _masklets(path: str, mtime_ns: int) -> dict:
    data = _load_json(Path(path))
    if not isinstance(data, dict) or not isinstance(data.get("masklet"), list) or "masklet_id" not in data:
        raise SambenchError(f"{path}: not an SA-V masklet file (needs \"masklet\" and \"masklet_id\")")
    return data


class SavDataset(FrameFolders):
    """SA-V: masklet JSON (COCO RLE) + extracted JPEG frames, or the val/test PNG layout (module docstring)."""

    def __init__(self, root: os.PathLike | str, split: Optional[str] = None, name: Optional[str] = None,
                 annot_rate: Any = 4) -> None:
        super().__init__(name or "sav")
        self.format = "sav"
        root = Path(root)
        if not root.is_dir():
            raise SambenchError(f"{root}: SA-V root directory not found")
        try:
            self.annot_rate = int(annot_rate)
        except (TypeError, ValueError):
            raise SambenchError(f"annot_rate: expected an integer, got {annot_rate!r}") from None
        check_min(self.annot_rate, 1, "annot_rate")
        self.root, self.split = root, split
        self.frames_dir = root / "JPEGImages_24fps" if (root / "JPEGImages_24fps").is_dir() else root
        self.png_dir = root / "Annotations_6fps"
        self.layout = "png" if self.png_dir.is_dir() else "json"
        if self.layout == "json":
            vids = sorted(f[: -len("_manual.json")] for f in _listdir(root, "SA-V folder") if f.endswith("_manual.json"))
        else:
            vids = [v for v in _listdir(self.png_dir, "annotation folder") if (self.png_dir / v).is_dir()]
        if not vids:
            raise SambenchError(f"{root}: no SA-V annotations (<video>_manual.json files or Annotations_6fps/)")
        if split is not None:
            lst = root / f"sav_{split}.txt"
            if not lst.is_file():
                raise SambenchError(f"{lst}: split file for split '{split}' not found")
            listed = [ln.strip() for ln in lst.read_text().splitlines() if ln.strip()]
            vids = sorted(set(vids) & set(listed))
        self._videos = [v for v in vids if (self.frames_dir / v).is_dir()]
        if not self._videos:
            raise SambenchError(f"{self.frames_dir}: no frame folder <video>/ for any annotated SA-V video")

    def videos(self) -> list[str]:
        return list(self._videos)

    def _hash_options(self) -> Any:
        return {"annot_rate": self.annot_rate, "layout": self.layout}

    def _json_path(self, video_id: str) -> Path:
        return self.root / f"{video_id}_manual.json"

    def _data(self, video_id: str) -> dict:
        p = self._json_path(video_id)
        try:
            mtime = p.stat().st_mtime_ns
        except OSError:
            raise SambenchError(f"{p}: file not found") from None
        return _masklets(str(p), mtime)

    def _json_entry(self, video_id: str, t: int) -> Optional[int]:
        """The masklet entry annotating frame ``t`` (its name / annot_rate), or None."""
        fid = self.frame_ids(video_id)[t]
        if not fid.isdigit() or int(fid) % self.annot_rate:
            return None
        k = int(fid) // self.annot_rate
        return k if k < len(self._data(video_id)["masklet"]) else None

    def _png_objects(self, video_id: str) -> list[str]:
        d = self.png_dir / video_id
        return [o for o in _listdir(d, "annotation folder") if (d / o).is_dir()]

    def _png_frames(self, video_id: str) -> set[str]:
        out: set[str] = set()
        for o in self._png_objects(video_id):
            out |= set(_stems(self.png_dir / video_id / o, (".png",), "annotation folder"))
        return out

    def object_ids(self, video_id: str) -> list[str]:
        self._check_video(video_id)
        if self.layout == "png":
            return self._png_objects(video_id)
        return [str(i) for i in self._data(video_id)["masklet_id"]]

    def annotated(self, video_id: str) -> list[int]:
        if self.layout == "png":
            have = self._png_frames(video_id)
            return [t for t, fid in enumerate(self.frame_ids(video_id)) if fid in have]
        return [t for t in range(self.frame_count(video_id)) if self._json_entry(video_id, t) is not None]

    def annotation_files(self, video_id: str) -> list[Path]:
        if self.layout == "json":
            return [self._json_path(video_id)]
        return [self.png_dir / video_id / o / f for o in self._png_objects(video_id)
                for f in _stems(self.png_dir / video_id / o, (".png",), "annotation folder").values()]

    def first_frames(self, video_id: str) -> dict[str, int]:
        if self.layout == "png":
            return super().first_frames(video_id)
        data, ids = self._data(video_id), self.object_ids(video_id)
        first: dict[str, int] = {}
        for t in self.annotated(video_id):
            for oid, rle in zip(ids, data["masklet"][self._json_entry(video_id, t)]):
                if oid not in first and int(mask_utils.area(self._rle(rle, video_id))) > 0:
                    first[oid] = t
        return first

    def _rle(self, rle: Any, video_id: str) -> dict:
        if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
            raise SambenchError(f"{self._json_path(video_id)}: a masklet entry is not a COCO RLE {{size, counts}}")
        counts = rle["counts"]
        return {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}

    def masks(self, video_id: str, t: int) -> Optional[dict[str, np.ndarray]]:
        t = self._check_t(video_id, t)
        if self.layout == "png":
            fid = self.frame_ids(video_id)[t]
            if fid not in self._png_frames(video_id):
                return None
            h, w = self.frame_size(video_id)
            out = {}
            for o in self.object_ids(video_id):
                p = self.png_dir / video_id / o / f"{fid}.png"
                if p.is_file():
                    values, kind = read_mask_values(p)
                    self._check_size(values, video_id, p)
                    out[o] = values.astype(bool) if kind == "binary" else values > 0
                else:
                    out[o] = np.zeros((h, w), bool)
            return out
        k = self._json_entry(video_id, t)
        if k is None:
            return None
        entry = self._data(video_id)["masklet"][k]
        ids = self.object_ids(video_id)
        if not isinstance(entry, list) or len(entry) != len(ids):
            raise SambenchError(f"{self._json_path(video_id)}: masklet entry {k} has "
                                f"{len(entry) if isinstance(entry, list) else 'no'} masks for {len(ids)} masklet ids")
        out = {}
        for oid, rle in zip(ids, entry):
            m = mask_utils.decode(self._rle(rle, video_id)).astype(bool)
            self._check_size(m, video_id, self._json_path(video_id))
            out[oid] = m
        return out

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "layout": self.layout, "annot_rate": self.annot_rate}


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
        res = [d for d in _listdir(ann, "annotation folder") if (ann / d).is_dir()]
        if (root / "JPEGImages" / "480p").is_dir() and "480p" in res:
            for video in _listdir(ann / "480p", "annotation folder"):
                pngs = sorted((ann / "480p" / video).glob("*.png"))
                if pngs:
                    with Image.open(pngs[0]) as im:
                        return "davis2017" if im.mode == "P" else "davis2016"
            return "davis2016"
        return "ytvos"   # a YouTube-VOS split folder: JPEGImages/<video>/ directly
    if any((path / s / "JPEGImages").is_dir() for s in ("train", "valid", "val", "test")):
        return "ytvos"
    if (path / "Annotations_6fps").is_dir() or any(f.endswith("_manual.json") for f in _listdir(path, "folder")):
        return "sav"
    raise SambenchError(f"{path}: not a known video layout (DAVIS JPEGImages/+Annotations/, YouTube-VOS/MOSE "
                        f"<split>/JPEGImages, SA-V *_manual.json or Annotations_6fps/); name it as FORMAT:PATH")

