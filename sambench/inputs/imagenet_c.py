"""ImageNet-C's fifteen corruptions as pixel functions, with the helpers they share (Hendrycks & Dietterich).

Each function is ``fn(x, c, rng, s)``: ``x`` the image as floats (or uint8, per the registry entry's
range in :mod:`sambench.inputs.corruptions`), ``c`` the severity's parameters, ``rng`` the keyed
generator (drawn from in ImageNet-C's order, with its distributions) and ``s = min(H, W) / 224`` the
scale that pixel-valued parameters are multiplied by (:func:`px`, :func:`ipx`). The registry, the keys
and the conversion to and from uint8 are :mod:`sambench.inputs.corruptions`; docs/corruptions.md gives
every formula, parameter and deviation.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.ndimage import zoom as scizoom

from sambench.types import SambenchError

#: The side ImageNet-C's pixel-valued parameters refer to.
REFERENCE_SIDE = 224
#: Where frost looks for its six texture files (frost1.png … frost6.jpg) when set.
FROST_DIR_ENV = "SAMBENCH_FROST_DIR"


# ------------------------------------------------------------------------------------------ helpers


def image_scale(image: np.ndarray) -> float:
    """``s = min(H, W) / 224``: what pixel-valued parameters are multiplied by."""
    return min(image.shape[0], image.shape[1]) / REFERENCE_SIDE


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """skimage.filters.gaussian on float data: scipy's gaussian_filter over the spatial axes only."""
    sig = (sigma, sigma, 0) if x.ndim == 3 else sigma
    return gaussian_filter(x, sigma=sig, mode=mode, truncate=truncate)


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """ImageNet-C's anti-aliased disk: X²+Y² ≤ r² on a 17² grid (r ≤ 8) or (2⌈r⌉+1)², normalised,
    then a 3×3 (r ≤ 8) or 5×5 Gaussian blur of sigma ``alias_blur``."""
    if radius <= 8:
        grid, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        r = int(math.ceil(radius))
        grid, ksize = np.arange(-r, r + 1), (5, 5)
    xx, yy = np.meshgrid(grid, grid)
    disk = np.array((xx ** 2 + yy ** 2) <= radius ** 2, dtype=np.float32)
    disk /= np.sum(disk)
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def motion_kernel(radius: int, sigma: float, angle: float) -> np.ndarray:
    """The correlation kernel of ImageMagick's -motion-blur as re-implemented by imagecorruptions:
    2r+1 taps of a one-sided Gaussian (weights exp(-i²/2σ²), normalised) placed at integer offsets
    i·(sin θ, cos θ) rounded half-down, trailing from the pixel itself."""
    width = 2 * radius + 1
    taps = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2))
    taps /= taps.sum()
    py, px = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    hyp = math.hypot(py, px)
    offsets = [(-math.ceil(i * py / hyp - 0.5), -math.ceil(i * px / hyp - 0.5)) for i in range(width)]
    m = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    kernel = np.zeros((2 * m + 1, 2 * m + 1), dtype=np.float64)
    for w, (dy, dx) in zip(taps, offsets):
        kernel[m - dy, m - dx] += w  # shifted[y, x] = src[y - dy, x - dx]
    return kernel


def _motion_blur(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """Σ_i w_i · x shifted by offset i, edges replicated (= imagecorruptions' ``_motion_blur``)."""
    kernel = motion_kernel(radius, sigma, angle)
    if kernel.shape[0] // 2 >= min(x.shape[:2]):
        raise SambenchError(f"image of {x.shape[1]}x{x.shape[0]} px is too small for a motion blur of radius {radius}")
    return cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REPLICATE)


def clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """ImageNet-C's centre crop of ⌈side/factor⌉, scipy linear zoom by ``factor``, centre trim, per axis."""
    h, w = img.shape[:2]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    out = scizoom(img[top:top + ch, left:left + cw], (factor, factor) + (1,) * (img.ndim - 2), order=1)
    th, tw = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
    return out[th:th + h, tw:tw + w]


def plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-C's diamond-square height map (side ``mapsize``, a power of two), scaled to [0, 1]."""
    if mapsize & (mapsize - 1):
        raise ValueError("mapsize must be a power of two")
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100.0

    def wibbledmean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squares = corners + np.roll(corners, shift=-1, axis=0)
        squares += np.roll(squares, shift=-1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(squares)
        dr = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        ul = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        lt = dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbledmean(lt)
        tt = dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(tt)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


class _PlasmaRows:
    """:func:`plasma_fractal`'s map one row at a time, bit for bit, holding a few rows per level.

    The diamond-square step with stepsize S turns the grid of spacing S (``G[S]``) into the grid of spacing
    S/2: a row 2i of the finer grid holds corner i and the diamond values ``lt`` of row i, a row 2i+1 the
    square centres ``dr`` of row i and the diamond values ``tt``; each needs at most rows i-1..i+1 of the
    coarser grid (indices wrap: ``np.roll``). Every value is computed with the same operations in the same
    order as the whole-map version, and its random draw is taken from the same position of the generator's
    stream (PCG64 ``advance``: the map draws ``3·n²`` uniforms per level, row-major, squares then ``lt`` then
    ``tt``), so a row is bit-identical to the whole map's row. Rows far behind the current one are dropped
    (``forget``), except the first and last row of each level, which the wrap needs at both ends.
    """

    def __init__(self, mapsize: int, wibbledecay: float, rng: np.random.Generator) -> None:
        self.m, self.rng = mapsize, rng
        self.start = rng.bit_generator.state
        self.base: dict[int, int] = {}
        self.wibble: dict[int, float] = {}
        stepsize, wibble, drawn = mapsize, 100.0, 0
        while stepsize >= 2:
            n = mapsize // stepsize
            self.base[stepsize], self.wibble[stepsize] = drawn, wibble
            drawn += 3 * n * n
            stepsize //= 2
            wibble /= wibbledecay
        self.drawn = drawn
        self.grid: dict[int, dict[int, np.ndarray]] = {mapsize: {0: np.zeros(1)}}  # spacing -> row -> values
        self.centres: dict[int, dict[int, np.ndarray]] = {}  # stepsize -> row -> dr values

    def _wibbled(self, array: np.ndarray, stepsize: int, which: int, i: int) -> np.ndarray:
        n, wibble = self.m // stepsize, self.wibble[stepsize]
        bg = self.rng.bit_generator
        bg.state = self.start
        bg.advance(self.base[stepsize] + which * n * n + i * n)
        return array / 4 + wibble * self.rng.uniform(-wibble, wibble, n)

    def _centre(self, stepsize: int, i: int) -> np.ndarray:
        """Row i of the square centres ``dr`` of the step with this stepsize."""
        n = self.m // stepsize
        i %= n
        rows = self.centres.setdefault(stepsize, {})
        if i not in rows:
            c0, c1 = self.row(stepsize, i), self.row(stepsize, i + 1)
            squares = c0 + c1
            squares += np.roll(squares, -1)
            rows[i] = self._wibbled(squares, stepsize, 0, i)
        return rows[i]

    def row(self, spacing: int, r: int) -> np.ndarray:
        """Row r (in units of ``spacing``) of the grid of that spacing, all its columns."""
        n = self.m // spacing
        r %= n
        rows = self.grid.setdefault(spacing, {})
        if r not in rows:
            step = 2 * spacing
            i = r // 2
            ul = self.row(step, i)
            out = np.empty(n)
            dr = self._centre(step, i)
            if r % 2 == 0:
                out[0::2] = ul
                lt = dr + self._centre(step, i - 1) + ul + np.roll(ul, -1)
                out[1::2] = self._wibbled(lt, step, 1, i)
            else:
                out[1::2] = dr
                tt = dr + np.roll(dr, 1) + ul + self.row(step, i + 1)
                out[0::2] = self._wibbled(tt, step, 2, i)
            rows[r] = out
        return rows[r]

    def forget(self, r: int) -> None:
        """Drop the rows no later final row than ``r`` needs (keeping each level's first and last)."""
        for table, offset in ((self.grid, 0), (self.centres, 1)):
            for spacing, rows in table.items():
                n = self.m // spacing
                for k in [k for k in rows if 0 < k < n - 1 and k * spacing + offset * spacing // 2 < r - 4 * spacing]:
                    del rows[k]

    def finish(self) -> None:
        """Leave the generator where the whole-map version leaves it."""
        bg = self.rng.bit_generator
        bg.state = self.start
        bg.advance(self.drawn)


def plasma_crop(mapsize: int, wibbledecay: float, rng: np.random.Generator, h: int, w: int,
                by_rows: Optional[bool] = None) -> np.ndarray:
    """``plasma_fractal(mapsize, wibbledecay, rng)[:h, :w]``, bit for bit, in memory that grows with the
    area h·w rather than mapsize² (a 10000×10 image has a 16384² map: 2 GB, 5.9 GB at the peak).

    Near-square crops (mapsize² ≤ 4·h·w) build the whole map as ImageNet-C does; others compute it one row
    at a time (:class:`_PlasmaRows`), keeping the crop and the map's minimum and maximum (the scaling to
    [0, 1] is over the whole map). ``by_rows`` forces one way (tests compare them)."""
    if not by_rows if by_rows is not None else mapsize * mapsize <= 4 * h * w:
        return plasma_fractal(mapsize, wibbledecay, rng)[:h, :w]
    rows = _PlasmaRows(mapsize, wibbledecay, rng)
    crop = np.empty((h, w))
    lo, hi = np.inf, -np.inf
    for r in range(mapsize):
        v = rows.row(1, r)
        lo, hi = min(lo, v.min()), max(hi, v.max())
        if r < h:
            crop[r] = v[:w]
        if r % 64 == 63:
            rows.forget(r + 1)
        del rows.grid[1][r]
    rows.finish()
    # as ``maparray -= min; maparray / maparray.max()``: rounding is monotone, so max(v - lo) == hi - lo
    return (crop - lo) / (hi - lo)


def _next_pow2(n: int) -> int:
    return 1 if n <= 1 else 2 ** (int(n) - 1).bit_length()


def px(value: float, s: float) -> float:
    """A length in pixels scaled by s."""
    return value * s


def ipx(value: float, s: float) -> int:
    """A pixel count scaled by s, at least 1."""
    return max(1, int(round(value * s)))


# ------------------------------------------------------------------------------------- the fifteen


def gaussian_noise(x, c, rng, s):
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1)


def shot_noise(x, c, rng, s):
    return np.clip(rng.poisson(x * c) / float(c), 0, 1)


def impulse_noise(x, c, rng, s):
    """skimage.util.random_noise(mode='s&p', amount=c): each value independently, with probability c,
    becomes 1 (salt) or 0 (pepper) with equal odds."""
    flipped = rng.random(x.shape) <= c
    salted = rng.random(x.shape) <= 0.5
    out = x.copy()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


def defocus_blur(x, c, rng, s):
    kernel = disk_kernel(px(c[0], s), c[1])
    return np.clip(cv2.filter2D(x, -1, kernel), 0, 1)


def glass_blur(x, c, rng, s):
    sigma, delta, iterations = px(c[0], s), ipx(c[1], s), c[2]
    img = np.uint8(_gaussian(x, sigma) * 255)
    h, w = img.shape[:2]
    packed = (img[..., 0].astype(np.int64) << 16 | img[..., 1].astype(np.int64) << 8 | img[..., 2]).ravel().tolist()
    rows, cols = range(h - delta, delta, -1), range(w - delta, delta, -1)
    for _ in range(iterations):
        d = rng.integers(-delta, delta, size=(len(rows) * len(cols), 2)).tolist()
        k = 0
        for r in rows:
            base = r * w
            for col in cols:
                dx, dy = d[k]
                k += 1
                # ImageNet-C's "swap" assigns through numpy views, so it copies: x[h, w] = x[h + dy, w + dx]
                packed[base + col] = packed[(r + dy) * w + col + dx]
    p = np.asarray(packed, dtype=np.int64).reshape(h, w)
    img = np.stack([(p >> 16) & 255, (p >> 8) & 255, p & 255], axis=-1).astype(np.float64)
    return np.clip(_gaussian(img / 255.0, sigma), 0, 1)


def motion_blur(x, c, rng, s):
    angle = rng.uniform(-45, 45)
    return np.clip(_motion_blur(x, ipx(c[0], s), px(c[1], s), angle), 0, 255)


def zoom_blur(x, c, rng, s):
    x = x.astype(np.float32)
    out = np.zeros_like(x)
    for factor in c:
        out += clipped_zoom(x, float(factor))
    return np.clip((x + out) / (len(c) + 1), 0, 1)


def snow(x, c, rng, s):
    x = x.astype(np.float32)
    layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = clipped_zoom(layer[..., np.newaxis], max(1.0, c[2] * s))  # flakes of at least one pixel
    layer[layer < c[3]] = 0
    layer = np.clip(layer.squeeze(-1), 0, 1)
    layer = _motion_blur(layer, ipx(c[4], s), px(c[5], s), rng.uniform(-135, -45))
    layer = (np.round(layer * 255).astype(np.uint8) / 255.0)[..., np.newaxis]
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., np.newaxis]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1)


