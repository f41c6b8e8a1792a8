"""Image corruptions: keyed, versioned definitions applied to an image before it is encoded.

A corruption is a pure function of (image, name, severity, key): the same image, corruption, severity
and key give the same pixels in any process, on any shard, in any order. Every random draw comes
from ``numpy.random.default_rng(int(key))`` where ``key`` is :func:`corruption_key` — the sha256 of
``[seed, "corruption", name, version, severity, dataset, image id]`` — never from global state.

Severity 0 is the clean image; severities 1–5 follow Hendrycks & Dietterich's ImageNet-C
(``make_imagenet_c.py``) with their parameters, plus three degradations of sambench's own
(``low-light``, ``haze``, ``rain``: our formulas, family ``sambench``; RobustSAM's paper evaluates on
degradations of those names, but its ``data/augment.py`` defines other ones, none called low light or
haze). docs/corruptions.md gives every formula, parameter and deviation; in short:

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

This module is the registry (one :class:`Corruption` per name of
:data:`sambench.config.vocabulary.CORRUPTION_NAMES`, in that order), the keys, and the conversion to and
from uint8. The pixel functions are :mod:`sambench.inputs.imagenet_c`, :mod:`sambench.inputs.weather` and
:mod:`sambench.inputs.robustsam` (RobustSAM's own degradations: one strength each, severity 1 only);
the names, severities and the ``--corruption`` grammar are :mod:`sambench.config.vocabulary` (protocol
cards are checked against them), re-exported here with the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from sambench.config.vocabulary import (ALL, CLEAN, CORRUPTION_NAMES, ROBUSTSAM, SEVERITIES, corruption_name,
                                        parse_spec, parse_specs)
from sambench.inputs import imagenet_c as inc
from sambench.inputs import robustsam, weather
from sambench.types import SambenchError, stable_hash


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

    @property
    def severities(self) -> tuple:
        """The severities defined: 1..5, or (1,) for a corruption of one strength (RobustSAM's)."""
        return tuple(range(1, len(self.params) + 1))

    def identity(self) -> dict:
        """What a stored result depends on: a change here must bump ``version``."""
        return {"version": self.version, "source": self.source, "params": [_jsonable(p) for p in self.params]}


def _jsonable(p):
    if isinstance(p, np.ndarray):
        return [round(float(v), 6) for v in p]
    if isinstance(p, (tuple, list)):
        return [_jsonable(v) for v in p]
    return p


# ------------------------------------------------------------------------------------------ registry

#: ``source`` is in the manifest's corruption identity; a resume and ``compare`` check only its version,
#: params and seed, so runs that recorded the old source of low light, haze and rain,
#: "RobustSAM (formula: sambench)", still resume and compare.
_IMAGENET_C, _SAMBENCH = "ImageNet-C", "sambench"

#: name → (family, source, parameters per severity 1..5, function, the range the function works in).
_DEFINITIONS = {
    "gaussian-noise": ("noise", _IMAGENET_C, [.08, .12, .18, .26, .38], inc.gaussian_noise, "0-1"),
    "shot-noise": ("noise", _IMAGENET_C, [60, 25, 12, 5, 3], inc.shot_noise, "0-1"),
    "impulse-noise": ("noise", _IMAGENET_C, [.03, .06, .09, .17, .27], inc.impulse_noise, "0-1"),
    "defocus-blur": ("blur", _IMAGENET_C, [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)], inc.defocus_blur, "0-1"),
    "glass-blur": ("blur", _IMAGENET_C, [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)], inc.glass_blur,
                   "0-1"),
    "motion-blur": ("blur", _IMAGENET_C, [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)], inc.motion_blur, "0-255"),
    "zoom-blur": ("blur", _IMAGENET_C, [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
                                        np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)], inc.zoom_blur, "0-1"),
    "snow": ("weather", _IMAGENET_C, [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                                      (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                                      (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)], inc.snow, "0-1"),
    "frost": ("weather", _IMAGENET_C, [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)], inc.frost, "0-255"),
    "fog": ("weather", _IMAGENET_C, [(1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4)], inc.fog, "0-1"),
    "brightness": ("weather", _IMAGENET_C, [.1, .2, .3, .4, .5], inc.brightness, "0-1"),
    "contrast": ("digital", _IMAGENET_C, [.4, .3, .2, .1, .05], inc.contrast, "0-1"),
    "elastic-transform": ("digital", _IMAGENET_C,
                          [(244 * 2, 244 * 0.7, 244 * 0.1), (244 * 2, 244 * 0.08, 244 * 0.2),
                           (244 * 0.05, 244 * 0.01, 244 * 0.02), (244 * 0.07, 244 * 0.01, 244 * 0.02),
                           (244 * 0.12, 244 * 0.01, 244 * 0.02)], inc.elastic_transform, "0-1"),
    "pixelate": ("digital", _IMAGENET_C, [0.6, 0.5, 0.4, 0.3, 0.25], inc.pixelate, "uint8"),
    "jpeg-compression": ("digital", _IMAGENET_C, [25, 18, 15, 10, 7], inc.jpeg_compression, "uint8"),
    "low-light": ("sambench", _SAMBENCH,
                  [(0.7, 1.5, 0.01), (0.55, 2.0, 0.015), (0.45, 2.5, 0.02), (0.35, 3.0, 0.025), (0.25, 3.5, 0.03)],
                  weather.low_light, "0-1"),
    "haze": ("sambench", _SAMBENCH, [(0.4, 0.8), (0.7, 0.8), (1.0, 0.85), (1.4, 0.85), (1.9, 0.9)], weather.haze,
             "0-1"),
    "rain": ("sambench", _SAMBENCH,
             [(60, 8, 0.35, 0.95), (120, 10, 0.45, 0.9), (200, 12, 0.55, 0.85), (300, 14, 0.65, 0.8),
              (450, 16, 0.75, 0.75)], weather.rain, "0-1"),
}
_ROBUSTSAM = "RobustSAM data/augment.py"
_DEFINITIONS.update({  # config's ROBUSTSAM, one strength each: the parameters augment.py gives (docs/corruptions.md)
    "robustsam-gauss-noise": ("noise", _ROBUSTSAM, [(250, 260)], robustsam.gauss_noise, "uint8"),
    "robustsam-iso-noise": ("noise", _ROBUSTSAM, [((0.4, 0.5), (0.7, 0.8))], robustsam.iso_noise, "uint8"),
    "robustsam-impulse-noise": ("noise", _ROBUSTSAM, [(1.4, 1.5)], robustsam.multiplicative_noise, "uint8"),
    "robustsam-color-jitter": ("digital", _ROBUSTSAM, [(0.7, 0.3, 0.7, 0.7)], robustsam.color_jitter, "uint8"),
    "robustsam-compression": ("digital", _ROBUSTSAM, [(5, 10)], robustsam.jpeg_compression, "uint8"),
    "robustsam-resampling-blur": ("blur", _ROBUSTSAM, [4], robustsam.resampling_blur, "uint8"),
    "robustsam-motion-blur": ("blur", _ROBUSTSAM, [35], robustsam.motion_blur, "uint8"),
    "robustsam-zoom-blur": ("blur", _ROBUSTSAM, [(1.33, (0.05, 0.07))], robustsam.zoom_blur, "uint8"),
    "robustsam-elastic-transform": ("digital", _ROBUSTSAM, [(100, 10, 5)], robustsam.elastic_transform, "uint8"),
    "robustsam-frosted-glass-blur": ("blur", _ROBUSTSAM, [3], robustsam.frosted_glass_blur, "uint8"),
    "robustsam-brightness": ("digital", _ROBUSTSAM, [(0.6, 0.8)], robustsam.brightness, "uint8"),
    "robustsam-contrast": ("digital", _ROBUSTSAM, [(1.6, 1.7)], robustsam.contrast, "uint8"),
})
if set(_DEFINITIONS) != set(CORRUPTION_NAMES):  # the names are config's; every one needs exactly one definition
    raise ImportError(f"corruption definitions {sorted(set(_DEFINITIONS) ^ set(CORRUPTION_NAMES))} do not match "
                      "sambench.config.vocabulary.CORRUPTION_NAMES")

