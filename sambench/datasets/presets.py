"""Named folder layouts: the presets of public benchmarks and the GrabCut sample shipped with sambench.

A preset (:data:`PRESETS`) is a :class:`~sambench.datasets.folder.FolderDataset` with the image and mask
directory names, extensions and options of one distribution: HQSeg-44K's validation sets as HQ-SAM
reads them, and the interactive-segmentation benchmarks as RITM distributes them.
:func:`open_preset` finds the layout under a root (the dataset folder, a parent of it, or HQSeg-44K's
``data/``). ``grabcut-sample`` and ``grabcut-sample-band`` are the 13 GrabCut images shipped in
``sambench/data/grabcut_sample`` (research use only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from sambench.datasets.base import as_path
from sambench.datasets.folder import FolderDataset
from sambench.types import SambenchError


@dataclass(frozen=True)
class FolderPreset:
    """A named folder layout: image/mask dir names, where to look under ``root``, default extensions."""

    name: str
    description: str
    images: str
    masks: str
    search: tuple[str, ...]
    image_exts: tuple[str, ...] = (".jpg", ".jpeg")
    mask_exts: tuple[str, ...] = (".png",)
    #: Folder options this layout implies (``ignore``, ``instances``, ``threshold``, ``ids_file``), as pairs.
    options: tuple = ()


#: HQSeg-44K validation layouts (paths as in HQ-SAM's ``train/train.py``). ``root`` may be the dataset
#: folder itself, its parent, or the HQSeg-44K ``data`` root: every entry of ``search`` is tried.
PRESETS: dict[str, FolderPreset] = {
    p.name: p
    for p in (
        FolderPreset("dis5k-vd", "DIS5K validation split (DIS-VD): im/*.jpg + gt/*.png; root=DIS-VD, DIS5K or HQSeg-44K data/",
                     "im", "gt", ("", "DIS-VD", "DIS5K/DIS-VD", "data/DIS5K/DIS-VD")),
        FolderPreset("coift", "COIFT: images/*.jpg + masks/*.png; root=COIFT, thin_object_detection or HQSeg-44K data/",
                     "images", "masks", ("", "COIFT", "thin_object_detection/COIFT", "data/thin_object_detection/COIFT")),
        FolderPreset("hrsod", "HRSOD as in HQSeg-44K: images/*.jpg + masks_max255/*.png; root=HRSOD, thin_object_detection or data/",
                     "images", "masks_max255", ("", "HRSOD", "thin_object_detection/HRSOD", "data/thin_object_detection/HRSOD")),
        FolderPreset("thinobject5k", "ThinObject-5K test split: images_test/*.jpg + masks_test/*.png; root=ThinObject5K, thin_object_detection or data/",
                     "images_test", "masks_test",
                     ("", "ThinObject5K", "thin_object_detection/ThinObject5K", "data/thin_object_detection/ThinObject5K")),
        # Interactive-segmentation benchmarks, in the layouts RITM's isegm/data/datasets read.
        FolderPreset("grabcut", "GrabCut (50 images) as distributed with RITM: data_GT/ + boundary_GT/*.bmp, 128 = unlabelled band (ignored)",
                     "data_GT", "boundary_GT", ("", "GrabCut"), (".jpg", ".jpeg", ".bmp", ".png"), (".bmp", ".png"),
                     (("ignore", 128),)),
        FolderPreset("berkeley", "Berkeley (96 objects) as distributed with RITM: images/*.jpg + masks/*.png, 128 = unlabelled band (ignored)",
                     "images", "masks", ("", "Berkeley"), (".jpg", ".jpeg"), (".png",), (("ignore", 128),)),
        FolderPreset("davis-345", "DAVIS-345 (345 frames) as distributed with RITM: img/*.jpg + gt/*.png, foreground = any value > 0",
                     "img", "gt", ("", "DAVIS", "DAVIS345", "DAVIS-345"), (".jpg", ".jpeg"), (".png",), (("threshold", 0),)),
        FolderPreset("sbd", "SBD validation (2857 images, one object per instance): img/*.jpg + inst/*.mat (or indexed .png), ids from val.txt",
                     "img", "inst", ("", "dataset", "SBD/dataset", "benchmark_RELEASE/dataset"), (".jpg", ".jpeg"),
                     (".mat", ".png"), (("instances", True), ("ids_file", "val.txt"))),
    )
}


def open_preset(preset: str, root: os.PathLike | str, *, name: Optional[str] = None, **options: Any) -> FolderDataset:
    """Open a :data:`PRESETS` layout under ``root`` (the dataset folder, a parent of it, or HQSeg-44K ``data/``)."""
    p = PRESETS[preset]
    root_p = as_path(root)
    if not root_p.is_dir():
        raise SambenchError(f"{root_p}: root directory for preset '{preset}' not found")
    tried = []
    for sub in p.search:
        base = root_p / sub if sub else root_p
        tried.append(str(base))
        if (base / p.images).is_dir() and (base / p.masks).is_dir():
            options.setdefault("image_exts", p.image_exts)
            options.setdefault("mask_exts", p.mask_exts)
            for key, value in p.options:
                options.setdefault(key, value)
            return FolderDataset(base, images=base / p.images, masks=base / p.masks, name=name or p.name,
                                 preset=p.name, **options)
    raise SambenchError(f"{root_p}: preset '{preset}' needs {p.images}/ and {p.masks}/ in one of: {', '.join(tried)}")


#: The GrabCut sample shipped with sambench (13 images, GT masks, reference boxes).
GRABCUT_SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "grabcut_sample"
GRABCUT_SAMPLE_DESCRIPTION = ("13 GrabCut images (Rother et al. 2004) with GT masks and reference boxes, "
                              "shipped with sambench (research use only)")


def grabcut_sample(*, name: Optional[str] = None, **options: Any) -> FolderDataset:
    """The shipped ``grabcut-sample``: a folder dataset with ``Sample.meta["reference_box"]``.

    Boxes are ``[x1, y1, x2, y2]`` floats from the course hand-out; x2/y2 can equal the image
    width/height, i.e. treat them as exclusive corners (or clip them).
    """
    return FolderDataset(GRABCUT_SAMPLE_DIR, images="images", masks="masks", boxes="boxes",
                         name=name or "grabcut-sample", preset="grabcut-sample",
                         image_exts=options.pop("image_exts", (".jpg",)),
                         mask_exts=options.pop("mask_exts", (".png",)), **options)


GRABCUT_SAMPLE_BAND_DESCRIPTION = ("the grabcut-sample images with the original GrabCut GT: 128 = unlabelled band, "
                                   "ignored in IoU and clicks (as RITM evaluates GrabCut; research use only)")


def grabcut_sample_band(*, name: Optional[str] = None, **options: Any) -> FolderDataset:
    """``grabcut-sample-band``: the same 13 images and boxes with the original GrabCut GT
    (``masks_band/``, {0, 128, 255}); 128 is the ignore band (``Object.ignore``), 255 the object."""
    options.setdefault("ignore", 128)
    return FolderDataset(GRABCUT_SAMPLE_DIR, images="images", masks="masks_band", boxes="boxes",
                         name=name or "grabcut-sample-band", preset="grabcut-sample-band",
                         image_exts=options.pop("image_exts", (".jpg",)),
                         mask_exts=options.pop("mask_exts", (".png",)), **options)
