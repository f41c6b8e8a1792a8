"""Datasets: where samples (RGB image + boolean object masks) come from.

``open_dataset(spec)`` accepts

* a shipped dataset name: ``grabcut-sample`` (or ``grabcut-sample-band``: its original GT with the
  128 ignore band);
* a folder-layout preset with its root: ``open_dataset("dis5k-vd", root=PATH)`` or, where only one
  string can be passed (the CLI's ``--dataset``), ``"dis5k-vd:PATH"``; presets are ``dis5k-vd``,
  ``coift``, ``hrsod``, ``thinobject5k`` (HQSeg-44K validation layouts) and ``grabcut``, ``berkeley``,
  ``davis-345``, ``sbd`` (interactive-segmentation layouts, as RITM reads them);
* a path: a ``.json`` file is a COCO dataset, a directory a folder dataset (``format`` forces one).

Conventions are in :mod:`sambench.datasets.base` (image decoding, mask threshold ``> 128``, hash),
:mod:`sambench.datasets.folder`, :mod:`sambench.datasets.presets` and :mod:`sambench.datasets.coco`, and in
docs/datasets.md.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from sambench.datasets.base import DEFAULT_THRESHOLD, Dataset, file_sha256, read_image, read_mask
from sambench.datasets.coco import COCO_OPTIONS, CocoDataset
from sambench.datasets.folder import AUTO_LAYOUTS, FOLDER_OPTIONS, FolderDataset
from sambench.datasets.presets import (GRABCUT_SAMPLE_BAND_DESCRIPTION, GRABCUT_SAMPLE_DESCRIPTION, PRESETS,
                                       grabcut_sample, grabcut_sample_band, open_preset)
from sambench.types import SambenchError, did_you_mean

__all__ = [
    "Dataset", "DatasetSpec", "FolderDataset", "CocoDataset", "open_dataset", "list_datasets", "read_image", "read_mask",
    "file_sha256", "PRESETS", "AUTO_LAYOUTS", "DEFAULT_THRESHOLD",
]

FORMATS = (None, "folder", "coco")

#: Datasets shipped inside the package: name -> (factory, description).
SHIPPED = {"grabcut-sample": (grabcut_sample, GRABCUT_SAMPLE_DESCRIPTION),
           "grabcut-sample-band": (grabcut_sample_band, GRABCUT_SAMPLE_BAND_DESCRIPTION)}


def list_datasets() -> dict[str, str]:
    """Known names → one-line description: shipped datasets and folder-layout presets (need root=)."""
    out = {name: desc for name, (_, desc) in SHIPPED.items()}
    for name, p in PRESETS.items():
        out[name] = f"preset, needs root=PATH: {p.description}"
    return out


def _check_options(options: dict, allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SambenchError(f"{what}: unknown option(s) {', '.join(unknown)} (known: {', '.join(allowed) or 'none'})")


def open_dataset(spec: str, format: Optional[str] = None, *, name: Optional[str] = None,
                 images: Optional[str] = None, masks: Optional[str] = None, **options: Any) -> Dataset:
    """Open a dataset by name, preset or path.

    Args:
        spec: ``"grabcut-sample"``; a preset name (``"dis5k-vd"``, ``"coift"``, ``"hrsod"``,
            ``"thinobject5k"``) with ``root=PATH``, or ``"<preset>:PATH"``; or a path (``.json`` → COCO,
            directory → folder).
        format: ``None`` (auto), ``"folder"`` or ``"coco"``.
        name: dataset name used in result keys (default: shipped/preset name, or derived from the path).
        images: folder: image dir (with ``masks``); COCO: the dir ``file_name`` is relative to.
        masks: folder: mask dir. Relative dirs are tried under the root first, then the working directory.
        **options: folder: ``image_exts``, ``mask_exts``, ``threshold``, ``boxes`` (+ ``root`` for a
            preset); COCO: ``include_crowd``, ``min_area``, ``categories``. Strings are accepted
            (``"true"``, ``"10"``, ``".jpg,.png"``, ``"person,car"``).

    Raises SambenchError (one line) for unknown names, missing paths, bad options or malformed data.
    """
    if format not in FORMATS:
        raise SambenchError(f"format: expected folder or coco, got {format!r}")
    if not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec):
        raise SambenchError(f"dataset: expected a name or a path, got {spec!r}")
    spec_s = os.fspath(spec)

    if spec_s in SHIPPED:
        if format == "coco" or images is not None or masks is not None:
            raise SambenchError(f"dataset '{spec_s}' is shipped with sambench: it takes no format/images/masks")
        _check_options(options, tuple(o for o in FOLDER_OPTIONS if o != "boxes"), f"dataset '{spec_s}'")
        return SHIPPED[spec_s][0](name=name, **options)

    preset, _, preset_root = spec_s.partition(":")
    if preset in PRESETS and (preset_root or spec_s == preset):
        if format == "coco" or images is not None or masks is not None:
            raise SambenchError(f"preset '{preset}' is a folder layout: it takes no format=coco/images/masks")
        root = options.pop("root", None)
        if preset_root:
            if root is not None:
                raise SambenchError(f"preset '{preset}': root given twice ('{preset_root}' and root={root!r})")
            root = preset_root
        if root is None:
            p = PRESETS[preset]
            raise SambenchError(f"dataset '{preset}' is a folder layout preset: pass root=PATH (or '{preset}:PATH'), "
                                f"the folder holding {p.images}/ and {p.masks}/")
        _check_options(options, FOLDER_OPTIONS, f"preset '{preset}'")
        return open_preset(preset, root, name=name, **options)

    path = Path(spec_s).expanduser()
    if not path.exists():
        known = ", ".join(sorted(list_datasets()))
        raise SambenchError(f"unknown dataset '{spec_s}'{did_you_mean(spec_s, list_datasets())}: not a known name "
                            f"({known}) nor an existing path")
    if "root" in options:
        raise SambenchError(f"{path}: root= is only for presets; the path is the root")
    if path.is_file():
        if format == "folder":
            raise SambenchError(f"{path}: a folder dataset needs a directory, got a file")
        if format is None and path.suffix.lower() != ".json":
            raise SambenchError(f"{path}: unsupported dataset file (expected a COCO .json or a directory)")
        if masks is not None:
            raise SambenchError(f"{path}: masks= is for folder datasets, not COCO")
        _check_options(options, COCO_OPTIONS, f"COCO dataset {path.name}")
        return CocoDataset(path, images=images, name=name, **options)
    if format == "coco":
        raise SambenchError(f"{path}: a COCO dataset is opened from its annotation .json file, got a directory")
    _check_options(options, FOLDER_OPTIONS, f"folder dataset {path}")
    return FolderDataset(path, images=images, masks=masks, name=name, **options)


@dataclass
class DatasetSpec:
    """How to (re)open a dataset: the arguments of :func:`open_dataset`. Recorded in run manifests
    (``manifest["datasets"][name]["spec"]``) so that reports can reopen the images."""

    spec: str
    format: Optional[str] = None
    name: Optional[str] = None
    images: Optional[str] = None
    masks: Optional[str] = None
    options: dict = field(default_factory=dict)

    def open(self) -> Dataset:
        return open_dataset(self.spec, format=self.format, name=self.name, images=self.images, masks=self.masks,
                            **self.options)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetSpec":
        """The inverse of :meth:`to_dict` (a manifest's ``spec``)."""
        return cls(**{k: d[k] for k in ("spec", "format", "name", "images", "masks", "options") if k in d})
