"""The :class:`Dataset` interface and the readers every loader shares.

Conventions (docs/datasets.md says the same):

* **Images** are returned as RGB ``uint8`` arrays ``(H, W, 3)`` at their stored resolution, decoded with
  OpenCV (``cv2.imdecode(..., IMREAD_UNCHANGED)``, the decoder SAM's own scripts use). Grayscale is
  replicated to three channels, BGR(A) is converted to RGB and an alpha channel is dropped (no
  compositing), palette PNGs arrive expanded to colour, 16-bit images are scaled to 8 bits with
  ``round(v * 255 / 65535)``. **EXIF orientation is applied** (JPEG, PNG, WebP), exactly as
  ``cv2.imread(path)`` with default flags does — that is how SAM's own scripts (``scripts/amg.py``) and
  HQ-SAM's demo read images, so a model sees what it sees there. ``IMREAD_UNCHANGED`` alone ignores the
  tag, so the tag is read with Pillow and applied with OpenCV's own ``transpose``/``flip`` sequence.
  Masks are read as stored (Pillow, no orientation), so an image whose tag is not 1 is drawn in another
  frame than its mask: a non-square one fails with a size message that names EXIF, and every loader lists
  such images in :meth:`Dataset.notices` (the runner warns once per dataset).
* **Masks** are boolean ``(H, W)`` arrays of the image's size. A mask file is read with Pillow and
  binarised as ``value > threshold`` (default 128, HQ-SAM's ``gt > 128``) after reducing it to one 8-bit
  channel: multi-channel masks use their first channel in RGB order (R), as HQ-SAM's loader does;
  16-bit masks are scaled like images; 1-bit masks are used as they are. Palette (mode ``P``) masks
  hold indices, not intensities: if every used palette entry is gray (r = g = b) the entry's gray value
  is thresholded; otherwise (DAVIS / VOC colour palettes) foreground is every index except 0
  (background) and 255 (VOC "void"), so a multi-object palette mask becomes the union of its objects.
* **Content hash**: sha256 over the canonical JSON of the loader's description of its samples (relative
  file paths with the sha256 of each file's bytes, plus every option that changes samples and a loader
  version); see each loader. Paths are relative, so moving a dataset keeps its hash.
"""

from __future__ import annotations

import abc
import io
import os
import threading
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from sambench.types import SambenchError, Sample, file_digests_of, first_line, stable_hash

#: Default mask threshold: foreground is ``value > DEFAULT_THRESHOLD`` on the 8-bit scale.
DEFAULT_THRESHOLD = 128

_CHUNK = 1 << 20
_FILE_HASHES: dict[tuple[str, int, int], str] = {}
_FILE_HASHES_LOCK = threading.Lock()


