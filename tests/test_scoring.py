"""AnomalyDINO scoring against hand-computed cases."""

import math

import numpy as np
import pytest

from edge.scoring import image_score, smooth_map


def test_fewer_than_100_patches_scores_the_maximum():
    d = np.linspace(0.0, 0.5, 64).reshape(8, 8)
    assert image_score(d) == pytest.approx(0.5)


def test_top_one_percent_mean_of_256_patches_is_the_top_two():
    d = np.zeros(256, dtype=np.float32)
    d[[10, 200, 31]] = [0.9, 0.7, 0.5]  # int(256 * 0.01) = 2 -> mean(0.9, 0.7)
    assert image_score(d) == pytest.approx(0.8)


def test_top_one_percent_mean_of_1000_patches_is_the_top_ten():
    d = np.arange(1000, dtype=np.float32) / 1000.0
    assert image_score(d) == pytest.approx(np.mean(np.arange(990, 1000)) / 1000.0, abs=1e-6)


def test_empty_input_is_an_error():
    with pytest.raises(ValueError):
        image_score(np.zeros((0,)))


def _kernel_1d(sigma: float = 4.0) -> np.ndarray:
    x = np.arange(-16, 17, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def test_blur_of_an_impulse_is_the_sigma4_gaussian():
    img = np.zeros((41, 41), dtype=np.float32)
    img[20, 20] = 1.0
    out = smooth_map(img)
    k = _kernel_1d()
    expected = np.outer(k, k)
    np.testing.assert_allclose(out[4:37, 4:37], expected, atol=1e-6)
    # by hand: the centre of a normalised 2-D Gaussian, sigma 4, truncated at 4 sigma
    assert out[20, 20] == pytest.approx(k[16] ** 2, rel=1e-5)
    assert k[16] == pytest.approx(1.0 / sum(math.exp(-(i * i) / 32.0) for i in range(-16, 17)))


def test_blur_mirrors_borders_like_scipy_reflect():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    img = rng.random((37, 53)).astype(np.float32)
    np.testing.assert_allclose(smooth_map(img), scipy_ndimage.gaussian_filter(img, sigma=4, mode="reflect"), atol=1e-5)


def test_blur_keeps_a_constant_map_constant():
    img = np.full((20, 30), 0.25, dtype=np.float32)
    np.testing.assert_allclose(smooth_map(img), 0.25, atol=1e-6)
