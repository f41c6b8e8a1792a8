"""RobustSAM's own degradations (``data/augment.py`` in robustsam/RobustSAM), keyed.

RobustSAM (Chen et al., CVPR 2024) made its degraded images with ``data/augment.py``: fifteen functions of
one fixed strength each, drawing from unseeded global generators (Python's ``random``, ``np.random``,
albumentations' and imgaug's), so its images cannot be reproduced. These are the same definitions, with the
same parameters and distributions, drawing from the keyed generator ``rng`` instead (so the same image, name
and key give the same pixels anywhere). Their code targets albumentations 1.x; where it calls
albumentations we follow the 1.x arithmetic, and ``tests/test_robustsam_corruptions.py`` checks each
against albumentations 2.x's own functions given the same draws (docs/corruptions.md says where 2.x changed
the APIs ``augment.py`` calls).

Each function is ``fn(x, param, rng, s)`` on an RGB ``uint8`` image (the registry's ``"uint8"`` range) and
returns values the registry clips to [0, 255] and truncates to ``uint8``, as albumentations 1.x and
``augment.py`` do. ``s`` (the image scale) is unused: RobustSAM's parameters are in pixels of whatever image
it was given, so they are used as defined, not scaled. Twelve of the fifteen are here; docs/corruptions.md
lists the rest and why.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage

from sambench.types import SambenchError


def gauss_noise(x, c, rng, s):
    """``A.GaussNoise(var_limit=(lo, hi), per_channel=True)`` (1.x): variance ~ U(lo, hi), then one
    N(0, variance) value per pixel and channel added to the image in float."""
    lo, hi = c
    sigma = math.sqrt(rng.uniform(lo, hi))
    return x.astype(np.float32) + rng.normal(0.0, sigma, size=x.shape)


def multiplicative_noise(x, c, rng, s):
    """``A.MultiplicativeNoise(multiplier=(lo, hi))`` (augment.py's ``impulse_noise``): one gain ~ U(lo, hi)
    (float32) for the whole image (``per_channel=False, elementwise=False``), values truncated to uint8."""
    lo, hi = c
    gain = np.float32(rng.uniform(lo, hi))
    lut = np.clip(np.arange(256, dtype=np.float32) * gain, 0, 255).astype(np.uint8)
    return lut[x]


def jpeg_compression(x, c, rng, s):
    """``A.ImageCompression(quality_lower=lo, quality_upper=hi)``: quality ~ U{lo…hi}, OpenCV JPEG encode and
    decode of the RGB array as given (OpenCV takes it for BGR, as albumentations passes it)."""
    lo, hi = c
    quality = int(rng.integers(lo, hi + 1))
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(x), (int(cv2.IMWRITE_JPEG_QUALITY), quality))
    if not ok:
        raise SambenchError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def iso_noise(x, c, rng, s):
    """``A.ISONoise(color_shift=(a, b), intensity=(lo, hi))`` as albumentations 1.x defines it: shift ~ U(a, b),
    intensity i ~ U(lo, hi); in float32 HLS (hue in degrees, L in [0, 1]) with σ_L the image's standard
    deviation of L: L += Poisson(σ_L·i·255)/255 · (1 − L) per pixel, then hue += N(0, shift·360·i) wrapped
    into [0, 360]; back to RGB × 255. (2.x changed this formula; 1.x's cast of values above 255 wraps, the
    registry clips them.)"""
    shift, intensity = rng.uniform(*c[0]), rng.uniform(*c[1])
    hls = cv2.cvtColor(np.multiply(x, 1.0 / 255.0, dtype=np.float32), cv2.COLOR_RGB2HLS)
    _, std = cv2.meanStdDev(hls)
    luminance = rng.poisson(std[1] * intensity * 255, size=hls.shape[:2])
    hue_noise = rng.normal(0, shift * 360 * intensity, size=hls.shape[:2])
    hue = hls[..., 0]
    hue += hue_noise
    hue[hue < 0] += 360
    hue[hue > 360] -= 360
    light = hls[..., 1]
    light += (luminance / 255) * (1.0 - light)
    return cv2.cvtColor(hls, cv2.COLOR_HLS2RGB) * 255


def _lut(x: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``x`` (uint8) through the table ``values`` (256 floats), clipped to [0, 255] and truncated."""
    return np.clip(values, 0, 255).astype(np.uint8)[x]


def _jitter_brightness(x, f):
    return x if f == 1 else _lut(x, np.arange(256) * f)


def _jitter_contrast(x, f):
    if f == 1:
        return x
    mean = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).mean()
    return _lut(x, np.arange(256) * f + mean * (1 - f))


