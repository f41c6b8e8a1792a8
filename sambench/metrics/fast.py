"""Scoring: the values of :mod:`sambench.metrics` (IoU, boundary IoU, COCO RLE) with far less work per mask.

``sambench.metrics`` holds the definitions and computes them on full-resolution masks. This module
computes **exactly the same numbers** (the same integer counts, then the same division; the same
pycocotools RLE string) but touches far fewer pixels. Tests compare every value with the reference
functions and with an independent scipy rendering of boundary-iou-api.

Why a crop is exact
    boundary-iou-api erodes after padding the mask with zeros, so outside the image counts as 0. A mask is
    0 outside its bounding box too, so its erosion, and so its boundary band, computed on its bbox crop
    with a zero border, equals the full-image one (the dilation ``d`` still comes from the full image's
    diagonal). Intersections need only the overlap of two bboxes. A prediction is therefore read once (to
    pack it, 8 pixels per byte) and everything else touches its packed bbox crop only.

Ground truth once per object
    :class:`ObjectScorer` computes the object's area, bit-packed mask, boundary band and band size once;
    every prompt of that object reuses them.

Bit-packed crops
    Crop rows are packed 64 pixels per little-endian ``uint64`` word, with crop columns starting at a
    multiple of 64 in the image, so any two masks' words line up. ``&`` + ``np.bitwise_count`` give
    every intersection. Erosion by the (2d+1)² square is separable: an AND (a min-pool on booleans) over
    2d+1 columns, then over 2d+1 rows, each built by doubling (``F_{c+s}(x) = F_c(x) & F_c(x+s)``,
    ``s <= c``), so it costs about log2(2d+1) shifted ANDs per axis rather than 2d+1, with zeros shifted in
    at the borders (boundary-iou-api's zero padding).

RLE from runs
    pycocotools' RLE runs through the mask in column-major order, starting with a run of zeros. Its change
    points are the crop's vertical transitions (a 0 row above and below the crop). A column ending in 1
    followed by a column starting with 1 gives the same change point twice, and the two cancel. The run
    lengths go through pycocotools' own ``frPyObjects`` to become the compressed COCO string.

On a device
    :meth:`ObjectScorer.score` also takes a torch bool tensor (H, W). It does the same on the tensor's
    device, unpacked: bbox, crop, separable erosion by doubling on bool tensors, counts. Only the row and
    column occupancy flags (H + W booleans, for the bbox), four counts and the transition coordinates come
    back to the host, never the mask. On CPU tensors, it gives exactly the numpy values (tested).
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

import numpy as np
from pycocotools import mask as mask_utils

from sambench.metrics import boundary_dilation, boundary_iou, encode_rle, iou

WORD = 64
_U64 = np.dtype("<u8")

#: What the scorer times its stages with: any object whose ``stage(name)`` is a context manager
#: (the runner's :class:`sambench.execution.timing.StageTimer`); None times nothing.
Timer = Any


class _NoTimer:
    """The timer of a call that times nothing: ``stage(name)`` is an empty context."""

    def stage(self, name: str) -> nullcontext:
        return nullcontext()


_NULL_TIMER = _NoTimer()


@dataclass(frozen=True)
class MaskScore:
    """What the store keeps of one predicted mask: the reference functions' values, exactly."""

    iou: float
    biou: float
    pred_area: int
    rle: dict  # {"size": [H, W], "counts": str}, as metrics.encode_rle


# ------------------------------------------------------------------------------------ bit-packed masks


@dataclass(frozen=True)
class Packed:
    """Pixels ``[64 w0, 64 (w0 + nw))`` × rows ``[r0, r0 + nh)`` of a mask, as ``bits`` of shape (nw, nh):
    pixel ``(row, x)`` is bit ``x % 64`` of ``bits[x // 64 - w0, row - r0]``. Words-major, so that shifting
    along a row moves whole contiguous blocks. ``width`` bounds the width of the mask's bbox."""

    r0: int
    w0: int
    bits: np.ndarray
    width: int


