"""RobustSAM's own degradations (sambench.inputs.robustsam) against their definitions: albumentations'
functions given the same draws, and augment.py's own formulas written out here."""

import math
import warnings
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from sambench.config.vocabulary import parse_spec
from sambench.inputs import corruptions as C
from sambench.inputs import robustsam as R
from sambench.types import SambenchError


@pytest.fixture(scope="module")
def alb():
    """albumentations (the test extra), imported only by the tests that compare with it: its import takes
    ~8 s, so those tests are marked slow and the quick loop never pays it."""
    A = pytest.importorskip("albumentations", reason="pip install albumentations (the test extra) to compare")
    import albucore  # albumentations' own arithmetic, installed with it
    from albumentations.augmentations.blur import functional as fblur  # its zoom
    from albumentations.augmentations.pixel import functional as fpixel  # its noise and JPEG
    return SimpleNamespace(A=A, albucore=albucore, fblur=fblur, fpixel=fpixel)


IMG = (np.random.default_rng(5).random((37, 53, 3)) * 255).astype(np.uint8)


def _replay(seed):
    """Two generators in the same state: one for our function, one to replay its draws for the reference."""
    return np.random.default_rng(seed), np.random.default_rng(seed)


@pytest.mark.slow
def test_gauss_noise_adds_per_value_normal_noise_of_the_drawn_variance_as_albumentations_adds_it(alb):
    ours_rng, ref = _replay(1)
    ours = np.uint8(np.clip(R.gauss_noise(IMG, (250, 260), ours_rng, 1.0), 0, 255))
    var = ref.uniform(250, 260)
    noise = ref.normal(0.0, math.sqrt(var), size=IMG.shape)
    assert 250 <= var <= 260 and abs(noise.std() - math.sqrt(var)) < 1.0
    # albumentations 1.x: float add, clip, truncate; 2.x's albucore add of the same noise is within 1 grey level
    assert np.array_equal(ours, np.clip(IMG.astype(np.float32) + noise, 0, 255).astype(np.uint8))
    theirs = alb.fpixel.add_noise(IMG, noise.astype(np.float32))
    assert np.abs(theirs.astype(int) - ours).max() <= 1


@pytest.mark.slow
def test_iso_noise_is_albumentations_1x_hls_luminance_and_hue_noise_given_the_same_draws():
    ours_rng, ref = _replay(9)
    ours = np.uint8(np.clip(R.iso_noise(IMG, ((0.4, 0.5), (0.7, 0.8)), ours_rng, 1.0), 0, 255))
    shift, i = ref.uniform(0.4, 0.5), ref.uniform(0.7, 0.8)
    hls = cv2.cvtColor(IMG.astype(np.float32) / np.float32(255), cv2.COLOR_RGB2HLS).astype(np.float64)
    sd_light = hls[..., 1].std()  # population sd of L, as cv2.meanStdDev
    lum = ref.poisson(sd_light * i * 255, size=IMG.shape[:2])
    hue = hls[..., 0] + ref.normal(0, shift * 360 * i, size=IMG.shape[:2])
    hue = np.where(hue < 0, hue + 360, hue)  # 1.x wraps once each way
    hue = np.where(hue > 360, hue - 360, hue)
    light = hls[..., 1] + lum / 255 * (1 - hls[..., 1])
    back = cv2.cvtColor(np.dstack([hue, light, hls[..., 2]]).astype(np.float32), cv2.COLOR_HLS2RGB) * 255
    expected = np.clip(back, 0, 255).astype(np.uint8)
    assert lum.mean() > 5 and np.abs(expected.astype(int) - ours).max() <= 1  # float32 vs float64 rounding
    assert (expected != ours).mean() < 0.01, (expected != ours).mean()


def test_impulse_noise_is_albumentations_multiplicative_noise_with_one_gain_for_the_image(alb):
    ours_rng, ref = _replay(2)
    ours = R.multiplicative_noise(IMG, (1.4, 1.5), ours_rng, 1.0)
    gain = np.float32(ref.uniform(1.4, 1.5))
    assert np.array_equal(ours, alb.albucore.multiply(IMG, np.full(3, gain, dtype=np.float32)))
    assert ours[0, 0, 0] == min(255, int(IMG[0, 0, 0] * gain))  # truncated, not rounded