def frost_textures() -> list[Path]:
    """The six ImageNet-C frost textures: from ``$SAMBENCH_FROST_DIR`` or an installed ``imagecorruptions``
    distribution (found without importing it). Not shipped: their source and licence are unknown."""
    names = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"]
    dirs = []
    if os.environ.get(FROST_DIR_ENV):
        dirs.append(Path(os.environ[FROST_DIR_ENV]))
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) / "frost" for p in spec.submodule_search_locations]
    for d in dirs:
        if all((d / n).is_file() for n in names):
            return [d / n for n in names]
    raise SambenchError(f"frost needs ImageNet-C's frost textures (not shipped: unknown licence): set ${FROST_DIR_ENV} "
                        "to a folder with frost1.png ... frost6.jpg, or `pip install --no-deps imagecorruptions`")


def frost(x, c, rng, s):
    idx = int(rng.integers(5))  # ImageNet-C draws from the first five of the six files
    path = frost_textures()[idx]
    tex = cv2.imread(str(path))
    if tex is None:
        raise SambenchError(f"{path}: unreadable frost texture")
    h, w = x.shape[:2]
    # The texture is sampled at ImageNet-C's scale s; if that leaves it no larger than the image, it is
    # enlarged to 1.1x the image as imagecorruptions does.
    factor = s
    if tex.shape[0] * factor < h + 1 or tex.shape[1] * factor < w + 1:
        factor = max(h / tex.shape[0], w / tex.shape[1]) * 1.1
    if factor != 1.0:
        tex = cv2.resize(tex, (int(np.ceil(tex.shape[1] * factor)), int(np.ceil(tex.shape[0] * factor))),
                         interpolation=cv2.INTER_CUBIC)
    y0, x0 = int(rng.integers(0, tex.shape[0] - h)), int(rng.integers(0, tex.shape[1] - w))
    tex = tex[y0:y0 + h, x0:x0 + w][..., ::-1]
    return np.clip(c[0] * x + c[1] * tex, 0, 255)


