"""The SA-V reader (:class:`SavDataset`). docs/video.md ("Datasets") says the same.

SA-V train: ``<video>_manual.json`` (``masklet``: a list over annotated frames of lists over objects of COCO
RLEs; ``masklet_id``: the object ids), the format of sam2's ``sav_dataset/``, with the JPEG frames extracted
as sam2's ``training/scripts/sav_frame_extraction_submitit.py`` writes them
(``JPEGImages_24fps/<video>/<24fps index:05d>.jpg``, or ``<video>/``): masklet entry ``k`` annotates the frame
named ``k * annot_rate`` (``annot_rate`` = 4: 6 fps annotation of 24 fps video), the frames between are
unannotated. SA-V val/test: ``JPEGImages_24fps/`` + ``Annotations_6fps/<video>/<obj>/<frame>.png`` and
``sav_<split>.txt``. Frames and masks are read only when asked; errors are one line naming the file.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pycocotools import mask as mask_utils

from sambench.datasets.base import read_mask_values
from sambench.datasets.video_formats import FrameFolders, file_stems, list_folder, load_json
from sambench.types import SambenchError, check_min


@lru_cache(maxsize=8)
def _masklets(path: str, mtime_ns: int) -> dict:
    data = load_json(Path(path))
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
            vids = sorted(f[: -len("_manual.json")] for f in list_folder(root, "SA-V folder") if f.endswith("_manual.json"))
        else:
            vids = [v for v in list_folder(self.png_dir, "annotation folder") if (self.png_dir / v).is_dir()]
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
        return [o for o in list_folder(d, "annotation folder") if (d / o).is_dir()]

    def _png_frames(self, video_id: str) -> set[str]:
        out: set[str] = set()
        for o in self._png_objects(video_id):
            out |= set(file_stems(self.png_dir / video_id / o, (".png",), "annotation folder"))
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
                for f in file_stems(self.png_dir / video_id / o, (".png",), "annotation folder").values()]

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