@pytest.mark.slow
def test_compression_is_albumentations_jpeg_at_a_quality_drawn_from_5_to_10(alb):
    qualities = set()
    for seed in range(30):
        ours_rng, ref = _replay(seed)
        ours = R.jpeg_compression(IMG, (5, 10), ours_rng, 1.0)
        q = int(ref.integers(5, 11))
        qualities.add(q)
        assert np.array_equal(ours, alb.fpixel.image_compression(IMG, q, ".jpg"))
    assert qualities == set(range(5, 11))


def test_resampling_blur_is_a_bilinear_resize_to_a_quarter_and_back_and_refuses_a_tiny_image():
    out = R.resampling_blur(IMG, 4, None, 1.0)
    small = cv2.resize(IMG, (13, 9), interpolation=cv2.INTER_LINEAR)  # int(53/4), int(37/4)
    assert np.array_equal(out, cv2.resize(small, (53, 37), interpolation=cv2.INTER_LINEAR))
    flat = np.full((12, 16, 3), 77, np.uint8)
    assert np.array_equal(R.resampling_blur(flat, 4, None, 1.0), flat)
    with pytest.raises(SambenchError, match="too small"):
        R.resampling_blur(IMG[:3], 4, None, 1.0)


def test_motion_kernel_is_a_normalised_one_pixel_line_of_odd_size_up_to_35():
    sizes = set()
    for seed in range(60):
        k = R.motion_kernel(35, np.random.default_rng(seed))
        sizes.add(k.shape[0])
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and 3 <= k.shape[0] <= 35
        assert k.dtype == np.float32 and abs(float(k.sum()) - 1) < 1e-5
        assert np.count_nonzero(k) >= 2 and len(set(k[k > 0].tolist())) == 1  # equal weights on the line
    assert len(sizes) > 10