def pack(mask: np.ndarray) -> Optional[Packed]:
    """The bit-packed bbox crop of a bool (H, W) mask, or None when the mask is empty.

    The whole mask is packed first (one pass over it, 8 pixels per byte); the bbox is then found on the
    packed words (rows and 64-px words with a set bit), and only that part is kept.
    """
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        m = m.astype(bool)
    packed = np.packbits(m, axis=1, bitorder="little")
    h, nbytes = packed.shape
    if nbytes % 8:
        full = np.zeros((h, nbytes + 8 - nbytes % 8), dtype=np.uint8)
        full[:, :nbytes] = packed
        packed = full
    words = packed.view(_U64)
    rows = np.flatnonzero(words.any(axis=1))
    if rows.size == 0:
        return None
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(words[r0:r1].any(axis=0))
    w0, w1 = int(cols[0]), int(cols[-1]) + 1
    return Packed(r0, w0, np.ascontiguousarray(words[r0:r1, w0:w1].T), WORD * (w1 - w0))


def popcount(bits: np.ndarray) -> int:
    return int(np.bitwise_count(bits).sum(dtype=np.int64))


def _toward_low(a: np.ndarray, s: int) -> np.ndarray:
    """``out[x] = a[x + s]`` along the packed pixel axis (axis 0; zeros shifted in)."""
    q, r = divmod(s, WORD)
    nw = a.shape[0]
    out = np.empty_like(a)
    out[max(0, nw - q):] = 0
    if q >= nw:
        return out
    src = a[q:]
    if r == 0:
        out[:nw - q] = src
    else:
        np.right_shift(src, r, out=out[:nw - q])
        out[:nw - q - 1] |= src[1:] << (WORD - r)
    return out


def _toward_high(a: np.ndarray, s: int) -> np.ndarray:
    """``out[x] = a[x - s]`` along the packed pixel axis (axis 0; zeros shifted in)."""
    q, r = divmod(s, WORD)
    nw = a.shape[0]
    out = np.empty_like(a)
    out[:min(q, nw)] = 0
    if q >= nw:
        return out
    src = a[:nw - q]
    if r == 0:
        out[q:] = src
    else:
        np.left_shift(src, r, out=out[q:])
        out[q + 1:] |= src[:nw - q - 1] >> (WORD - r)
    return out


def _doubling_steps(length: int) -> Iterator[int]:
    c = 1
    while c < length:
        s = min(c, length - c)
        yield s
        c += s


def erode_packed(p: Packed, d: int) -> np.ndarray:
    """Erosion of ``p`` by the (2d+1)² square with a zero border, in ``p``'s frame (packed)."""
    h = p.bits.shape[1]
    length = 2 * d + 1
    if h < length or p.width < length:
        return np.zeros_like(p.bits)
    f = p.bits.copy()
    for s in _doubling_steps(length):           # f[x] = AND of a[x .. x + c - 1]
        f &= _toward_low(f, s)
    f = _toward_high(f, d)                      # centre: AND of a[x - d .. x + d]
    g = np.empty_like(f)
    for s in _doubling_steps(length):           # the same over rows (two buffers, swapped)
        np.bitwise_and(f[:, :h - s], f[:, s:], out=g[:, :h - s])
        g[:, h - s:] = 0
        f, g = g, f
    g[:, :d] = 0
    g[:, d:] = f[:, :h - d]
    return g


def _overlap_count(a: Packed, a_bits: np.ndarray, b: Packed, b_bits: np.ndarray) -> int:
    """popcount(a_bits & b_bits) over the overlap of the two frames."""
    r0, r1 = max(a.r0, b.r0), min(a.r0 + a_bits.shape[1], b.r0 + b_bits.shape[1])
    w0, w1 = max(a.w0, b.w0), min(a.w0 + a_bits.shape[0], b.w0 + b_bits.shape[0])
    if r0 >= r1 or w0 >= w1:
        return 0
    return popcount(a_bits[w0 - a.w0:w1 - a.w0, r0 - a.r0:r1 - a.r0] & b_bits[w0 - b.w0:w1 - b.w0, r0 - b.r0:r1 - b.r0])


