"""COCO instance-segmentation datasets, decoded with pycocotools.

* One object per kept annotation; object id = the annotation id as a string.
* Segmentations: polygons (merged into one mask with ``pycocotools.mask.frPyObjects`` + ``merge``),
  uncompressed RLE (``counts`` list) and compressed RLE (``counts`` string), decoded with
  ``pycocotools.mask.decode`` at the JSON ``height`` × ``width``. Polygon parts with fewer than three
  points (< 6 numbers) are dropped: they have no area, and pycocotools would read a 4-number list as a box.
* Crowd annotations (``iscrowd: 1``) are skipped unless ``include_crowd=True``.
* ``categories`` (names or ids) keeps only those categories; ``min_area`` keeps annotations whose
  decoded mask has at least that many pixels (the decoded pixel count, not the JSON ``area`` field).
* Images with no kept annotation are skipped (counted in ``describe()``).
* An annotation whose segmentation is malformed or decodes to no pixel fails alone: ``load()`` lists it
  in ``Sample.failed_objects`` and returns the image's other objects.
* Image path = image dir / ``file_name``. The image dir is ``images=`` if given, else the first of
  (JSON dir, JSON dir/images, JSON dir/../images, JSON dir/..) that holds the first listed image.
* Image id = the ``file_name`` stem; if two images share a stem, every id is the ``file_name`` without
  extension instead. The image must be as large as the JSON says, else ``load()`` raises.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from numbers import Number
from pathlib import Path, PurePosixPath
from typing import Any, Optional

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sambench.datasets.base import (Dataset, as_path, exif_note, file_sha256, parse_bool, parse_list,
                                    read_image_oriented)
from sambench.metrics import decode_rle, to_coco_rle
from sambench.types import Object, Sample, SambenchError, canonical_json

#: Bumped whenever the COCO loader's decoding rules change (part of the content hash).
LOADER_VERSION = 1

#: Options a COCO dataset accepts (besides images/name).
COCO_OPTIONS = ("include_crowd", "min_area", "categories")

_GENERIC_STEMS = {"annotations", "annotation", "instances", "coco", "labels", "dataset", "data", "train", "val", "test"}


def _sort_key(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, int) and not isinstance(v, bool) else (1, 0, str(v))


class _BadSegmentation(Exception):
    pass


def segmentation_to_rle(seg: Any, height: int, width: int) -> Optional[dict]:
    """COCO RLE of a polygon / uncompressed-RLE / compressed-RLE segmentation, or None if it is empty.

    Raises ``_BadSegmentation`` with a short reason on malformed input.
    """
    if isinstance(seg, list):
        polys = []
        for part in seg:
            if not isinstance(part, list) or not all(isinstance(v, Number) and not isinstance(v, bool) for v in part):
                raise _BadSegmentation("polygon part is not a list of numbers")
            if len(part) % 2:
                raise _BadSegmentation(f"polygon part has an odd number of coordinates ({len(part)})")
            if not all(np.isfinite(part)):
                raise _BadSegmentation("polygon has a non-finite coordinate")
            if len(part) >= 6:
                polys.append([float(v) for v in part])
        if not polys:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if isinstance(seg, dict):
        counts, size = seg.get("counts"), seg.get("size")
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise _BadSegmentation("RLE without a [height, width] size")
        if [int(size[0]), int(size[1])] != [height, width]:
            raise _BadSegmentation(f"RLE size {list(size)} differs from the image's [{height}, {width}]")
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise _BadSegmentation("uncompressed RLE counts must be non-negative integers")
            if sum(counts) != height * width:
                raise _BadSegmentation(f"uncompressed RLE counts sum to {sum(counts)}, not {height}*{width}")
            return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        if isinstance(counts, (str, bytes)):
            return to_coco_rle({"size": [height, width], "counts": counts})
        raise _BadSegmentation("RLE counts must be a list or a string")
    raise _BadSegmentation(f"segmentation must be a polygon list or an RLE dict, got {type(seg).__name__}")


def _checked_decode(rle: dict) -> np.ndarray:
    """:func:`sambench.metrics.decode_rle`, raising ``_BadSegmentation`` if pycocotools rejects the RLE."""
    try:
        with warnings.catch_warnings():
            # pycocotools' Cython RLE wrapper predates numpy 2's __array__(copy=...) protocol
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            return decode_rle(rle)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise _BadSegmentation(f"invalid RLE ({exc})") from None


def _derive_name(path: Path) -> str:
    stem = path.stem
    if stem.lower() in _GENERIC_STEMS:
        parent = path.resolve().parent
        if parent.name.lower() in ("annotations", "annotation", "labels") and parent.parent.name:
            parent = parent.parent
        return parent.name or stem
    return stem


class CocoDataset(Dataset):
    """A COCO instance-segmentation JSON plus its images (conventions in the module docstring).

    Args:
        annotation_file: the COCO JSON.
        images: image directory ``file_name`` is relative to (default: searched, see module docstring).
        name: dataset name (default: the JSON stem, or its folder's name for generic stems like
            ``annotations``).
        include_crowd: keep ``iscrowd`` annotations (default False).
        min_area: keep annotations with at least this many decoded pixels (default 0: keep all).
        categories: names or ids (list or ``"person,car"``) to keep (default: all).
    """

    format = "coco"

    def __init__(self, annotation_file: os.PathLike | str, *, images: Optional[os.PathLike | str] = None,
                 name: Optional[str] = None, include_crowd: Any = False, min_area: Any = 0,
                 categories: Any = None) -> None:
        self.path = as_path(annotation_file)
        self.include_crowd = parse_bool(include_crowd, "include_crowd")
        try:
            self.min_area = float(min_area)
        except (TypeError, ValueError):
            raise SambenchError(f"min_area: expected a number of pixels, got {min_area!r}") from None
        if not np.isfinite(self.min_area) or self.min_area < 0:
            raise SambenchError(f"min_area: expected a non-negative number of pixels, got {min_area!r}")
        self.name = str(name) if name is not None else _derive_name(self.path)

        data = self._read_json()
        self._validate(data)
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        self.category_ids = self._resolve_categories(categories)
        self.images_dir = self._find_images_dir(images, data["images"])

        # Image ids: file stems, or file names without extension if stems collide.
        stems = [PurePosixPath(str(im["file_name"]).replace("\\", "/")).stem for im in data["images"]]
        if len(set(stems)) == len(stems):
            keys = stems
        else:
            keys = [str(PurePosixPath(str(im["file_name"]).replace("\\", "/")).with_suffix("")) for im in data["images"]]
            if len(set(keys)) != len(keys):
                dup = next(k for k in keys if keys.count(k) > 1)
                raise SambenchError(f"{self.path}: two images map to the id '{dup}' (same file_name up to the extension)")

        self._img: dict[str, dict] = {}
        self._anns: dict[str, list[dict]] = {}
        self.n_skipped_images = 0
        self.n_crowd_skipped = 0
        self.n_filtered_category = 0
        self.n_filtered_area = 0
        for key, im in zip(keys, data["images"]):
            kept = []
            for ann in sorted(self.coco.imgToAnns.get(im["id"], []), key=lambda a: _sort_key(a["id"])):
                if int(ann.get("iscrowd", 0) or 0) and not self.include_crowd:
                    self.n_crowd_skipped += 1
                    continue
                if self.category_ids is not None and ann.get("category_id") not in self.category_ids:
                    self.n_filtered_category += 1
                    continue
                if self.min_area > 0 and self._decoded_area(ann, im) < self.min_area:
                    self.n_filtered_area += 1
                    continue
                kept.append(ann)
            if kept:
                self._img[key] = im
                self._anns[key] = kept
            else:
                self.n_skipped_images += 1
        self._ids = sorted(self._img)
        self.n_missing_files = sum(1 for k in self._ids if not self._image_path(k).is_file())

    # -- opening ------------------------------------------------------------------------------------
    def _read_json(self) -> dict:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise SambenchError(f"{self.path}: annotation file not found") from None
        except OSError as exc:
            raise SambenchError(f"{self.path}: cannot read annotation file: {exc.strerror}") from None
        self._json_sha256 = hashlib.sha256(raw).hexdigest()
        try:
            data = json.loads(raw)
        except UnicodeDecodeError:
            raise SambenchError(f"{self.path}: malformed JSON (not UTF-8 text)") from None
        except json.JSONDecodeError as exc:
            raise SambenchError(f"{self.path}: malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        return data

    def _bad(self, msg: str) -> SambenchError:
        return SambenchError(f"{self.path}: malformed COCO JSON: {msg}")

    def _validate(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise self._bad(f"top level is a {type(data).__name__}, not an object")
        for key in ("images", "annotations"):
            if not isinstance(data.get(key), list):
                raise self._bad(f"'{key}' is missing or not a list")
        if not isinstance(data.setdefault("categories", []), list):
            raise self._bad("'categories' is not a list")
        img_ids = set()
        for i, im in enumerate(data["images"]):
            if not isinstance(im, dict):
                raise self._bad(f"images[{i}] is not an object")
            for k in ("id", "file_name", "height", "width"):
                if k not in im:
                    raise self._bad(f"images[{i}] has no '{k}'")
            if not isinstance(im["file_name"], str) or not im["file_name"]:
                raise self._bad(f"images[{i}] 'file_name' is not a non-empty string")
            for k in ("height", "width"):
                v = im[k]
                if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                    raise self._bad(f"images[{i}] (id {im['id']}) '{k}' is not a positive integer: {v!r}")
            if not isinstance(im["id"], (int, str)) or isinstance(im["id"], bool):
                raise self._bad(f"images[{i}] 'id' is not an integer or string")
            if im["id"] in img_ids:
                raise self._bad(f"images[{i}] repeats image id {im['id']!r}")
            img_ids.add(im["id"])
        ann_ids = set()
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict):
                raise self._bad(f"annotations[{i}] is not an object")
            for k in ("id", "image_id", "segmentation"):
                if k not in ann:
                    raise self._bad(f"annotations[{i}] has no '{k}'")
            if not isinstance(ann["id"], (int, str)) or isinstance(ann["id"], bool):
                raise self._bad(f"annotations[{i}] 'id' is not an integer or string")
            if ann["id"] in ann_ids or str(ann["id"]) in ann_ids:
                raise self._bad(f"annotations[{i}] repeats annotation id {ann['id']!r}")
            ann_ids.add(ann["id"])
            ann_ids.add(str(ann["id"]))
            if not isinstance(ann["image_id"], (int, str)) or ann["image_id"] not in img_ids:
                raise self._bad(f"annotations[{i}] (id {ann['id']}) refers to unknown image_id {ann['image_id']!r}")
        for i, cat in enumerate(data["categories"]):
            if not isinstance(cat, dict) or "id" not in cat:
                raise self._bad(f"categories[{i}] is not an object with an 'id'")

    def _resolve_categories(self, categories: Any) -> Optional[frozenset]:
        wanted = parse_list(categories)
        if not wanted:
            return None
        cats = self.coco.cats
        by_name = {str(c.get("name")): cid for cid, c in cats.items()}
        ids = set()
        for w in wanted:
            if isinstance(w, str) and w in by_name:
                ids.add(by_name[w])
            elif isinstance(w, int) and not isinstance(w, bool) and w in cats:
                ids.add(w)
            elif isinstance(w, str) and w.lstrip("-").isdigit() and int(w) in cats:
                ids.add(int(w))
            else:
                names = [str(cats[cid].get("name")) for cid in sorted(cats, key=_sort_key)]
                known = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                raise SambenchError(f"{self.path}: unknown category {w!r} (known: {known or 'none'})")
        return frozenset(ids)

    def _find_images_dir(self, images: Optional[os.PathLike | str], imgs: list[dict]) -> Path:
        if images is not None:
            d = as_path(images)
            if not d.is_dir():
                raise SambenchError(f"{d}: image directory not found (images= of {self.path.name})")
            return d
        base = self.path.resolve().parent
        candidates = [base, base / "images", base.parent / "images", base.parent]
        if not imgs:
            return base
        first = imgs[0]["file_name"]
        for c in candidates:
            if (c / first).is_file():
                return c
        raise SambenchError(f"{self.path}: image '{first}' not found under {', '.join(str(c) for c in candidates)}; "
                            "pass images=DIR")

    def _decoded_area(self, ann: dict, im: dict) -> float:
        try:
            rle = segmentation_to_rle(ann["segmentation"], im["height"], im["width"])
            return float(mask_utils.area(rle)) if rle is not None else 0.0
        except (_BadSegmentation, ValueError, TypeError):
            return float("inf")  # keep it: load() reports the malformed annotation

    # -- the Dataset interface ----------------------------------------------------------------------
    def _image_path(self, image_id: str) -> Path:
        return self.images_dir / self._img[image_id]["file_name"]

    def _image_file(self, image_id: str) -> Optional[Path]:
        return self._image_path(image_id)

    def image_files(self, image_id: str) -> list[str]:
        return [str(self._image_path(image_id)), f"{self.path} (annotations of {self._img[image_id]['file_name']})"]

    def _image_payload(self, image_id: str) -> Any:
        p = self._image_path(image_id)
        return [LOADER_VERSION, self._options(), file_sha256(p) if p.is_file() else "missing",
                json.loads(canonical_json(self._img[image_id])),
                [json.loads(canonical_json(a)) for a in self._anns[image_id]]]

    def ids(self) -> list[str]:
        """Sorted image ids of images with at least one kept annotation."""
        return list(self._ids)

    def load(self, image_id: str) -> Sample:
        """Image (RGB uint8) and one object per kept annotation, sorted by annotation id.

        Raises SambenchError for an unknown id, an unreadable image or an image whose size differs from
        the JSON's. A malformed segmentation or one that decodes to an empty mask fails that annotation
        only: it goes to ``Sample.failed_objects`` (id → reason) and the image's other objects are kept.
        """
        if image_id not in self._img:
            raise SambenchError(f"{self.name}: unknown image id '{image_id}'")
        im = self._img[image_id]
        path = self._image_path(image_id)
        image, orientation = read_image_oriented(path)
        h, w = int(im["height"]), int(im["width"])
        if image.shape[:2] != (h, w):
            raise SambenchError(f"{path}: image is {image.shape[1]}x{image.shape[0]} but {self.path.name} says "
                                f"{w}x{h} (image id {im['id']}){exif_note(orientation)}")
        objects, failed = [], {}
        for ann in self._anns[image_id]:
            where = f"{self.path}: annotation {ann['id']} of {im['file_name']}"
            try:
                rle = segmentation_to_rle(ann["segmentation"], h, w)
                mask = _checked_decode(rle) if rle is not None else None
            except _BadSegmentation as exc:
                failed[str(ann["id"])] = f"{where}: {exc}"
                continue
            if mask is None or not mask.any():
                failed[str(ann["id"])] = f"{where}: empty mask after decoding"
                continue
            cid = ann.get("category_id")
            cat = self.coco.cats.get(cid, {})
            objects.append(Object(id=str(ann["id"]), mask=mask, meta={
                "category_id": cid, "category": cat.get("name"), "iscrowd": int(ann.get("iscrowd", 0) or 0),
                "area": ann.get("area"), "bbox": ann.get("bbox")}))
        meta = {"image_path": str(path), "coco_image_id": im["id"], "annotation_file": str(self.path)}
        return Sample(dataset=self.name, image_id=image_id, image=image, objects=objects, meta=meta,
                      failed_objects=failed)

    def _hash_payload(self) -> Any:
        images = []
        for k in self._ids:
            p = self._image_path(k)
            images.append([k, self._img[k]["file_name"], file_sha256(p) if p.is_file() else "missing"])
        return {"loader_version": LOADER_VERSION, "annotation_sha256": self._json_sha256,
                "options": self._options(), "images": images}

    def _options(self) -> dict:
        return {"include_crowd": self.include_crowd, "min_area": self.min_area,
                "categories": sorted(self.category_ids, key=_sort_key) if self.category_ids is not None else None}

    def describe(self) -> dict:
        """Name, format, paths, counts (images kept/skipped, objects, filtered annotations) and options."""
        return {
            "name": self.name,
            "format": self.format,
            "root": str(self.images_dir),
            "annotation_file": str(self.path.resolve()),
            "n_images": len(self._ids),
            "n_objects": sum(len(v) for v in self._anns.values()),
            "images_in_json": len(self.coco.imgs),
            "images_without_kept_annotation": self.n_skipped_images,
            "image_files_missing": self.n_missing_files,
            "crowd_skipped": self.n_crowd_skipped,
            "filtered_by_category": self.n_filtered_category,
            "filtered_by_area": self.n_filtered_area,
            "options": self._options(),
        }