def fog(x, c, rng, s):
    h, w = x.shape[:2]
    max_val = x.max()
    fractal = plasma_crop(_next_pow2(max(h, w)), c[1], rng, h, w)
    x = x + c[0] * fractal[..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1)


def brightness(x, c, rng, s):
    """skimage's rgb2hsv → V += c, clipped → hsv2rgb, in closed form: for fixed hue and saturation RGB is
    linear in V = max(R, G, B), so RGB' = RGB · V'/V (and V' grey where V = 0)."""
    v = x.max(axis=-1, keepdims=True)
    v_new = np.clip(v + c, 0, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(v > 0, x * (v_new / np.where(v > 0, v, 1)), v_new)
    return np.clip(out, 0, 1)


def contrast(x, c, rng, s):
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


def elastic_transform(x, c, rng, s):
    alpha, sigma, affine = px(c[0], s), px(c[1], s), px(c[2], s)
    image = x.astype(np.float32)
    h, w = image.shape[:2]
    centre = np.float32((h, w)) // 2
    side = min(h, w) // 3
    pts1 = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    pts2 = pts1 + rng.uniform(-affine, affine, size=pts1.shape).astype(np.float32)
    m = cv2.getAffineTransform(pts1, pts2)
    image = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    dx = (_gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    dy = (_gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = [yy + dy, xx + dx]
    out = np.stack([map_coordinates(image[..., ch], coords, order=1, mode="reflect") for ch in range(3)], axis=-1)
    return np.clip(out, 0, 1)


def pixelate(x, c, rng, s):
    h, w = x.shape[:2]
    img = Image.fromarray(x)
    img = img.resize((max(1, int(w * c)), max(1, int(h * c))), Image.Resampling.BOX)
    return np.asarray(img.resize((w, h), Image.Resampling.BOX), dtype=np.float64)


def jpeg_compression(x, c, rng, s):
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=c)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float64)