@pytest.mark.slow
def test_motion_blur_convolves_as_albumentations_motion_blur_does_with_that_kernel(alb):
    ours_rng, ref = _replay(3)
    ours = R.motion_blur(IMG, 35, ours_rng, 1.0)
    kernel = R.motion_kernel(35, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = alb.A.MotionBlur(blur_limit=35, p=1).apply(IMG, kernel=kernel)
    assert np.array_equal(ours, theirs)


@pytest.mark.slow
def test_zoom_blur_averages_albumentations_central_zooms_by_the_drawn_factors(alb):
    for f in (1.0, 1.07, 1.2, 1.33):
        assert np.array_equal(R.central_zoom(IMG, f), alb.fblur.central_zoom(IMG, f)), f
    ours_rng, ref = _replay(8)
    ours = np.uint8(np.clip(R.zoom_blur(IMG, (1.33, (0.05, 0.07)), ours_rng, 1.0), 0, 255))
    top = ref.uniform(1.0, 1.33)
    factors = np.arange(1.0, top, ref.uniform(0.05, 0.07))
    assert len(factors) >= 2
    expected = (IMG + sum(alb.fblur.central_zoom(IMG, f).astype(np.float32) for f in factors)) / (len(factors) + 1)
    assert np.array_equal(ours, expected.astype(np.uint8))  # 1.x: uint8 zooms, float32 mean, truncated
    # 2.x zooms in float and rounds: within one grey level
    assert np.abs(alb.fblur.zoom_blur(IMG, factors).astype(int) - ours).max() <= 1


@pytest.mark.slow
def test_color_jitter_is_albumentations_color_jitter_given_the_same_factors_and_order(alb):
    jitter = alb.A.ColorJitter(brightness=0.7, contrast=0.3, saturation=0.7, hue=0.7, p=1)
    assert (jitter.contrast, jitter.hue) == ((0.7, 1.3), (-0.7, 0.7))  # the ranges augment.py's numbers mean
    orders = set()
    for seed in range(8):
        ours_rng, ref = _replay(seed)
        ours = R.color_jitter(IMG, (0.7, 0.3, 0.7, 0.7), ours_rng, 1.0)
        f = dict(brightness=ref.uniform(0.3, 1.7), contrast=ref.uniform(0.7, 1.3), saturation=ref.uniform(0.3, 1.7),
                 hue=ref.uniform(-0.7, 0.7))
        order = [int(i) for i in ref.permutation(4)]
        orders.add(tuple(order))
        assert np.array_equal(ours, jitter.apply(IMG.copy(), order=order, **f)), seed
    assert len(orders) > 3


@pytest.mark.slow
def test_elastic_transform_is_albumentations_1x_affine_then_albumentations_remap_by_the_same_fields(alb):
    from scipy import ndimage  # the 1.x displacement fields' filter

    img = IMG[:30, :40]
    ours_rng, ref = _replay(10)
    ours = R.elastic_transform(img, (100, 10, 5), ours_rng, 1.0)
    # 1.x: centre (15, 20) and half-size 10 in albumentations' (H, W) order, each coordinate moved by U(-5, 5)
    src = np.float32([[25, 30], [25, 10], [5, 10]])
    dst = src + ref.uniform(-5, 5, size=(3, 2)).astype(np.float32)
    warped = cv2.warpAffine(img, cv2.getAffineTransform(src, dst), (40, 30), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)
    dx, dy = (np.float32(ndimage.gaussian_filter(ref.random((30, 40)) * 2 - 1, 10) * 100) for _ in range(2))
    cols, rows = np.meshgrid(np.arange(40), np.arange(30))
    # 1.x's defaults (2.x's are a constant border and Gaussian, not uniform, noise)
    transform = alb.A.ElasticTransform(alpha=100, sigma=10, border_mode=cv2.BORDER_REFLECT_101, p=1)
    assert transform.interpolation == cv2.INTER_LINEAR
    assert np.array_equal(ours, transform.apply(warped, map_x=np.float32(cols + dx), map_y=np.float32(rows + dy)))
    assert not np.array_equal(ours, img)


def test_frosted_glass_blur_equals_augment_py_loop_given_the_same_displacements():
    img = IMG[:9, :11]
    ours_rng, ref = _replay(4)
    ours = R.frosted_glass_blur(img, 3, ours_rng, 1.0)
    draws = iter(ref.integers(-3, 4, size=img.shape[0] * img.shape[1] * 2).tolist())
    expected = img.copy()
    h, w = img.shape[:2]
    for y in range(h):  # augment.py's loop: x displacement then y displacement per pixel, clamped
        for x in range(w):
            dx, dy = next(draws), next(draws)
            expected[y, x] = img[max(0, min(h - 1, y + dy)), max(0, min(w - 1, x + dx))]
    assert np.array_equal(ours, expected)


def test_brightness_and_contrast_are_augment_py_formulas_with_a_drawn_factor():
    ours_rng, ref = _replay(6)
    b = np.uint8(np.clip(R.brightness(IMG, (0.6, 0.8), ours_rng, 1.0), 0, 255))
    f = ref.uniform(0.6, 0.8)
    assert np.array_equal(b, np.clip(IMG * f, 0, 255).astype(np.uint8))
    ours_rng, ref = _replay(7)
    c = np.uint8(np.clip(R.contrast(IMG, (1.6, 1.7), ours_rng, 1.0), 0, 255))
    f = ref.uniform(1.6, 1.7)
    assert np.array_equal(c, np.clip((IMG.astype(np.float32) - 128) * f + 128, 0, 255).astype(np.uint8))
    assert c[IMG == 128].tolist() == [128] * int((IMG == 128).sum())  # 128 is the fixed point


def test_robustsam_family_is_keyed_has_one_strength_and_is_not_in_all():
    assert C.ROBUSTSAM == tuple(n for n, _ in parse_spec("robustsam")) and len(C.ROBUSTSAM) == 12
    assert not set(C.ROBUSTSAM) & set(C.ALL) and all(s == 1 for _, s in parse_spec("robustsam"))
    for name in C.ROBUSTSAM:
        a = C.corrupt_keyed(IMG, name, 1, 0, "ds", "im")
        assert np.array_equal(a, C.corrupt_keyed(IMG, name, 1, 0, "ds", "im")), name  # same key, same pixels
        assert a.dtype == np.uint8 and a.shape == IMG.shape and not np.array_equal(a, IMG), name
        assert C.get(name).identity()["source"] == "RobustSAM data/augment.py"
    assert not np.array_equal(C.corrupt_keyed(IMG, "robustsam-gauss-noise", 1, 0, "ds", "im"),
                              C.corrupt_keyed(IMG, "robustsam-gauss-noise", 1, 0, "ds", "other"))
    with pytest.raises(SambenchError, match="one strength"):
        parse_spec("robustsam-contrast:3")
    with pytest.raises(SambenchError, match="severity must be 0..1"):
        C.corrupt(IMG, "robustsam-contrast", 2, np.random.default_rng(0))