class Dataset(abc.ABC):
    """A set of images, each with one or more annotated objects.

    ``name`` is used in result keys (``dataset/image_id/object_id``). ``ids()`` are stable, sorted strings.
    ``load(image_id)`` returns a :class:`~sambench.types.Sample` (RGB uint8 image, boolean masks of the
    image's size) or raises :class:`~sambench.types.SambenchError` with one line naming the bad file,
    so that a runner can record the failure for that image and go on with the others.
    """

    name: str
    format: str = ""

    _content_hash: Optional[str] = None
    _exif: Optional[dict] = None
    _image_hashes: Optional[dict] = None

    @abc.abstractmethod
    def ids(self) -> list[str]:
        """Sorted, stable image ids."""

    @abc.abstractmethod
    def load(self, image_id: str) -> Sample:
        """The image and its objects; raises SambenchError (one line naming the file) on bad input."""

    @abc.abstractmethod
    def _hash_payload(self) -> Any:
        """JSON-able description of everything that determines the samples (hashed by content_hash)."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """JSON-able summary: name, format, root, n_images, options and loader-specific counts."""

    def content_hash(self) -> str:
        """sha256 hex of :meth:`_hash_payload` (file bytes via sha256, options, loader version).

        Computed once per instance; the same files and options give the same hash in any process.
        Images whose EXIF orientation is applied are part of it (their samples are rotated), so a dataset
        without such images keeps the hash it had before orientation was applied.
        """
        if self._content_hash is None:
            payload = self._hash_payload()
            oriented = self.exif_oriented()
            if oriented:
                payload = {"samples": payload, "exif_orientation_applied": sorted(oriented.items())}
            self._content_hash = stable_hash("sambench-dataset", self.format, payload)
        return self._content_hash

    def _image_file(self, image_id: str) -> Optional[Path]:
        """The image file of ``image_id`` (None if a loader has no files)."""
        return None

    def image_files(self, image_id: str) -> list[str]:
        """Files (as shown to users) that make up ``image_id``'s sample: image, masks, boxes, annotations."""
        f = self._image_file(image_id)
        return [str(f)] if f is not None else []

    def _image_payload(self, image_id: str) -> Any:
        """JSON-able description of everything that determines one sample (file digests, annotations,
        options). Loaders override it; the default hashes the image file only."""
        f = self._image_file(image_id)
        return [file_sha256(f) if f is not None and f.is_file() else "missing"]

    def image_hashes(self) -> dict[str, str]:
        """image id → sha256 of :meth:`_image_payload` (plus the applied EXIF orientation), cached.

        What changed between two versions of a dataset is the ids whose hashes differ: a resume after a
        fixed mask re-runs exactly those (``--retry-failed``) and names their files.
        """
        if self._image_hashes is None:
            oriented = self.exif_oriented()
            self._image_hashes = {k: stable_hash("sambench-image", self.format, self._image_payload(k), oriented.get(k, 1))
                                  for k in self.ids()}
        return dict(self._image_hashes)

    def exif_oriented(self) -> dict[str, int]:
        """image id → EXIF orientation (2..8) of every image whose tag is applied on load (cached)."""
        if self._exif is None:
            found = {}
            for image_id in self.ids():
                f = self._image_file(image_id)
                o = exif_orientation(f) if f is not None and f.is_file() else 1
                if o != 1:
                    found[image_id] = o
            self._exif = found
        return dict(self._exif)

    def notices(self) -> list[str]:
        """One-line warnings about the dataset as a whole (computed once; the runner prints each once per
        run and records them in the manifest, the report lists them)."""
        oriented = self.exif_oriented()
        if not oriented:
            return []
        eg = ", ".join(f"{k} ({v})" for k, v in list(oriented.items())[:3])
        return [f"{self.name}: {len(oriented)} image(s) carry an EXIF orientation tag other than 1 (e.g. {eg}); it is "
                f"applied as cv2.imread does and masks are read as stored, so check they are drawn in the rotated frame"]

    def __len__(self) -> int:
        return len(self.ids())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({len(self.ids())} images)>"


def without_misfit_objects(sample: Sample) -> Sample:
    """``sample`` with every object whose mask (or ignore mask) does not fit its image moved to
    ``failed_objects``, blamed on the dataset: a ``Dataset`` (a user's object in hand, say) may return any
    arrays, and a model given that image returns masks of the image's size, so the mismatch is the
    annotation's, never the model's. ``sample`` itself is returned when every object fits."""
    size = tuple(sample.image.shape[:2])
    bad = {}
    for o in sample.objects:
        for what, arr in (("mask", o.mask), ("ignore mask", o.ignore)):
            shape = tuple(np.shape(arr)) if arr is not None else size
            if shape != size and o.id not in bad:
                shown = "x".join(map(str, shape[::-1])) if len(shape) == 2 else str(shape)
                bad[o.id] = (f"dataset '{sample.dataset}' image '{sample.image_id}': object '{o.id}' has a {shown} "
                             f"{what} for a {size[1]}x{size[0]} image (the dataset's annotation does not fit its image)")
    if not bad:
        return sample
    return Sample(dataset=sample.dataset, image_id=sample.image_id, image=sample.image,
                  objects=[o for o in sample.objects if o.id not in bad], meta=sample.meta,
                  failed_objects={**sample.failed_objects, **bad})


def file_sha256(path: os.PathLike | str) -> str:
    """sha256 hex of a file's bytes, read in 1 MiB chunks.

    Results are cached in memory by (absolute path, size, mtime_ns), so re-hashing an unchanged file
    is free while any rewrite (which changes size or mtime) is seen.
    """
    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
    except OSError as exc:
        raise SambenchError(f"{path}: cannot read file: {exc.strerror}") from None
    key = (p, st.st_size, st.st_mtime_ns)
    with _FILE_HASHES_LOCK:
        cached = _FILE_HASHES.get(key)
    if cached is not None:
        return cached
    try:
        digest = file_digests_of(p, ("sha256",), _CHUNK)[1]["sha256"]
    except OSError as exc:
        raise SambenchError(f"{path}: cannot read file: {exc.strerror}") from None
    with _FILE_HASHES_LOCK:
        _FILE_HASHES[key] = digest
    return digest


