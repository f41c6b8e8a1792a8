"""Low light, haze and rain as pixel functions: sambench's own formulas.

RobustSAM's paper reports results under degradations of these names; these formulas are not RobustSAM's
(its ``data/augment.py`` defines degradations of its own, unseeded), but sambench's, written for this
harness (docs/corruptions.md). They follow ImageNet-C's conventions (:mod:`sambench.inputs.imagenet_c`): floats
in [0, 1], the keyed generator ``rng`` and the pixel scale ``s``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from sambench.inputs.imagenet_c import REFERENCE_SIDE, ipx, px


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
    ln = px(length, s)
    ex, ey = ln * math.sin(theta), ln * math.cos(theta)
    layer = np.zeros((h, w), dtype=np.float32)
    thick = ipx(1, s)
    for px_, py_ in pos:
        cv2.line(layer, (int(px_), int(py_)), (int(px_ + ex), int(py_ + ey)), 1.0, thick, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (3, 3), 0)[..., np.newaxis]
    return np.clip(x * dim * (1 - alpha * layer) + 0.85 * alpha * layer, 0, 1)
