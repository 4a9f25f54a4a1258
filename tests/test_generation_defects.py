"""Mask-guided defect generation: bit-identity outside the band, edits inside, determinism, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.generation import DEFECT_TYPES, GenerationError, generate_defect, random_defect_mask, synthesize_defect


def _surface(channels: int, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """A textured part surface (not flat: texture-aware shading must have something to follow)."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3)).astype(np.uint8), (0, 0), 1.5) // 2 + 90
    img = base if channels == 3 else base[..., 0].copy()
    return (img.astype(np.uint16) * 257) if dtype == np.uint16 else img.astype(np.uint8)


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a != b
    return d.any(axis=2) if d.ndim == 3 else d


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_generation_edits_inside_and_nothing_outside_band(kind: str, channels: int, dtype) -> None:
    img = _surface(channels, dtype)
    mask = random_defect_mask(img.shape[:2], kind, np.random.default_rng(5))
    before = img.copy()
    gen = generate_defect(img, mask, kind, seed=11)
    assert np.array_equal(img, before), "the input image must not be modified in place"
    assert gen.image.shape == img.shape and gen.image.dtype == img.dtype
    changed = _changed(gen.image, img)
    # outside the feather band: bit-identical (exact equality, every channel)
    outside = ~gen.band
    assert np.array_equal(gen.image[outside], img[outside])
    assert not changed[outside].any()
    # the band really is the mask plus a thin rim (feather 3 px)
    assert gen.band[mask].all()
    assert gen.band.sum() < mask.sum() + 4 * 3 * (mask.sum() ** 0.5) * 4
    # inside the mask: the defect is there
    assert changed[mask].mean() >= 0.9, f"{kind}: only {changed[mask].mean():.2f} of the mask changed"
    scale = 257.0 if dtype == np.uint16 else 1.0
    mean_abs = np.abs(gen.image.astype(np.float64) - img.astype(np.float64))[mask].mean() / scale
    assert mean_abs >= 5.0, f"{kind}: mean change in the mask only {mean_abs:.1f} grey levels"


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_generation_same_seed_same_image_other_seed_differs(kind: str) -> None:
    img = _surface(3)
    mask = random_defect_mask(img.shape[:2], kind, np.random.default_rng(2))
    a = generate_defect(img, mask, kind, seed=3).image
    b = generate_defect(img, mask, kind, seed=3).image
    assert np.array_equal(a, b)
    if kind != "dent":  # a dent has no random part: its shape is the mask
        c = generate_defect(img, mask, kind, seed=4).image
        assert not np.array_equal(a, c)


def test_generation_mask_touching_the_border_and_bool_or_png_masks() -> None:
    img = _surface(3)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[0:10, 0:20] = 255  # top-left corner: seamless cloning must cope with the border
    gen = generate_defect(img, mask, "stain", seed=0)
    assert np.array_equal(gen.image[~gen.band], img[~gen.band])
    assert _changed(gen.image, img)[mask > 0].mean() > 0.9
    three = np.repeat(mask[..., None], 3, axis=2)  # a mask saved as an RGB PNG
    assert np.array_equal(generate_defect(img, three, "stain", seed=0).image, gen.image)


def test_generation_aliases_missing_is_hole() -> None:
    img = _surface(1)
    mask = random_defect_mask(img.shape[:2], "hole", np.random.default_rng(0))
    assert generate_defect(img, mask, "missing", seed=1).defect_type == "hole"
    assert np.array_equal(generate_defect(img, mask, "missing", seed=1).image, generate_defect(img, mask, "hole", seed=1).image)


def test_generation_wrong_size_mask_is_a_clear_error() -> None:
    img = _surface(3)
    with pytest.raises(GenerationError, match=r"mask is 64x48 \(WxH\) but the image is 128x96"):
        generate_defect(img, np.ones((48, 64), np.uint8), "scratch")


def test_generation_empty_mask_is_a_clear_error() -> None:
    img = _surface(1)
    with pytest.raises(GenerationError, match="mask is empty: it has no non-zero pixel"):
        generate_defect(img, np.zeros(img.shape[:2], np.uint8), "dent")
    with pytest.raises(GenerationError, match="zero size"):
        generate_defect(img, np.zeros((0, 0), np.uint8), "dent")


def test_generation_unknown_type_and_bad_image_are_clear_errors() -> None:
    img = _surface(3)
    mask = np.zeros(img.shape[:2], bool)
    mask[10:20, 10:20] = True
    with pytest.raises(GenerationError, match="unknown defect type 'bubble'; choose one of: scratch, crack"):
        generate_defect(img, mask, "bubble")
    with pytest.raises(GenerationError, match="uint8 or uint16, got float32"):
        generate_defect(img.astype(np.float32), mask, "scratch")
    with pytest.raises(GenerationError, match=r"gray \[H, W\] or colour \[H, W, 3\]"):
        generate_defect(np.zeros((96, 128, 4), np.uint8), mask, "scratch")


def test_synthesize_defect_is_deterministic_and_stays_in_the_roi() -> None:
    img = _surface(3)
    roi = (40, 20, 60, 60)
    a = synthesize_defect(img, seed=9, defect_types=["crack", "stain"], roi=roi)
    b = synthesize_defect(img, seed=9, defect_types=["crack", "stain"], roi=roi)
    assert a.defect_type in ("crack", "stain")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    ys, xs = np.nonzero(a.mask)
    assert xs.min() >= roi[0] and xs.max() < roi[0] + roi[2] and ys.min() >= roi[1] and ys.max() < roi[1] + roi[3]
    kinds = {synthesize_defect(img, seed=s, defect_types=["crack", "stain"]).defect_type for s in range(12)}
    assert kinds == {"crack", "stain"}
