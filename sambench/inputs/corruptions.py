"""Image corruptions: keyed, versioned definitions applied to an image before it is encoded.

A corruption is a pure function of (image, name, severity, key): the same image, corruption, severity
and key give the same pixels in any process, on any shard, in any order. Every random draw comes
from ``numpy.random.default_rng(int(key))`` where ``key`` is :func:`corruption_key` — the sha256 of
``[seed, "corruption", name, version, severity, dataset, image id]`` — never from global state.

Severity 0 is the clean image; severities 1–5 follow Hendrycks & Dietterich's ImageNet-C
(``make_imagenet_c.py``) with their parameters, plus three degradations RobustSAM evaluates on that
ImageNet-C lacks (``low-light``, ``haze``, ``rain``), defined here since RobustSAM published no
synthesis code. docs/corruptions.md gives every formula, parameter and deviation; in short:

* Inputs and outputs are RGB ``uint8`` (H, W, 3); internally floats in [0, 1] (or [0, 255] where
  ImageNet-C works there); the result is clipped and truncated to ``uint8`` as ImageNet-C's
  ``np.uint8(...)``.
* ImageNet-C was defined on 224×224 crops. Parameters measured in pixels (blur radii and sigmas,
  glass-blur displacement, snow-flake size and streak length, elastic displacement, rain streaks)
  are multiplied by ``s = min(H, W) / 224`` so a corruption looks the same relative to the image at
  any size; at 224² the parameters are ImageNet-C's exactly. Per-pixel noise, JPEG and relative
  transforms (zoom, pixelate, contrast, brightness, fog) are used as defined.
* Randomness is drawn in ImageNet-C's order with the same distributions, so with a generator that
  replays the same stream (``tests/test_corruptions_reference.py``) the output equals the reference.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.ndimage import zoom as scizoom

from sambench.types import SambenchError, stable_hash

#: The side ImageNet-C's pixel-valued parameters refer to.
REFERENCE_SIDE = 224
SEVERITIES = (1, 2, 3, 4, 5)
#: Where frost looks for its six texture files (frost1.png … frost6.jpg) when set.
FROST_DIR_ENV = "SAMBENCH_FROST_DIR"


@dataclass(frozen=True)
class Corruption:
    """One corruption: ``fn(x, param, rng, s)`` maps an RGB float image to a float image (see module doc)."""

    name: str
    family: str
    source: str
    version: int
    params: tuple
    fn: Callable
    scale: str  # "0-1" or "0-255": the range fn works in

    def param(self, severity: int):
        return self.params[severity - 1]

    def identity(self) -> dict:
        """What a stored result depends on: a change here must bump ``version``."""
        return {"version": self.version, "source": self.source, "params": [_jsonable(p) for p in self.params]}


def _jsonable(p):
    if isinstance(p, np.ndarray):
        return [round(float(v), 6) for v in p]
    if isinstance(p, (tuple, list)):
        return [_jsonable(v) for v in p]
    return p


# ------------------------------------------------------------------------------------------ helpers


def _scale(image: np.ndarray) -> float:
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


def _next_pow2(n: int) -> int:
    return 1 if n <= 1 else 2 ** (int(n) - 1).bit_length()


def _px(value: float, s: float) -> float:
    return value * s


def _ipx(value: float, s: float) -> int:
    """A pixel count scaled by s, at least 1."""
    return max(1, int(round(value * s)))


# ------------------------------------------------------------------------------- ImageNet-C's fifteen


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
    kernel = disk_kernel(_px(c[0], s), c[1])
    return np.clip(cv2.filter2D(x, -1, kernel), 0, 1)


def glass_blur(x, c, rng, s):
    sigma, delta, iterations = _px(c[0], s), _ipx(c[1], s), c[2]
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
    return np.clip(_motion_blur(x, _ipx(c[0], s), _px(c[1], s), angle), 0, 255)


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
    layer = _motion_blur(layer, _ipx(c[4], s), _px(c[5], s), rng.uniform(-135, -45))
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
    fractal = plasma_fractal(_next_pow2(max(h, w)), c[1], rng)[:h, :w]
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
    alpha, sigma, affine = _px(c[0], s), _px(c[1], s), _px(c[2], s)
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


# --------------------------------------------------------------------------- RobustSAM's additions


def low_light(x, c, rng, s):
    """Under-exposure: β·x^γ (gamma darkening and attenuation) plus Gaussian read noise of sd σ."""
    beta, gamma, sigma = c
    return np.clip(beta * np.power(x, gamma) + rng.normal(size=x.shape, scale=sigma), 0, 1)


def haze(x, c, rng, s):
    """Koschmieder's atmospheric scattering I = J·t + A·(1 − t), t = exp(−β·d), with airlight A and a
    depth proxy d rising linearly from 0.5 at the bottom row to 1 at the top (no depth is known)."""
    beta, airlight = c
    h = x.shape[0]
    depth = 0.5 + 0.5 * (1.0 - np.arange(h) / max(h - 1, 1))
    t = np.exp(-beta * depth)[:, None, None]
    return np.clip(x * t + airlight * (1 - t), 0, 1)


def rain(x, c, rng, s):
    """Streaks: n = density·(H·W/224²) drops at uniform positions, each a line of length L·s px at one
    angle θ ~ U(−20°, 20°) from vertical, softened by a 3×3 Gaussian; the scene is dimmed by ``dim``
    and the streak layer blended in as a light grey of opacity α: x·dim·(1 − αL) + 0.85·αL."""
    density, length, alpha, dim = c
    h, w = x.shape[:2]
    n = max(1, int(round(density * h * w / REFERENCE_SIDE ** 2)))
    theta = math.radians(rng.uniform(-20, 20))
    pos = rng.uniform(0, 1, size=(n, 2)) * (w, h)
    ln = _px(length, s)
    ex, ey = ln * math.sin(theta), ln * math.cos(theta)
    layer = np.zeros((h, w), dtype=np.float32)
    thick = _ipx(1, s)
    for px_, py_ in pos:
        cv2.line(layer, (int(px_), int(py_)), (int(px_ + ex), int(py_ + ey)), 1.0, thick, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (3, 3), 0)[..., np.newaxis]
    return np.clip(x * dim * (1 - alpha * layer) + 0.85 * alpha * layer, 0, 1)


# ------------------------------------------------------------------------------------------ registry


def _c(name, family, source, params, fn, scale="0-1"):
    return Corruption(name, family, source, 1, tuple(params), fn, scale)


_DEFS = [
    _c("gaussian-noise", "noise", "ImageNet-C", [.08, .12, .18, .26, .38], gaussian_noise),
    _c("shot-noise", "noise", "ImageNet-C", [60, 25, 12, 5, 3], shot_noise),
    _c("impulse-noise", "noise", "ImageNet-C", [.03, .06, .09, .17, .27], impulse_noise),
    _c("defocus-blur", "blur", "ImageNet-C", [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)], defocus_blur),
    _c("glass-blur", "blur", "ImageNet-C", [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)], glass_blur),
    _c("motion-blur", "blur", "ImageNet-C", [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)], motion_blur, "0-255"),
    _c("zoom-blur", "blur", "ImageNet-C", [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
                                           np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)], zoom_blur),
    _c("snow", "weather", "ImageNet-C", [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                                         (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                                         (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)], snow),
    _c("frost", "weather", "ImageNet-C", [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)], frost, "0-255"),
    _c("fog", "weather", "ImageNet-C", [(1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4)], fog),
    _c("brightness", "weather", "ImageNet-C", [.1, .2, .3, .4, .5], brightness),
    _c("contrast", "digital", "ImageNet-C", [.4, .3, .2, .1, .05], contrast),
    _c("elastic-transform", "digital", "ImageNet-C",
       [(244 * 2, 244 * 0.7, 244 * 0.1), (244 * 2, 244 * 0.08, 244 * 0.2), (244 * 0.05, 244 * 0.01, 244 * 0.02),
        (244 * 0.07, 244 * 0.01, 244 * 0.02), (244 * 0.12, 244 * 0.01, 244 * 0.02)], elastic_transform),
    _c("pixelate", "digital", "ImageNet-C", [0.6, 0.5, 0.4, 0.3, 0.25], pixelate, "uint8"),
    _c("jpeg-compression", "digital", "ImageNet-C", [25, 18, 15, 10, 7], jpeg_compression, "uint8"),
    _c("low-light", "robustsam", "RobustSAM (formula: sambench)",
       [(0.7, 1.5, 0.01), (0.55, 2.0, 0.015), (0.45, 2.5, 0.02), (0.35, 3.0, 0.025), (0.25, 3.5, 0.03)], low_light),
    _c("haze", "robustsam", "RobustSAM (formula: sambench)",
       [(0.4, 0.8), (0.7, 0.8), (1.0, 0.85), (1.4, 0.85), (1.9, 0.9)], haze),
    _c("rain", "robustsam", "RobustSAM (formula: sambench)",
       [(60, 8, 0.35, 0.95), (120, 10, 0.45, 0.9), (200, 12, 0.55, 0.85), (300, 14, 0.65, 0.8), (450, 16, 0.75, 0.75)],
       rain),
]

CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in _DEFS}
IMAGENET_C = tuple(c.name for c in _DEFS if c.source == "ImageNet-C")
#: What ``--corruption all`` means: every corruption that needs no outside file (frost needs textures).
ALL = tuple(c.name for c in _DEFS if c.name != "frost")
#: The name of level 0 of the corruption axis.
CLEAN = "none"


def get(name: str) -> Corruption:
    key = name.strip().lower().replace("_", "-")
    if key not in CORRUPTIONS:
        raise SambenchError(f"unknown corruption '{name}': choose from {', '.join(CORRUPTIONS)} or all")
    return CORRUPTIONS[key]


def corruption_key(seed: int, name: str, version: int, severity: int, dataset: str, image_id: str) -> str:
    """The hex key every random draw of one corrupted image comes from."""
    return stable_hash(int(seed), "corruption", str(name), int(version), int(severity), str(dataset), str(image_id))


def corrupt(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``image`` (RGB uint8, H×W×3) under corruption ``name`` at ``severity`` (0 = the image itself)."""
    if severity == 0:
        return image
    c = get(name)
    if severity not in SEVERITIES:
        raise SambenchError(f"corruption severity must be 0..5, got {severity}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise SambenchError(f"corruptions take RGB uint8 images, got {image.dtype} of shape {image.shape}")
    x = {"0-1": image / 255.0, "0-255": image.astype(np.float64), "uint8": image}[c.scale]
    out = c.fn(x, c.param(severity), rng, _scale(image))
    out = out * 255.0 if c.scale == "0-1" else out
    return np.uint8(np.clip(out, 0, 255))  # truncation, as ImageNet-C's np.uint8(...)


def corrupt_keyed(image: np.ndarray, name: str, severity: int, seed: int, dataset: str, image_id: str) -> np.ndarray:
    """:func:`corrupt` with the generator of :func:`corruption_key` — what runs use."""
    if severity == 0:
        return image
    c = get(name)
    key = corruption_key(seed, c.name, c.version, severity, dataset, image_id)
    return corrupt(image, c.name, severity, np.random.default_rng(int(key, 16)))


def parse_spec(spec: str) -> list[tuple[str, int]]:
    """``NAME[:SEVERITIES]`` → [(name, severity), ...]; NAME may be ``all``; SEVERITIES like ``1,3`` or
    ``1-5`` (default 1-5)."""
    name, _, sev = spec.partition(":")
    if not name.strip():
        raise SambenchError(f"--corruption '{spec}': give NAME[:SEVERITIES], e.g. fog:1,3 or all")
    names = ALL if name.strip().lower() == "all" else (get(name).name,)
    severities = _parse_severities(spec, sev) if sev.strip() else list(SEVERITIES)
    return [(n, s) for n in names for s in severities]


def _parse_severities(spec: str, text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            vals = range(int(lo), int(hi) + 1) if dash else [int(lo)]
        except ValueError:
            raise SambenchError(f"--corruption '{spec}': severities must be integers 1..5 like 1,3 or 1-5") from None
        for v in vals:
            if v not in SEVERITIES:
                raise SambenchError(f"--corruption '{spec}': severity {v} is not in 1..5 (clean is always level 0)")
            if v not in out:
                out.append(v)
    return sorted(out)


def parse_specs(specs: Iterable[str]) -> list[tuple[str, int]]:
    """Several ``--corruption`` values → the axis: (``none``, 0) first, then each (name, severity) once,
    in the registry's order."""
    wanted = {pair for spec in specs for pair in parse_spec(spec)}
    order = list(CORRUPTIONS)
    return [(CLEAN, 0)] + sorted(wanted, key=lambda p: (order.index(p[0]), p[1]))


def identity(names: Iterable[str], seed: int) -> dict:
    """What the corruptions of a run are, for the store's identity ledger and the manifest."""
    return {"seed": int(seed), "corruptions": {n: CORRUPTIONS[n].identity() for n in sorted(set(names)) if n != CLEAN}}
