"""Folder datasets: an image directory and a mask directory matched by relative path and stem.

``images/<rel>/<stem>.<image ext>`` pairs with ``masks/<rel>/<stem>.<mask ext>`` at any depth, e.g.
``JPEGImages/480p/bear/00000.jpg`` ↔ ``Annotations/480p/bear/00000.png``. The image id is the relative
path without extension, with ``/`` separators (``480p/bear/00000``). Each mask file is one object with
object id ``"0"``. Extensions match case-insensitively; files and directories whose name starts with a
dot (``.DS_Store``, macOS ``._x.jpg`` resource forks) are ignored; symbolic links are followed (each real
directory once).

Given only a root, the loader looks for one of :data:`AUTO_LAYOUTS` (image dir, mask dir) directly
under it (case-insensitive). The image and mask dirs may be the same directory when the extension sets
do not overlap (``cascade_psp`` style ``x.jpg`` + ``x.png``); then the default image extensions drop
the mask ones.

Masks are binarised with ``value > threshold`` (default 128); see :mod:`sambench.datasets.base` for
channel, 16-bit and palette rules.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from sambench.datasets.base import (
    DEFAULT_THRESHOLD,
    Dataset,
    as_path,
    check_mask_value,
    check_threshold,
    empty_mask_error,
    exif_note,
    file_sha256,
    foreground,
    looks_like_instance_ids,
    parse_bool,
    parse_list,
    read_image_oriented,
    read_mask_values,
    split_instances,
)
from sambench.types import Object, Sample, SambenchError


#: Bumped whenever the folder loader's decoding rules change (part of the content hash).
LOADER_VERSION = 1

DEFAULT_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_MASK_EXTS = (".png", ".bmp", ".tif", ".tiff", ".gif")
BOX_EXT = ".txt"

#: (image dir, mask dir) pairs recognised directly under a dataset root, in this order.
AUTO_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("im", "gt"),                      # DIS5K (DIS-TR, DIS-VD, DIS-TE*)
    ("images", "masks"),               # COIFT, generic
    ("images", "masks_max255"),        # HRSOD as shipped in HQSeg-44K
    ("images_test", "masks_test"),     # ThinObject-5K test split
    ("images_train", "masks_train"),   # ThinObject-5K train split
    ("JPEGImages", "Annotations"),     # DAVIS / YouTube-VOS style
    ("imgs", "seg_GT"),                # GrabCut course hand-out
    ("img", "gt"),
    ("image", "mask"),
    ("images", "gt"),
)


#: Options a folder dataset accepts (besides root/images/masks/name).
FOLDER_OPTIONS = ("image_exts", "mask_exts", "threshold", "boxes", "ignore", "instances", "ids_file")


def _norm_exts(value: Any, option: str) -> tuple[str, ...]:
    exts = []
    for e in parse_list(value):
        if not isinstance(e, str) or not e.strip(".").strip():
            raise SambenchError(f"{option}: expected extensions like '.jpg,.png', got {value!r}")
        e = e.strip().lower()
        exts.append(e if e.startswith(".") else "." + e)
    if not exts:
        raise SambenchError(f"{option}: at least one extension is needed")
    return tuple(sorted(set(exts)))


def _walk(top: Path, exts: Sequence[str]) -> dict[str, Path]:
    """id (relative path without extension, '/'-separated) → file, for files with one of ``exts``.

    Raises SambenchError if two files map to one id (e.g. ``a.jpg`` and ``a.png``).
    """
    found: dict[str, Path] = {}
    seen_dirs: set[str] = set()
    stack = [(top, "")]
    while stack:
        d, rel = stack.pop()
        real = os.path.realpath(d)
        if real in seen_dirs:
            continue
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            raise SambenchError(f"{d}: cannot list directory: {exc.strerror}") from None
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir()  # follows symlinks
            except OSError:
                continue
            if is_dir:
                stack.append((Path(e.path), f"{rel}{e.name}/"))
                continue
            stem, ext = os.path.splitext(e.name)
            if ext.lower() not in exts:
                continue
            key = rel + stem
            if key in found:
                raise SambenchError(f"{top}: two files for id '{key}' ({found[key].name}, {e.name}); restrict the extensions")
            found[key] = Path(e.path)
    return found


def _find_child(root: Path, name: str) -> Optional[Path]:
    """``root/name`` matched case-insensitively (exact match preferred), if it is a directory."""
    exact = root / name
    if exact.is_dir():
        return exact
    try:
        for e in os.scandir(root):
            if e.name.lower() == name.lower() and e.is_dir():
                return Path(e.path)
    except OSError:
        return None
    return None


def detect_layout(root: Path) -> tuple[Path, Path]:
    """The single :data:`AUTO_LAYOUTS` (image dir, mask dir) pair present directly under ``root``.

    Raises SambenchError if none or more than one is present.
    """
    hits = []
    for im, gt in AUTO_LAYOUTS:
        a, b = _find_child(root, im), _find_child(root, gt)
        if a is not None and b is not None:
            hits.append((a, b))
    if not hits:
        known = ", ".join(f"{a}/{b}" for a, b in AUTO_LAYOUTS)
        raise SambenchError(f"{root}: no image/mask folder pair found (looked for {known}); pass images= and masks=")
    if len(hits) > 1:
        found = ", ".join(f"{a.name}/{b.name}" for a, b in hits)
        raise SambenchError(f"{root}: several image/mask folder pairs ({found}); pass images= and masks= or use a preset")
    return hits[0]


def _resolve(value: os.PathLike | str, root: Optional[Path], what: str, directory: bool = True) -> Path:
    """An explicit images=/masks=/boxes= directory (or ids_file= file): relative to root if it exists there,
    else to the CWD."""
    p = as_path(value)
    candidates = [p] if p.is_absolute() or root is None else [root / p, p]
    for c in candidates:
        if c.is_dir() if directory else c.is_file():
            return c
    raise SambenchError(f"{candidates[0]}: {what} {'directory' if directory else 'file'} not found")


def _read_ids(path: Path) -> list[str]:
    """Image ids listed one per line (blank lines and surrounding spaces ignored)."""
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise SambenchError(f"{path}: cannot read ids ({type(exc).__name__})") from None


def parse_box_file(path: Path, image_size: tuple[int, int]) -> list[float]:
    """Read one ``x1 y1 x2 y2`` line (pixels; spaces or commas) and check it lies in the image.

    ``x2``/``y2`` may equal the image width/height (exclusive corners, as in the GrabCut hand-out).
    """
    h, w = image_size
    try:
        text = path.read_text(encoding="utf-8").replace(",", " ").split()
        vals = [float(v) for v in text]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SambenchError(f"{path}: cannot read box ({type(exc).__name__}); expected one line 'x1 y1 x2 y2'") from None
    if len(vals) != 4:
        raise SambenchError(f"{path}: expected 4 numbers 'x1 y1 x2 y2', got {len(vals)}")
    x1, y1, x2, y2 = vals
    if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
        raise SambenchError(f"{path}: box {vals} is empty or outside the {w}x{h} image")
    return vals


class FolderDataset(Dataset):
    """Images and masks in two directory trees matched by relative path without extension.

    Args:
        root: dataset root; with no ``images``/``masks``, one of :data:`AUTO_LAYOUTS` is looked for in it.
        images, masks: explicit directories (relative ones are tried under ``root`` first, then the CWD).
        name: dataset name (default: the root's name, or the name of the images dir's parent).
        image_exts, mask_exts: accepted extensions (list or ``".jpg,.png"``), case-insensitive.
        threshold: foreground is ``mask value > threshold`` on the 8-bit scale (default 128).
        boxes: optional directory of ``<id>.txt`` files holding a reference box ``x1 y1 x2 y2``, put
            in ``Sample.meta["reference_box"]`` (x2/y2 may equal width/height).
        ignore: a mask value (0-255) marking pixels excluded from IoU and from click errors
            (``Object.ignore``): 128 for GrabCut/Berkeley's unlabelled band. Default: none.
        instances: the mask files hold instance ids (VOC ``SegmentationObject`` palette PNGs, SBD
            ``inst/*.mat`` or 8-bit id PNGs): one object per id except 0 (background) and 255 (void,
            ignored, unless ``ignore`` names another value); object id = the id as text. Default false.
        ids_file: a text file (relative to the root) listing the image ids to use, one per line (SBD's
            ``val.txt``).

    Without ``instances``: one object per mask file, object id ``"0"``; a mask holding only small
    integers (1, 2, 3, … and 255) is refused as an instance-id mask. Images without a mask and masks
    without an image are left out, counted in :meth:`describe` and listed in :meth:`notices`; zero pairs
    is an error naming both directories.
    """

    format = "folder"

    def __init__(self, root: Optional[os.PathLike | str] = None, *, images: Optional[os.PathLike | str] = None,
                 masks: Optional[os.PathLike | str] = None, name: Optional[str] = None,
                 image_exts: Any = None, mask_exts: Any = None, threshold: Any = DEFAULT_THRESHOLD,
                 boxes: Optional[os.PathLike | str] = None, preset: Optional[str] = None,
                 ignore: Any = None, instances: Any = False, ids_file: Optional[os.PathLike | str] = None) -> None:
        root_p = as_path(root) if root is not None else None
        if root_p is not None and not root_p.is_dir():
            raise SambenchError(f"{root_p}: dataset directory not found")
        if (images is None) != (masks is None):
            raise SambenchError(f"{root_p or images or masks}: images= and masks= go together")
        if images is None:
            if root_p is None:
                raise SambenchError("folder dataset: give a root directory or images= and masks=")
            img_dir, mask_dir = detect_layout(root_p)
        else:
            img_dir = _resolve(images, root_p, "images")
            mask_dir = _resolve(masks, root_p, "masks")
        box_dir = _resolve(boxes, root_p, "boxes") if boxes is not None else None
        same_dir = os.path.realpath(img_dir) == os.path.realpath(mask_dir)

        self.mask_exts = _norm_exts(mask_exts, "mask_exts") if mask_exts is not None else DEFAULT_MASK_EXTS
        if image_exts is not None:
            self.image_exts = _norm_exts(image_exts, "image_exts")
        elif same_dir:
            self.image_exts = tuple(e for e in DEFAULT_IMAGE_EXTS if e not in self.mask_exts)
        else:
            self.image_exts = DEFAULT_IMAGE_EXTS
        if same_dir and set(self.image_exts) & set(self.mask_exts):
            both = ", ".join(sorted(set(self.image_exts) & set(self.mask_exts)))
            raise SambenchError(f"{img_dir}: images and masks share this directory, so image_exts and mask_exts "
                                f"must not overlap ({both} is in both)")
        self.threshold = check_threshold(threshold)
        self.ignore = None if ignore is None or str(ignore).lower() == "none" else check_mask_value(ignore, "ignore")
        self.instances = parse_bool(instances, "instances")
        self.root = root_p
        self.images_dir, self.masks_dir, self.boxes_dir = img_dir, mask_dir, box_dir
        self.preset = preset
        if name is None:
            if root_p is not None and os.path.realpath(root_p) not in (os.path.realpath(img_dir), os.path.realpath(mask_dir)):
                name = root_p.resolve().name
            else:
                name = img_dir.resolve().parent.name
        self.name = str(name)

        image_files = _walk(img_dir, self.image_exts)
        mask_files = _walk(mask_dir, self.mask_exts)
        paired = sorted(set(image_files) & set(mask_files))
        self.ids_file, self._listed_missing = None, []
        if ids_file is not None:
            self.ids_file = _resolve(ids_file, root_p, "ids_file", directory=False)
            listed = _read_ids(self.ids_file)
            self._listed_missing = sorted(set(listed) - set(paired))
            paired = sorted(set(listed) & set(paired))
            if not paired:
                raise SambenchError(f"{self.ids_file}: none of its {len(listed)} ids has both an image in {img_dir} and a mask in {mask_dir}")
        self._no_mask = sorted(set(image_files) - set(mask_files))
        self._no_image = sorted(set(mask_files) - set(image_files))
        if not paired:
            hint = ""
            if image_files and mask_files:
                hint = f" (e.g. image id '{min(image_files)}' vs mask id '{min(mask_files)}')"
            raise SambenchError(
                f"{img_dir} + {mask_dir}: no image/mask pairs: {len(image_files)} image(s) with "
                f"{','.join(self.image_exts)} and {len(mask_files)} mask(s) with {','.join(self.mask_exts)}, "
                f"matched by relative path without extension{hint}")
        self._images = {k: image_files[k] for k in paired}
        self._masks = {k: mask_files[k] for k in paired}
        self._ids = paired

    def ids(self) -> list[str]:
        """Sorted image ids: relative paths without extension, '/'-separated."""
        return list(self._ids)

    def _image_file(self, image_id: str) -> Optional[Path]:
        return self._images.get(image_id)

    def notices(self) -> list[str]:
        """EXIF-oriented images (see the base class) and files left out for want of a partner. Not logged
        when the dataset is opened (every worker process opens it): the runner prints them once."""
        out = super().notices()
        parts = []
        if self._no_mask:
            parts.append(f"{len(self._no_mask)} image(s) without a mask in {self.masks_dir} "
                         f"(e.g. {', '.join(self._no_mask[:3])})")
        if self._no_image:
            parts.append(f"{len(self._no_image)} mask(s) without an image in {self.images_dir} "
                         f"(e.g. {', '.join(self._no_image[:3])})")
        if parts:
            out.append(f"{self.name}: {' and '.join(parts)}; they are left out")
        return out

    def image_files(self, image_id: str) -> list[str]:
        box = self._box_path(image_id)
        return [str(self._images[image_id]), str(self._masks[image_id])] + ([str(box)] if box is not None else [])

    def _image_payload(self, image_id: str) -> Any:
        box = self._box_path(image_id)
        return [LOADER_VERSION, self.threshold, file_sha256(self._images[image_id]), file_sha256(self._masks[image_id]),
                file_sha256(box) if box is not None else None]

    def _box_path(self, image_id: str) -> Optional[Path]:
        if self.boxes_dir is None:
            return None
        p = self.boxes_dir / (image_id + BOX_EXT)
        return p if p.is_file() else None

    def load(self, image_id: str) -> Sample:
        """Image (RGB uint8) and its one object (id ``"0"``, mask = ``value > threshold``).

        Raises SambenchError for an unknown id, an unreadable image or mask, a mask of another size
        than the image, an empty mask, or a malformed box file.
        """
        if image_id not in self._images:
            raise SambenchError(f"{self.name}: unknown image id '{image_id}'")
        img_path, mask_path = self._images[image_id], self._masks[image_id]
        image, orientation = read_image_oriented(img_path)
        values, kind = read_mask_values(mask_path)
        if values.shape != image.shape[:2]:
            raise SambenchError(f"{mask_path}: mask is {values.shape[1]}x{values.shape[0]} but image {img_path.name} "
                                f"is {image.shape[1]}x{image.shape[0]}{exif_note(orientation)}")
        objects = self._objects(values, kind, mask_path)
        meta: dict = {"image_path": str(img_path), "mask_paths": [str(mask_path)]}
        box_path = self._box_path(image_id)
        if box_path is not None:
            meta["reference_box"] = parse_box_file(box_path, image.shape[:2])
            meta["box_path"] = str(box_path)
        return Sample(dataset=self.name, image_id=image_id, image=image, objects=objects, meta=meta)

    def _objects(self, values, kind: str, mask_path: Path) -> list[Object]:
        """The objects of one mask file (see the class docstring); raises on a file with none."""
        meta = {"mask_path": str(mask_path)}
        if self.instances:
            if kind == "binary":
                values = values.astype(np.uint8)
            void = 255 if self.ignore is None else self.ignore
            ignore = values == void
            objs = [Object(id=str(i), mask=m, meta={**meta, "instance_id": i}, ignore=ignore if ignore.any() else None)
                    for i, m in split_instances(values, void)]
            if not objs:
                raise SambenchError(f"{mask_path}: no instance id in the mask (only 0 = background and {void} = void)")
            return objs
        mask = foreground(values, kind, self.threshold)
        ignore = (values == self.ignore) & ~mask if self.ignore is not None and kind != "binary" else None
        if not mask.any():
            raise empty_mask_error(mask_path, self.threshold, values, kind, ignore=self.ignore)
        ids = looks_like_instance_ids(values, kind, self.threshold)
        if ids is not None:  # only 255 is "foreground": the VOC void band of an instance-id mask
            shown = ", ".join(map(str, ids[:8])) + (", …" if len(ids) > 8 else "")
            raise SambenchError(f"{mask_path}: not an intensity mask (no pixel > {self.threshold} but 255): its values "
                                f"{{0, {shown}}} are instance ids with a void band; pass instances=true for one "
                                f"object per id (255 = void)")
        return [Object(id="0", mask=mask, meta=meta, ignore=ignore if ignore is not None and ignore.any() else None)]

    def _hash_payload(self) -> Any:
        files = []
        for k in self._ids:
            box = self._box_path(k)
            files.append([k, self._images[k].name, file_sha256(self._images[k]), self._masks[k].name,
                          file_sha256(self._masks[k]), file_sha256(box) if box is not None else None])
        return {"loader_version": LOADER_VERSION, "options": self._sample_options(), "files": files}

    def _sample_options(self) -> dict:
        """Options that change samples; the newer ones only when set, so older hashes stay valid."""
        opts: dict = {"threshold": self.threshold}
        if self.ignore is not None:
            opts["ignore"] = self.ignore
        if self.instances:
            opts["instances"] = True
        return opts

    def describe(self) -> dict:
        """Name, format, directories, counts (pairs, unpaired files with examples) and options."""
        d = {
            "name": self.name,
            "format": self.format,
            "root": str(self.root) if self.root is not None else None,
            "images_dir": str(self.images_dir),
            "masks_dir": str(self.masks_dir),
            "n_images": len(self._ids),
            "n_objects": len(self._ids),
            "images_without_mask": len(self._no_mask),
            "masks_without_image": len(self._no_image),
            "examples_without_mask": self._no_mask[:5],
            "examples_without_image": self._no_image[:5],
            "options": {**self._sample_options(), "image_exts": list(self.image_exts),
                        "mask_exts": list(self.mask_exts)},
        }
        if self.ids_file is not None:
            d["ids_file"] = str(self.ids_file)
            d["listed_ids_missing"] = len(self._listed_missing)
            d["examples_listed_missing"] = self._listed_missing[:5]
        if self.boxes_dir is not None:
            d["boxes_dir"] = str(self.boxes_dir)
        if self.preset is not None:
            d["preset"] = self.preset
        return d