# ------------------------------------------------------------------------------------------------ RLE


def counts_from_changes(changes: np.ndarray, n: int) -> np.ndarray:
    """COCO RLE run lengths from the column-major indices where a column's value changes.

    ``changes`` may hold an index twice (a run of 1 crossing from the bottom of one column to the top of
    the next): such a pair is no change. An index equal to ``n`` (1 up to the last pixel) is dropped.
    """
    pos = np.sort(np.asarray(changes, dtype=np.int64))
    if pos.size > 1:
        dup = pos[1:] == pos[:-1]
        if dup.any():
            keep = np.ones(pos.size, dtype=bool)
            keep[1:][dup] = False
            keep[:-1][dup] = False
            pos = pos[keep]
    pos = pos[pos < n]
    return np.diff(pos, prepend=0, append=n).astype(np.uint32)


def rle_from_counts(counts: np.ndarray, height: int, width: int) -> dict:
    """The compressed COCO RLE (``counts`` as str) of uncompressed run lengths, by pycocotools itself."""
    counts = np.asarray(counts, dtype=np.uint32)  # an array: pycocotools copies a list element by element
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}


def _packed_changes(p: Packed, height: int) -> np.ndarray:
    """Column-major change indices of a packed mask: its vertical transitions, a 0 row above and below."""
    bits = p.bits
    nw, h = bits.shape
    x = np.empty((nw, h + 1), dtype=_U64)
    x[:, 0] = bits[:, 0]
    np.bitwise_xor(bits[:, 1:], bits[:, :-1], out=x[:, 1:h])
    x[:, h] = bits[:, h - 1]
    flat = np.flatnonzero(x)
    set_bits = np.unpackbits(x.reshape(-1)[flat].view(np.uint8), bitorder="little")
    i, j = np.divmod(np.flatnonzero(set_bits), WORD)
    words, rows = np.divmod(flat[i].astype(np.int64), h + 1)
    return (WORD * (p.w0 + words) + j) * height + (p.r0 + rows)


# ------------------------------------------------------------------------------------- per object


def _ratio(inter: int, union: int) -> float:
    """metrics.iou's division: 1.0 when the union is empty, else Python's exact int / int."""
    return 1.0 if union == 0 else int(inter) / int(union)


