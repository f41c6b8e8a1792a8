"""Video datasets: object tracks over lazily read frames (issue 20). docs/video.md says the same.

The public module: :class:`Track`, :class:`VideoDataset`, :class:`VideoFrames` (defined in
:mod:`sambench.datasets.video_base`, conventions in its docstring), the readers of
:mod:`sambench.datasets.video_formats` (DAVIS 2016/2017, YouTube-VOS/MOSE) and
:mod:`sambench.datasets.video_sav` (SA-V), the shipped synthetic
``grabcut-video-sample`` (:mod:`sambench.datasets.video_synth`) and :func:`open_video_dataset`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

from sambench.datasets.video_base import FRAME_CACHE, Track, VideoDataset, VideoFrames
from sambench.datasets.video_formats import Davis2016Dataset, Davis2017Dataset, YtvosDataset, detect_format
from sambench.datasets.video_sav import SavDataset
from sambench.datasets.video_synth import GRABCUT_VIDEO_DESCRIPTION, SyntheticVideoDataset, grabcut_video_sample
from sambench.types import SambenchError, did_you_mean

__all__ = ["Track", "VideoDataset", "VideoFrames", "FRAME_CACHE", "Davis2016Dataset", "Davis2017Dataset",
           "YtvosDataset", "SavDataset", "SyntheticVideoDataset", "VIDEO_PRESETS", "VIDEO_FORMATS",
           "open_video_dataset", "list_video_datasets"]

#: Shipped video datasets: name -> (factory(name=None, **options), one-line description).
VIDEO_PRESETS: dict[str, tuple[Callable[..., VideoDataset], str]] = {
    "grabcut-video-sample": (grabcut_video_sample, GRABCUT_VIDEO_DESCRIPTION),
}

#: ``<format>:PATH`` prefixes -> reader class (called as ``cls(root, split=..., name=..., **options)``).
VIDEO_FORMATS: dict[str, Callable[..., VideoDataset]] = {
    "davis2016": Davis2016Dataset,
    "davis2017": Davis2017Dataset,
    "ytvos": YtvosDataset,
    "mose": YtvosDataset,
    "sav": SavDataset,
}

_FORMAT_NAMES = {"davis2016": "DAVIS 2016: JPEGImages/480p/<video>/*.jpg + Annotations/480p/<video>/*.png (binary)",
                 "davis2017": "DAVIS 2017: as 2016 with palette PNGs, one index per object (255 = void)",
                 "ytvos": "YouTube-VOS: <split>/JPEGImages, <split>/Annotations (palette PNGs), <split>/meta.json",
                 "mose": "MOSE: the YouTube-VOS layout",
                 "sav": "SA-V: <video>_manual.json masklets (COCO RLE) + JPEG frames, or sav_val/sav_test PNG layout"}


def list_video_datasets() -> dict[str, str]:
    """Known names -> one-line description: shipped video datasets and ``<format>:PATH`` readers."""
    out = {name: desc for name, (_, desc) in VIDEO_PRESETS.items()}
    out.update({f"{fmt}:PATH": desc for fmt, desc in _FORMAT_NAMES.items()})
    return out


def open_video_dataset(spec: str, split: Optional[str] = None, *, name: Optional[str] = None,
                       **options: Any) -> VideoDataset:
    """Open a video dataset: ``"davis2016:PATH"``, ``"davis2017:PATH"``, ``"ytvos:PATH"``, ``"mose:PATH"``,
    ``"sav:PATH"``, ``"grabcut-video-sample"``, or a bare PATH (format detected from its layout).

    ``split`` selects videos: DAVIS ``ImageSets/<year>/<split>.txt``; YouTube-VOS/MOSE the ``<split>/``
    folder (default ``train`` if present, else ``valid``); SA-V ``sav_<split>.txt`` when present.
    ``name`` is the dataset name in result keys (default: the format's name, e.g. ``davis2017``).
    Raises SambenchError with one line naming the path and the problem.
    """
    if not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec):
        raise SambenchError(f"video dataset: expected a name or a path, got {spec!r}")
    spec_s = os.fspath(spec)
    if spec_s in VIDEO_PRESETS:
        if split is not None:
            raise SambenchError(f"video dataset '{spec_s}' is shipped with sambench: it takes no split")
        return VIDEO_PRESETS[spec_s][0](name=name, **options)
    fmt, sep, rest = spec_s.partition(":")
    if sep and fmt in VIDEO_FORMATS:
        if not rest:
            raise SambenchError(f"video dataset '{spec_s}': give the dataset's root after '{fmt}:'")
        return VIDEO_FORMATS[fmt](Path(rest).expanduser(), split=split, name=name or fmt, **options)
    path = Path(spec_s).expanduser()
    if not path.exists():
        known = sorted(VIDEO_PRESETS) + [f"{f}:PATH" for f in VIDEO_FORMATS]
        raise SambenchError(f"unknown video dataset '{spec_s}'{did_you_mean(spec_s, list(VIDEO_PRESETS))}: not a "
                            f"known name ({', '.join(known)}) nor an existing path")
    fmt = detect_format(path)
    return VIDEO_FORMATS[fmt](path, split=split, name=name or fmt, **options)
