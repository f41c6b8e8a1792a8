"""Corruptions: keyed determinism, every corruption changes the image and more so with severity,
any image size, the ``--corruption`` grammar, and frost's textures (see docs/corruptions.md)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sambench.inputs import corruptions as C
from sambench.inputs import imagenet_c
from sambench.store import CORRUPTION_IDENTITY, Store
from sambench.types import SambenchError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def frost_dir(tmp_path, monkeypatch):
    """Six synthetic textures (bright speckle on grey) standing in for ImageNet-C's frost photographs."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"]):
        tex = np.clip(rng.normal(120 + 10 * i, 60, size=(260 + 7 * i, 300, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(tex).save(tmp_path / name, quality=95)
    monkeypatch.setenv(imagenet_c.FROST_DIR_ENV, str(tmp_path))
    return tmp_path


def reference_image(side: int = 224) -> np.ndarray:
    path = REPO / "sambench" / "data" / "grabcut_sample" / "images" / "llama.jpg"
    return np.asarray(Image.open(path).convert("RGB").resize((side, side), Image.Resampling.BILINEAR))


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


SMALL = reference_image(224)[40:88, 30:94]  # 48 x 64, not square

DIGEST_SCRIPT = """
import hashlib, json, sys
import numpy as np
from sambench.inputs import corruptions as C
img = np.load(sys.argv[1])
out = {}
for name in reversed(list(C.ALL)):
    for sev in (5, 2):
        a = C.corrupt_keyed(img, name, sev, 3, "ds", "im")
        out[f"{name}:{sev}"] = hashlib.sha256(a.tobytes()).hexdigest()
print(json.dumps(out))
"""


def test_same_key_same_pixels_across_processes_and_orders(tmp_path):
    """Another process (another hash seed, another order) gives byte-identical pixels; no global RNG used."""
    np.save(tmp_path / "img.npy", SMALL)
    state = np.random.get_state()[1].copy()
    here = {f"{n}:{s}": digest(C.corrupt_keyed(SMALL, n, s, 3, "ds", "im")) for n in C.ALL for s in (2, 5)}
    assert np.array_equal(np.random.get_state()[1], state), "a corruption touched numpy's global RNG"
    env = {**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", DIGEST_SCRIPT, str(tmp_path / "img.npy")], capture_output=True,
                         text=True, env=env, check=True, timeout=120)
    assert json.loads(out.stdout) == here


def test_every_part_of_the_key_matters():
    base = C.corrupt_keyed(SMALL, "gaussian-noise", 3, 0, "ds", "im")
    assert np.array_equal(base, C.corrupt_keyed(SMALL, "gaussian_noise", 3, 0, "ds", "im"))  # same key, alias
    for other in [C.corrupt_keyed(SMALL, "gaussian-noise", 3, 1, "ds", "im"),
                  C.corrupt_keyed(SMALL, "gaussian-noise", 3, 0, "ds2", "im"),
                  C.corrupt_keyed(SMALL, "gaussian-noise", 3, 0, "ds", "im2")]:
        assert not np.array_equal(base, other)
    k = C.corruption_key(0, "fog", 1, 2, "ds", "im")
    assert len({k, C.corruption_key(0, "fog", 1, 3, "ds", "im"), C.corruption_key(0, "fog", 2, 2, "ds", "im"),
                C.corruption_key(0, "snow", 1, 2, "ds", "im")}) == 4


def test_severity_zero_is_the_clean_image():
    assert C.corrupt_keyed(SMALL, "fog", 0, 0, "ds", "im") is SMALL


def one_minus_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 - float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def sharpness_loss(a: np.ndarray, b: np.ndarray) -> float:
    """1 − G(a)/G(b), G = mean absolute difference of neighbouring values (rows and columns)."""
    g = lambda z: np.abs(np.diff(z.astype(np.float64), axis=0)).mean() + np.abs(np.diff(z.astype(np.float64), axis=1)).mean()
    return 1.0 - g(a) / g(b)


#: ImageNet-C's own parameters are not ordered by the measure for two corruptions (docs/corruptions.md):
#: elastic severities 1-2 are large global warps and 3-5 small local ones; snow 5 has smaller flakes than 4.
ORDERED_GROUPS = {"elastic-transform": [(1, 2), (3, 4, 5)], "snow": [(1, 2, 3, 4), (3, 5)]}


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in C.CORRUPTIONS if n not in C.ROBUSTSAM])  # those have one strength
def test_changes_the_image_monotonically_more_with_severity(name, frost_dir):
    """The documented measure on the clean 224² reference image, every severity drawing the same random
    stream (so only the parameters differ): for blurs the loss of sharpness, for the rest 1 − Pearson
    correlation of all RGB values with the clean image."""
    img = reference_image()
    measure = sharpness_loss if C.get(name).family == "blur" else one_minus_correlation
    d = {s: measure(C.corrupt(img, name, s, np.random.default_rng(11)), img) for s in C.SEVERITIES}
    assert d[1] > 0.001, f"{name} 1 barely changes the image: {d[1]:.5f}"
    for group in ORDERED_GROUPS.get(name, [C.SEVERITIES]):
        vals = [d[s] for s in group]
        assert all(b > a for a, b in zip(vals, vals[1:])), f"{name}: {d}"


@pytest.mark.parametrize("shape", [(40, 72), (97, 33), (300, 170)])
def test_any_image_size(shape, frost_dir):
    img = np.asarray(Image.fromarray(reference_image()).resize((shape[1], shape[0])))
    for name in C.CORRUPTIONS:
        out = C.corrupt(img, name, C.get(name).severities[-1], np.random.default_rng(0))
        assert out.shape == img.shape and out.dtype == np.uint8, name
        assert not np.array_equal(out, img), name


def test_pixel_parameters_scale_with_the_image():
    """A deterministic blur of a 2x image is (about) the 2x image of the blur: s = min(H, W)/224."""
    img = reference_image(224)
    big = np.asarray(Image.fromarray(img).resize((448, 448), Image.Resampling.BICUBIC))
    small_blur = np.asarray(Image.fromarray(C.corrupt(img, "defocus-blur", 3, None)).resize((448, 448),
                                                                                           Image.Resampling.BICUBIC))
    scaled = C.corrupt(big, "defocus-blur", 3, None).astype(float)
    unscaled = imagenet_c.disk_kernel(6, 0.5)  # what the big image would get without scaling
    import cv2

    naive = np.clip(cv2.filter2D(big / 255.0, -1, unscaled), 0, 1) * 255
    assert np.abs(scaled - small_blur).mean() < 0.5 * np.abs(naive - small_blur).mean()


def test_spec_grammar():
    assert C.parse_spec("fog") == [("fog", s) for s in (1, 2, 3, 4, 5)]
    assert C.parse_spec("motion_blur:3,1") == [("motion-blur", 1), ("motion-blur", 3)]
    assert C.parse_spec("contrast:2-4") == [("contrast", 2), ("contrast", 3), ("contrast", 4)]
    axis = C.parse_specs(["fog:2", "all:1", "fog:2"])
    assert axis[0] == (C.CLEAN, 0) and len(axis) == 1 + len(C.ALL) + 1 and len(set(axis)) == len(axis)
    assert "frost" not in C.ALL and len(C.IMAGENET_C) == 15
    for bad in ["fgo", "fog:0", "fog:6", "fog:x", ":3", "fog:1-9"]:
        with pytest.raises(SambenchError) as exc:
            C.parse_spec(bad)
        assert "\n" not in str(exc.value)


def test_frost_without_textures_is_one_clear_error(monkeypatch):
    monkeypatch.delenv(imagenet_c.FROST_DIR_ENV, raising=False)
    import importlib.util

    if importlib.util.find_spec("imagecorruptions") is not None:
        pytest.skip("imagecorruptions is installed here, so frost finds its textures")
    with pytest.raises(SambenchError, match="frost needs"):
        C.corrupt(SMALL, "frost", 1, np.random.default_rng(0))


def test_identity_names_parameters_and_version():
    ident = C.identity(["fog", "none", "snow"], 4)
    assert ident["seed"] == 4 and set(ident["corruptions"]) == {"fog", "snow"}
    assert ident["corruptions"]["fog"]["params"][0] == [1.5, 2] and ident["corruptions"]["fog"]["version"] == 1
    json.dumps(ident)  # storable


def test_low_light_haze_and_rain_are_named_as_sambench_formulas_and_old_identities_still_resume(tmp_path):
    for name in ("low-light", "haze", "rain"):
        c = C.get(name)
        assert (c.family, c.source) == ("sambench", "sambench"), name
        store = Store(tmp_path / name)
        old = {**c.identity(), "source": "RobustSAM (formula: sambench)", "seed": 0}  # what runs recorded before
        store.claim_identity("corruption", name, old, CORRUPTION_IDENTITY)
        store.claim_identity("corruption", name, {**c.identity(), "seed": 0}, CORRUPTION_IDENTITY)  # no refusal
        store.close()