class ObjectScorer:
    """Scores predicted masks against one ground-truth mask; GT-only work is done once, here."""

    def __init__(self, gt: np.ndarray, dilation_ratio: float = 0.02, ignore: Optional[np.ndarray] = None) -> None:
        self.gt = np.ascontiguousarray(gt, dtype=np.bool_)
        # An ignore mask (pixels that are neither object nor background) is scored by sambench.metrics'
        # own functions on the full mask; area and RLE, which do not depend on it, still take the fast path.
        self.ignore = None if ignore is None or not np.any(ignore) else np.asarray(ignore, dtype=bool)
        self.dilation_ratio = dilation_ratio
        self.height, self.width = self.gt.shape
        self.dilation = boundary_dilation(self.height, self.width, dilation_ratio)
        self.packed = pack(self.gt)
        if self.packed is None:
            self.area, self.boundary, self.boundary_area = 0, None, 0
        else:
            self.area = popcount(self.packed.bits)
            self.boundary = self.packed.bits & ~erode_packed(self.packed, self.dilation)
            self.boundary_area = popcount(self.boundary)
        self._device: dict = {}
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def score(self, mask: Any, timer: Optional[Timer] = None) -> MaskScore:
        """IoU, boundary IoU, area and RLE of ``mask`` (bool numpy array, or torch bool tensor: see module doc)."""
        if tuple(mask.shape) != (self.height, self.width):
            raise ValueError(f"mask shapes differ: {tuple(mask.shape)} vs {(self.height, self.width)}")
        if self.ignore is not None:
            return self._score_with_ignore(mask if isinstance(mask, np.ndarray) else mask.cpu().numpy(),
                                           timer or _NULL_TIMER)
        if not isinstance(mask, np.ndarray):
            return self._score_torch(mask, timer or _NULL_TIMER)
        timer = timer or _NULL_TIMER
        n = self.height * self.width
        with timer.stage("bbox+pack"):
            p = pack(mask)
        if p is None:
            return MaskScore(_ratio(0, self.area), _ratio(0, self.boundary_area), 0,
                             rle_from_counts([n], self.height, self.width))
        with timer.stage("IoU"):
            area = popcount(p.bits)
            inter = 0 if self.packed is None else _overlap_count(p, p.bits, self.packed, self.packed.bits)
            iou = _ratio(inter, area + self.area - inter)
        with timer.stage("boundary IoU"):
            bp = p.bits & ~erode_packed(p, self.dilation)
            nbp = popcount(bp)
            binter = 0 if self.packed is None else _overlap_count(p, bp, self.packed, self.boundary)
            biou = _ratio(binter, nbp + self.boundary_area - binter)
        with timer.stage("RLE"):
            rle = rle_from_counts(counts_from_changes(_packed_changes(p, self.height), n), self.height, self.width)
        return MaskScore(iou, biou, area, rle)

    def _score_with_ignore(self, mask: np.ndarray, timer: Timer) -> MaskScore:
        n = self.height * self.width
        with timer.stage("bbox+pack"):
            p = pack(mask)
        with timer.stage("IoU"):
            value = iou(mask, self.gt, self.ignore)
        with timer.stage("boundary IoU"):
            bvalue = boundary_iou(mask, self.gt, self.dilation_ratio, ignore=self.ignore)
        with timer.stage("RLE"):
            counts = [n] if p is None else counts_from_changes(_packed_changes(p, self.height), n)
            rle = rle_from_counts(counts, self.height, self.width)
        return MaskScore(value, bvalue, 0 if p is None else popcount(p.bits), rle)

    # --------------------------------------------------------------------------------- torch path

    def _device_gt(self, device) -> dict:
        key = str(device)
        with self._lock:
            if key not in self._device:
                import torch  # lazy: torch only for masks already on a device

                g = _TorchCrop.of(torch.from_numpy(self.gt).to(device))
                self._device[key] = {"crop": g, "boundary": None if g is None else g.boundary(self.dilation)}
            return self._device[key]

    def _score_torch(self, mask, timer: Timer) -> MaskScore:
        import torch  # lazy: torch only for masks already on a device

        n = self.height * self.width
        gt = self._device_gt(mask.device)
        with timer.stage("bbox+pack"):
            p = _TorchCrop.of(mask)
        if p is None:
            return MaskScore(_ratio(0, self.area), _ratio(0, self.boundary_area), 0,
                             rle_from_counts([n], self.height, self.width))
        with timer.stage("boundary IoU"):
            bp = p.boundary(self.dilation)
        g = gt["crop"]
        counts = [p.data.sum(), bp.sum()]
        if g is not None:
            counts += [p.overlap_count(p.data, g, g.data), p.overlap_count(bp, g, gt["boundary"])]
        with timer.stage("IoU"):
            values = [int(v) for v in torch.stack([torch.as_tensor(c, device=mask.device) for c in counts]).tolist()]
        area, nbp = values[0], values[1]
        inter, binter = (values[2], values[3]) if g is not None else (0, 0)
        with timer.stage("RLE"):
            rle = rle_from_counts(counts_from_changes(p.changes(self.height), n), self.height, self.width)
        return MaskScore(_ratio(inter, area + self.area - inter), _ratio(binter, nbp + self.boundary_area - binter),
                         area, rle)