#: Every corruption, in the order of :data:`~sambench.config.vocabulary.CORRUPTION_NAMES`.
CORRUPTIONS: dict[str, Corruption] = {
    name: Corruption(name, family, source, 1, tuple(params), fn, scale)
    for name in CORRUPTION_NAMES for family, source, params, fn, scale in [_DEFINITIONS[name]]}
IMAGENET_C = tuple(n for n, c in CORRUPTIONS.items() if c.source == _IMAGENET_C)


def get(name: str) -> Corruption:
    """The corruption ``name`` stands for (case and ``_`` for ``-`` forgiven), or one error line."""
    return CORRUPTIONS[corruption_name(name)]


def corruption_key(seed: int, name: str, version: int, severity: int, dataset: str, image_id: str) -> str:
    """The hex key every random draw of one corrupted image comes from."""
    return stable_hash(int(seed), "corruption", str(name), int(version), int(severity), str(dataset), str(image_id))


def corrupt(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``image`` (RGB uint8, H×W×3) under corruption ``name`` at ``severity`` (0 = the image itself)."""
    if severity == 0:
        return image
    c = get(name)
    if severity not in c.severities:
        raise SambenchError(f"corruption {c.name}: severity must be 0..{c.severities[-1]}, got {severity}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise SambenchError(f"corruptions take RGB uint8 images, got {image.dtype} of shape {image.shape}")
    x = {"0-1": image / 255.0, "0-255": image.astype(np.float64), "uint8": image}[c.scale]
    out = c.fn(x, c.param(severity), rng, inc.image_scale(image))
    out = out * 255.0 if c.scale == "0-1" else out
    return np.uint8(np.clip(out, 0, 255))  # truncation, as ImageNet-C's np.uint8(...)


def corrupt_keyed(image: np.ndarray, name: str, severity: int, seed: int, dataset: str, image_id: str) -> np.ndarray:
    """:func:`corrupt` with the generator of :func:`corruption_key` — what runs use."""
    if severity == 0:
        return image
    c = get(name)
    key = corruption_key(seed, c.name, c.version, severity, dataset, image_id)
    return corrupt(image, c.name, severity, np.random.default_rng(int(key, 16)))


def identity(names: Iterable[str], seed: int) -> dict:
    """What the corruptions of a run are, for the store's identity ledger and the manifest."""
    return {"seed": int(seed), "corruptions": {n: CORRUPTIONS[n].identity() for n in sorted(set(names)) if n != CLEAN}}


__all__ = ["ALL", "CLEAN", "CORRUPTIONS", "Corruption", "IMAGENET_C", "ROBUSTSAM", "SEVERITIES", "corrupt",
           "corrupt_keyed", "corruption_key", "get", "identity", "parse_spec", "parse_specs"]
