"""`generate_defect`: put a defect of a given type inside a mask, touching nothing else.

Pipeline: measure the surface in a crop around the mask → draw the type's
appearance (``defects.py``) → blend with a feathered alpha → Poisson
(seamless) cloning of the blended patch into the image for 8-bit frames →
copy the input back outside the feather band, so bit-identity there does not
depend on any of the steps above.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.generation.defects import DEFECT_LAYERS, build_context
from edge.generation.errors import GenerationError
from edge.generation.masks import feather_alpha, validate_mask

DEFECT_TYPES: tuple[str, ...] = tuple(DEFECT_LAYERS)
"""Defect types generation knows: scratch, crack, dent, stain, contamination, hole."""

_ALIASES = {"missing": "hole", "hole/missing": "hole", "missing_material": "hole", "spot": "stain", "particle": "contamination"}
_CLONE_GROW = 8  # px the Poisson region extends past the band (OpenCV drops gradients near the clone mask edge)
_CONTEXT_MARGIN = _CLONE_GROW + 4  # px of surface around the band used to measure texture and to seam-clone


@dataclass
class GeneratedDefect:
    """A generated image and where it differs from the input."""

    image: np.ndarray  # same shape and dtype as the input
    mask: np.ndarray  # bool [H, W]: the requested defect area
    band: np.ndarray  # bool [H, W]: mask + feather band, the only pixels that may differ
    defect_type: str
    seed: int


def normalise_defect_type(name: str) -> str:
    """Canonical type name (accepts 'missing' for 'hole'), or a GenerationError listing the valid ones."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DEFECT_LAYERS:
        raise GenerationError(f"unknown defect type {name!r}; choose one of: {', '.join(DEFECT_TYPES)} (or 'missing' for hole)")
    return key


def _check_image(image: np.ndarray) -> tuple[np.ndarray, float]:
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise GenerationError("the image is empty (zero size)")
    if image.dtype not in (np.uint8, np.uint16):
        raise GenerationError(f"the image must be uint8 or uint16, got {image.dtype}")
    if image.ndim == 2:
        planes = image[..., None]
    elif image.ndim == 3 and image.shape[2] in (1, 3):
        planes = image
    else:
        raise GenerationError(f"the image must be gray [H, W] or colour [H, W, 3], got shape {tuple(image.shape)}")
    return planes, float(np.iinfo(image.dtype).max)


def _seamless(original: np.ndarray, blended: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Poisson-clone ``blended`` into ``original`` around ``band`` (uint8 crops [h, w, C]).

    The clone region is the band grown by ``_CLONE_GROW`` px: OpenCV's solver
    erodes its mask, so a defect edge close to the mask border would lose its
    gradient (measured: a dark square 2 px inside the mask vanished). The
    caller fades the result back in with the feather alpha, so the growth never
    leaks outside the band. cv2.seamlessClone wants 3-channel 8-bit images and a
    mask that does not touch the image border: both are padded by reflection
    and gray crops are replicated to three channels; the result is cropped back.
    """
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * _CLONE_GROW + 1, 2 * _CLONE_GROW + 1))
    band = cv2.dilate(band.astype(np.uint8), grow) > 0
    pad = _CLONE_GROW + 3
    channels = original.shape[2]
    src = blended if channels == 3 else np.repeat(blended, 3, axis=2)
    dst = original if channels == 3 else np.repeat(original, 3, axis=2)
    src = cv2.copyMakeBorder(np.ascontiguousarray(src), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    dst = cv2.copyMakeBorder(np.ascontiguousarray(dst), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    # a defect at the image edge: extend the clone region into the reflected padding so
    # that the solver's erosion eats padding, not the defect; keep 2 px clear of the border
    m = cv2.copyMakeBorder(band.astype(np.uint8) * 255, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    m[:2], m[-2:], m[:, :2], m[:, -2:] = 0, 0, 0, 0
    x, y, w, h = cv2.boundingRect(m)
    if w < 3 or h < 3:
        return blended
    out = cv2.seamlessClone(src, dst, m, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    out = out[pad:-pad, pad:-pad]
    return out if channels == 3 else out[..., :1]


def generate_defect(
    image: np.ndarray,
    mask: np.ndarray,
    defect_type: str,
    seed: int = 0,
    *,
    feather_px: float = 3.0,
    intensity: float = 1.0,
    seamless: bool = True,
) -> GeneratedDefect:
    """Synthesise a ``defect_type`` defect inside ``mask`` of ``image``; deterministic for ``seed``.

    ``image``: gray [H, W] / [H, W, 1] or BGR [H, W, 3], uint8 or uint16.
    ``mask``: same H, W; non-zero = where the defect goes. ``feather_px``: width
    of the fade outside the mask; pixels farther away are bit-identical to the
    input. ``intensity`` scales the defect contrast (1 = clearly visible).
    ``seamless``: Poisson cloning for uint8 images (16-bit frames are blended
    with the feathered alpha only; OpenCV's cloning is 8-bit).
    Raises GenerationError for an unknown type, a mask of the wrong size or an
    empty mask, or an image that is not uint8/uint16 gray/BGR.
    """
    kind = normalise_defect_type(defect_type)
    planes, maxval = _check_image(image)
    m = validate_mask(mask, image.shape)
    if not (0.0 < intensity <= 4.0):
        raise GenerationError(f"intensity must be in (0, 4], got {intensity}")
    if feather_px < 0:
        raise GenerationError(f"feather_px must be >= 0, got {feather_px}")

    alpha_full = feather_alpha(m, feather_px)
    band = alpha_full > 0
    ys, xs = np.nonzero(band)
    H, W = m.shape
    y0, y1 = max(0, ys.min() - _CONTEXT_MARGIN), min(H, ys.max() + 1 + _CONTEXT_MARGIN)
    x0, x1 = max(0, xs.min() - _CONTEXT_MARGIN), min(W, xs.max() + 1 + _CONTEXT_MARGIN)

    crop = planes[y0:y1, x0:x1]
    f = crop.astype(np.float32) / maxval
    rng = np.random.default_rng(seed)
    ctx = build_context(f, m[y0:y1, x0:x1], rng, intensity)
    alpha = alpha_full[y0:y1, x0:x1, None]
    # the layer draws over the whole crop; confine it to the feathered mask first so
    # that the edge of the defect lies inside the Poisson region and survives cloning
    edited = f + (np.clip(DEFECT_LAYERS[kind](ctx), 0.0, 1.0) - f) * alpha
    band_crop = band[y0:y1, x0:x1]
    if seamless and image.dtype == np.uint8:
        edited8 = np.rint(edited * maxval).astype(np.uint8)
        edited = _seamless(np.ascontiguousarray(crop), edited8, band_crop).astype(np.float32) / maxval
    # fade back with the same alpha: the Poisson solution may drift slightly in the
    # grown clone region; alpha is exactly 0 outside the band
    blended = f + (edited - f) * alpha
    blended = np.clip(np.rint(blended * maxval), 0, maxval).astype(image.dtype)

    out_planes = planes.copy()
    region = out_planes[y0:y1, x0:x1]
    region[band_crop] = blended[band_crop]
    out = out_planes.reshape(image.shape)
    return GeneratedDefect(image=out, mask=m, band=band, defect_type=kind, seed=int(seed))