class _TorchCrop:
    """A torch bool mask's bbox crop (on its device): rows ``[r0, r0 + h)``, columns ``[c0, c0 + w)``."""

    def __init__(self, data, r0: int, c0: int) -> None:
        self.data, self.r0, self.c0 = data, r0, c0

    @classmethod
    def of(cls, mask) -> Optional["_TorchCrop"]:
        import torch  # lazy: torch only for masks already on a device

        h = mask.shape[0]
        occupied = torch.cat([mask.any(dim=1), mask.any(dim=0)]).cpu().numpy()  # H + W flags: one transfer
        rows, cols = np.flatnonzero(occupied[:h]), np.flatnonzero(occupied[h:])
        if rows.size == 0:
            return None
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        return cls(mask[r0:r1 + 1, c0:c1 + 1], r0, c0)

    def boundary(self, d: int):
        return self.data & ~erode_torch(self.data, d)

    def overlap_count(self, a, other: "_TorchCrop", b):
        """Sum of ``a & b`` (``a`` in this crop's frame, ``b`` in ``other``'s) over the overlap, on the device."""
        import torch  # lazy: torch only for masks already on a device

        h, w = self.data.shape
        oh, ow = other.data.shape
        r0, r1 = max(self.r0, other.r0), min(self.r0 + h, other.r0 + oh)
        c0, c1 = max(self.c0, other.c0), min(self.c0 + w, other.c0 + ow)
        if r0 >= r1 or c0 >= c1:
            return torch.zeros((), dtype=torch.int64, device=a.device)
        return (a[r0 - self.r0:r1 - self.r0, c0 - self.c0:c1 - self.c0]
                & b[r0 - other.r0:r1 - other.r0, c0 - other.c0:c1 - other.c0]).sum()

    def changes(self, height: int) -> np.ndarray:
        """Column-major change indices (see :func:`counts_from_changes`); only their coordinates leave the device."""
        import torch  # lazy: torch only for masks already on a device

        d = self.data
        zero = torch.zeros((1, d.shape[1]), dtype=torch.bool, device=d.device)
        t = torch.cat([zero, d, zero])
        rc = torch.nonzero(t[1:] ^ t[:-1]).cpu().numpy().astype(np.int64)
        return (self.c0 + rc[:, 1]) * height + (self.r0 + rc[:, 0])


def erode_torch(mask, d: int):
    """Erosion of a bool tensor by the (2d+1)² square with a zero border: separable min-pooling (AND over
    2d+1 columns, then 2d+1 rows), each built by doubling, on the tensor's device."""
    import torch  # lazy: torch only for masks already on a device

    h, w = mask.shape
    length = 2 * d + 1
    if h < length or w < length:
        return torch.zeros_like(mask)
    f = mask
    for s in _doubling_steps(length):
        g = torch.zeros_like(f)
        g[:, :w - s] = f[:, :w - s] & f[:, s:]
        f = g
    g = torch.zeros_like(f)
    g[:, d:] = f[:, :w - d]
    f = g
    for s in _doubling_steps(length):
        g = torch.zeros_like(f)
        g[:h - s] = f[:h - s] & f[s:]
        f = g
    g = torch.zeros_like(f)
    g[d:] = f[:h - d]
    return g


# -------------------------------------------------------------------------------------- per image


class ImageScorer:
    """The :class:`ObjectScorer` of every object of one image, built on first use (thread-safe)."""

    def __init__(self, objects: Mapping[str, np.ndarray], ignores: Optional[Mapping[str, Optional[np.ndarray]]] = None,
                 dilation_ratio: float = 0.02) -> None:
        self._masks = dict(objects)
        self._ignores = dict(ignores or {})
        self._ratio = dilation_ratio
        self._scorers: dict[str, ObjectScorer] = {}
        self._lock = threading.Lock()

    def object(self, object_id: str) -> ObjectScorer:
        with self._lock:
            if object_id not in self._scorers:
                self._scorers[object_id] = ObjectScorer(self._masks[object_id], self._ratio,
                                                        self._ignores.get(object_id))
            return self._scorers[object_id]

    def score(self, mask: Any, object_id: str, timer: Optional[Timer] = None) -> MaskScore:
        return self.object(object_id).score(mask, timer)


def reference_score(mask: np.ndarray, gt: np.ndarray, dilation_ratio: float = 0.02,
                    ignore: Optional[np.ndarray] = None) -> MaskScore:
    """The same record from sambench.metrics' full-resolution definitions (the slow path tests compare with)."""
    return MaskScore(iou(mask, gt, ignore), boundary_iou(mask, gt, dilation_ratio, ignore=ignore),
                     int(np.count_nonzero(mask)), encode_rle(mask))