def _to_uint8(arr: np.ndarray, path: os.PathLike | str, what: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return np.rint(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    raise SambenchError(f"{path}: unsupported {what} sample type {arr.dtype} (need 8- or 16-bit integers)")


#: EXIF orientation tag and the formats whose tag ``cv2.imread`` applies (OpenCV 4.x/5.x imgcodecs).
EXIF_ORIENTATION_TAG = 0x0112
_EXIF_FORMATS = ("JPEG", "MPO", "PNG", "WEBP")


def exif_orientation(data: bytes | os.PathLike | str) -> int:
    """The EXIF orientation (1..8) of an image file or its bytes, 1 when absent or unreadable."""
    try:
        src = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else os.fspath(data)
        with Image.open(src) as im:
            if im.format not in _EXIF_FORMATS:
                return 1
            v = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - no readable EXIF means no orientation; decoding errors come from OpenCV
        return 1
    return int(v) if isinstance(v, int) and 1 <= v <= 8 else 1


def apply_exif_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """``img`` as displayed under EXIF ``orientation``: OpenCV's ``ExifTransform`` sequence, so the result
    equals what ``cv2.imread`` returns for the tagged file."""
    if orientation == 2:
        return cv2.flip(img, 1)
    if orientation == 3:
        return cv2.flip(img, -1)
    if orientation == 4:
        return cv2.flip(img, 0)
    if orientation in (5, 6, 7, 8):
        t = cv2.transpose(img)
        return {5: t, 6: cv2.flip(t, 1), 7: cv2.flip(t, -1), 8: cv2.flip(t, 0)}[orientation]
    return img


def read_image(path: os.PathLike | str) -> np.ndarray:
    """Read an image file as RGB uint8 ``(H, W, 3)`` (see the module docstring for conversions).

    Raises SambenchError naming the file if it is missing, empty, corrupt, truncated or of an
    unsupported pixel type.
    """
    return read_image_oriented(path)[0]


def read_image_oriented(path: os.PathLike | str) -> tuple[np.ndarray, int]:
    """:func:`read_image` and the EXIF orientation that was applied to it (1 = none)."""
    try:
        buf = np.fromfile(os.fspath(path), dtype=np.uint8)
    except OSError as exc:
        raise SambenchError(f"{path}: cannot read image: {exc.strerror or exc}") from None
    if buf.size == 0:
        raise SambenchError(f"{path}: empty image file (0 bytes)")
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None:
        raise SambenchError(f"{path}: cannot decode image (corrupt, truncated or unsupported format)")
    img = _to_uint8(img, path, "image")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        raise SambenchError(f"{path}: unsupported image layout {img.shape} (need gray, RGB or RGBA)")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise SambenchError(f"{path}: image has zero size {img.shape[1]}x{img.shape[0]}")
    orientation = exif_orientation(buf.tobytes()) if _may_have_exif(buf) else 1
    return np.ascontiguousarray(apply_exif_orientation(img, orientation)), orientation


def _may_have_exif(buf: np.ndarray) -> bool:
    """JPEG, PNG or WebP bytes: the formats whose EXIF orientation cv2.imread applies."""
    head = buf[:4].tobytes()
    return head[:2] == b"\xff\xd8" or head == b"\x89PNG" or (head == b"RIFF" and buf[8:12].tobytes() == b"WEBP")


def exif_note(orientation: int) -> str:
    """Words for a size message about an image whose EXIF orientation was applied ('' for none)."""
    if orientation in (1, None):
        return ""
    return (f" (its EXIF orientation {orientation} was applied, as cv2.imread does"
            f"{', which swaps width and height' if orientation >= 5 else ''}; the mask is read as stored)")


def _palette_to_gray(im: Image.Image, idx: np.ndarray) -> Optional[np.ndarray]:
    """Gray values of a palette image if every used entry is gray, else None."""
    pal = im.getpalette()  # flat RGB list
    if not pal:
        return None
    entries = np.asarray(pal, dtype=np.int64).reshape(-1, 3)
    used = np.unique(idx)
    if used.max(initial=0) >= len(entries):
        return None
    e = entries[used]
    if not (np.all(e[:, 0] == e[:, 1]) and np.all(e[:, 1] == e[:, 2])):
        return None
    lut = np.zeros(256, dtype=np.uint8)
    lut[: len(entries)] = entries[:256, 0].astype(np.uint8)
    return lut[idx]


def read_mask_values(path: os.PathLike | str) -> tuple[np.ndarray, str]:
    """A mask file's values, before any threshold: ``(array (H, W), kind)``.

    ``kind`` is ``"index"`` for a colour-palette PNG (the array holds palette indices), ``"binary"`` for a
    1-bit file (bool array), ``"label"`` for a MATLAB ``.mat`` instance file (SBD's ``GTinst.Segmentation``,
    integer ids) and ``"gray"`` otherwise (8-bit intensities: first channel in RGB order, 16-bit scaled,
    gray palettes mapped to their gray values). Raises SambenchError naming the file if it cannot be read.
    """
    if os.fspath(path).lower().endswith(".mat"):
        return _read_mat_instances(path), "label"
    try:
        with Image.open(os.fspath(path)) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "PA"):
                idx = np.asarray(im)
                if idx.ndim == 3:
                    idx = idx[:, :, 0]
                gray = _palette_to_gray(im, idx)
                return (idx, "index") if gray is None else (gray, "gray")
            if mode == "1":
                return np.asarray(im, dtype=bool).copy(), "binary"
            if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                arr = np.asarray(im.convert("RGB"))
            else:
                arr = np.asarray(im)
    except FileNotFoundError:
        raise SambenchError(f"{path}: mask file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise SambenchError(f"{path}: cannot decode mask ({first_line(exc)})") from None
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise SambenchError(f"{path}: unsupported mask layout {arr.shape}")
    if mode.startswith("I;16") or mode == "I":
        arr = np.clip(arr.astype(np.int64), 0, 65535).astype(np.uint16)
    return _to_uint8(arr, path, "mask"), "gray"


def _read_mat_instances(path: os.PathLike | str) -> np.ndarray:
    """SBD's ``inst/*.mat``: the ``GTinst`` struct's ``Segmentation`` field (0 = background, k = instance k)."""
    from scipy.io import loadmat  # lazy: scipy.io is heavy and only SBD's .mat masks need it
    from scipy.io.matlab import MatReadError  # lazy: as above

    try:
        data = loadmat(os.fspath(path), squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise SambenchError(f"{path}: mask file not found") from None
    except (MatReadError, ValueError, TypeError, OSError, NotImplementedError) as exc:
        raise SambenchError(f"{path}: cannot read MATLAB file ({first_line(exc)})") from None
    inst = data.get("GTinst")
    seg = getattr(inst, "Segmentation", None)
    if seg is None or np.ndim(seg) != 2:
        raise SambenchError(f"{path}: not an SBD instance file (expected a GTinst struct with a 2-D Segmentation)")
    return np.asarray(seg).astype(np.int64)


def foreground(values: np.ndarray, kind: str, threshold: int) -> np.ndarray:
    """The one-object mask of a file's values: ``value > threshold`` for intensities; every index but 0
    (background) and 255 (VOC void) for colour palettes and instance labels; a 1-bit file as it is."""
    if kind == "binary":
        return values
    if kind in ("index", "label"):
        return (values != 0) & (values != 255)
    return values > threshold


def read_mask(path: os.PathLike | str, threshold: int = DEFAULT_THRESHOLD) -> np.ndarray:
    """Read a mask file as a boolean ``(H, W)`` array: foreground where ``value > threshold``.

    Multi-channel masks use their first channel in RGB order; 16-bit masks are scaled to 8 bits;
    palette masks follow the gray/colour-palette rule of the module docstring. Raises SambenchError
    naming the file if it cannot be read. Emptiness is checked by the caller.
    """
    values, kind = read_mask_values(path)
    return foreground(values, kind, threshold)


#: An 8-bit mask whose nonzero values are all at most this (and at most the threshold) holds ids, not
#: intensities (VOC has at most 56 instances per image, SBD fewer).
MAX_INSTANCE_ID = 64


def looks_like_instance_ids(values: np.ndarray, kind: str, threshold: int) -> Optional[list[int]]:
    """The values of an 8-bit mask that holds ids rather than intensities, or None.

    Ids: besides 0 and 255 (VOC's void), only small integers 1, 2, 3, … (all <= 64 and <= the threshold,
    so thresholding would find no object or only the void band). Such a file is an instance-id (or 0/1)
    mask; an intensity mask has 255 and, if anti-aliased, values spread up to 254.
    """
    if kind != "gray":
        return None
    used = [int(v) for v in np.unique(values)]
    small = [v for v in used if 0 < v < 255]
    if not small or max(small) > min(threshold, MAX_INSTANCE_ID):
        return None
    return [v for v in used if v != 0]


def empty_mask_error(path: os.PathLike | str, threshold: int, values: Optional[np.ndarray] = None,
                     kind: Optional[str] = None, ignore: Optional[int] = None) -> SambenchError:
    """The error for a mask with no pixel above ``threshold``, with a hint when it holds low values.

    A 0/1 (or 0/k, k <= threshold) mask is common: say how many pixels are non-zero and which
    ``threshold`` would read them as foreground; when the values look like instance ids
    (:func:`looks_like_instance_ids`), also that ``instances=true`` makes one object per id. When every
    non-zero pixel is the declared ``ignore`` value (a 0/128 mask with ``ignore=128``), say so: the file
    marks only what was declared the unlabelled band; a ``threshold`` below it reads the band as the object.
    """
    msg = f"{path}: empty mask (no pixel > {threshold})"
    if values is None:
        try:
            values, kind = read_mask_values(path)
        except SambenchError:
            return SambenchError(msg)
    if kind == "gray":
        nonzero = int(np.count_nonzero(values))
        if nonzero:
            top = int(values.max())
            vals = "value 1" if top == 1 else f"values 1..{top}"
            if ignore is not None and top == ignore and not np.any((values != 0) & (values != ignore)):
                return SambenchError(f"{msg}; every one of its {nonzero} non-zero pixel(s) is {ignore}, the declared "
                                     f"ignore value (ignore={ignore}), so the file marks no object; if that band is the "
                                     f"object (a 0/{top} mask), --dataset-option threshold={top - 1} reads it as "
                                     f"foreground (then it is not ignored)")
            msg += (f"; it holds {nonzero} pixel(s) of {vals} (a 0/{top} mask?): --dataset-option "
                    f"threshold={top - 1} reads them as foreground")
            ids = looks_like_instance_ids(values, kind, threshold)
            if ids is not None and len(ids) > 1:
                msg += (f"; if its values {{0, {', '.join(map(str, ids[:8]))}{', …' if len(ids) > 8 else ''}}} are "
                        f"instance ids, instances=true makes one object per id")
    return SambenchError(msg)


def split_instances(values: np.ndarray, void: Optional[int] = 255) -> list[tuple[int, np.ndarray]]:
    """One ``(id, mask)`` per instance id of an id mask, ids ascending; 0 (background) and ``void`` are
    not objects."""
    return [(int(v), values == v) for v in np.unique(values) if v != 0 and (void is None or v != void)]


def check_threshold(value: Any) -> int:
    """Validate a mask threshold option: an integer in [0, 254] (foreground is ``value > threshold``)."""
    try:
        t = int(value)
        if float(value) != t:
            raise ValueError
    except (TypeError, ValueError):
        raise SambenchError(f"threshold: expected an integer in [0, 254], got {value!r}") from None
    if not 0 <= t <= 254:
        raise SambenchError(f"threshold: expected an integer in [0, 254], got {t}")
    return t


def check_mask_value(value: Any, option: str) -> int:
    """Validate a mask value option (e.g. ``ignore``): an integer in [0, 255]."""
    try:
        v = int(value)
        if isinstance(value, bool) or float(value) != v or not 0 <= v <= 255:
            raise ValueError
    except (TypeError, ValueError):
        raise SambenchError(f"{option}: expected a mask value, an integer in [0, 255], got {value!r}") from None
    return v


def parse_bool(value: Any, option: str) -> bool:
    """Accept True/False or the strings true/false/yes/no/1/0 (as options arrive from a CLI)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
        return False
    raise SambenchError(f"{option}: expected true or false, got {value!r}")


def parse_list(value: Any) -> list:
    """A list option given as a list/tuple or as one comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


def as_path(value: os.PathLike | str) -> Path:
    """``Path`` with ``~`` expanded."""
    return Path(os.fspath(value)).expanduser()