def _jitter_saturation(x, f):
    if f == 1:
        return x
    gray = cv2.cvtColor(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(x, f, gray, 1 - f, 0)


def _jitter_hue(x, f):
    if f == 0:
        return x
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(np.arange(256, dtype=np.int16) + 180 * f, 180).astype(np.uint8)[hsv[..., 0]]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def color_jitter(x, c, rng, s):
    """``A.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h)`` as albumentations 1.x defines it on
    uint8: factors ~ U(1 ± b), U(1 ± c), U(1 ± s) (lower bound at least 0) and U(−h, h), then the four
    adjustments in a random order: brightness x·f and contrast x·f + m·(1 − f) (m the mean of the grey
    image) through a clipped, truncated table; saturation ``cv2.addWeighted`` with the grey image; hue a
    shift of 180·f on OpenCV's 0–180 hue, modulo 180."""
    b, k, sat, h = c
    factors = (rng.uniform(max(0.0, 1 - b), 1 + b), rng.uniform(max(0.0, 1 - k), 1 + k),
               rng.uniform(max(0.0, 1 - sat), 1 + sat), rng.uniform(-h, h))
    steps = (_jitter_brightness, _jitter_contrast, _jitter_saturation, _jitter_hue)
    for i in rng.permutation(4):
        x = steps[i](x, factors[i])
    return x


def elastic_transform(x, c, rng, s):
    """``A.ElasticTransform(alpha=a, sigma=σ, alpha_affine=β)`` as albumentations 1.x defines it (2.x dropped
    the affine part): a random affine moving three points around the centre (c ± ⌊min(H, W)/3⌋, with
    albumentations' (H, W) order) by U(−β, β) each, ``cv2.warpAffine``; then displacement fields
    a·Gaussian_σ(U(−1, 1)) (scipy, reflect) for x and then y, ``cv2.remap``; bilinear, reflect-101 borders."""
    alpha, sigma, beta = c
    h, w = x.shape[:2]
    centre = np.array((h, w), dtype=np.float32) // 2
    half = min(h, w) // 3
    src = np.array([centre + half, [centre[0] + half, centre[1] - half], centre - half], dtype=np.float32)
    dst = src + rng.uniform(-beta, beta, size=src.shape).astype(np.float32)
    border = cv2.BORDER_REFLECT_101
    x = cv2.warpAffine(x, cv2.getAffineTransform(src, dst), (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
    dx = np.float32(ndimage.gaussian_filter(rng.random((h, w)) * 2 - 1, sigma) * alpha)
    dy = np.float32(ndimage.gaussian_filter(rng.random((h, w)) * 2 - 1, sigma) * alpha)
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    return cv2.remap(x, np.float32(cols + dx), np.float32(rows + dy), cv2.INTER_LINEAR, borderMode=border)


def resampling_blur(x, factor, rng, s):
    """``augment.py``'s ``resampling_blur``: ``cv2.resize`` (bilinear) to ⌊H/f⌋×⌊W/f⌋ and back."""
    h, w = x.shape[:2]
    small = (int(w / factor), int(h / factor))
    if min(small) < 1:
        raise SambenchError(f"a {h}x{w} image is too small for a resampling blur by {factor} "
                            f"(needs {factor} px a side)")
    return cv2.resize(cv2.resize(x, small), (w, h))


def motion_kernel(limit: int, rng: np.random.Generator) -> np.ndarray:
    """``A.MotionBlur(blur_limit=limit)``'s kernel (1.x, ``allow_shifted=True``): size k ~ U{3, 5, …, limit};
    a 1-px ``cv2.line`` between two uniform points of the k×k grid (when their columns are equal, two
    distinct rows), normalised to sum 1 (float32)."""
    k = int(rng.choice(np.arange(3, limit + 1, 2)))
    x1, x2 = (int(v) for v in rng.integers(0, k, size=2))
    if x1 == x2:
        y1, y2 = (int(v) for v in rng.choice(k, size=2, replace=False))
    else:
        y1, y2 = (int(v) for v in rng.integers(0, k, size=2))
    kernel = np.zeros((k, k), dtype=np.uint8)
    cv2.line(kernel, (x1, y1), (x2, y2), 1, thickness=1)
    return kernel.astype(np.float32) / np.float32(kernel.sum())  # float32, as under numpy 1 (augment.py's era)


def motion_blur(x, limit, rng, s):
    """``A.MotionBlur(blur_limit=limit)``: :func:`motion_kernel`, then ``cv2.filter2D`` (uint8 in and out,
    reflect-101 border)."""
    return cv2.filter2D(x, ddepth=-1, kernel=motion_kernel(limit, rng))


def frosted_glass_blur(x, d, rng, s):
    """``augment.py``'s ``frosted_glass_blur``: every pixel takes the value of the original pixel at a
    displacement (dx, dy) ~ U{−d…d}² from it, clamped to the image. The draws are one (H, W, 2) array of
    (dx, dy) in row-major pixel order, the order ``augment.py``'s loop draws them in."""
    h, w = x.shape[:2]
    disp = rng.integers(-d, d + 1, size=(h, w, 2))
    rows = np.clip(np.arange(h)[:, None] + disp[..., 1], 0, h - 1)
    cols = np.clip(np.arange(w)[None, :] + disp[..., 0], 0, w - 1)
    return x[rows, cols]


def brightness(x, c, rng, s):
    """``augment.py``'s ``brightness``: x·f, f ~ U(lo, hi), clipped and truncated to uint8."""
    lo, hi = c
    return x * float(rng.uniform(lo, hi))


def contrast(x, c, rng, s):
    """``augment.py``'s ``contrast``: (x − 128)·f + 128 in float32, f ~ U(lo, hi), clipped and truncated."""
    lo, hi = c
    return (x.astype(np.float32) - 128) * float(rng.uniform(lo, hi)) + 128


def central_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """albumentations' central zoom: the centre crop of ⌈side/factor⌉, resized (bilinear, to ⌊crop·factor⌋)
    and trimmed back to the image's size around its centre."""
    h, w = x.shape[:2]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[top:top + ch, left:left + cw]
    size = (int(cw * factor), int(ch * factor))
    zoomed = crop if size == (cw, ch) else cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR)
    trim_top, trim_left = (zoomed.shape[0] - h) // 2, (zoomed.shape[1] - w) // 2
    return zoomed[trim_top:trim_top + h, trim_left:trim_left + w]


def zoom_blur(x, c, rng, s):
    """``A.ZoomBlur(max_factor=m, step_factor=(lo, hi))`` (1.x): top ~ U(1, m), step ~ U(lo, hi), factors
    ``arange(1, top, step)``; the mean of the image and its central zooms by each factor (each zoom in uint8,
    the sum in float32), truncated to uint8."""
    top_factor, (lo, hi) = c
    top = rng.uniform(1.0, top_factor)
    factors = np.arange(1.0, top, rng.uniform(lo, hi))
    out = np.zeros(x.shape, dtype=np.float32)
    for f in factors:
        out += central_zoom(x, f)
    return (x + out) / (len(factors) + 1)
