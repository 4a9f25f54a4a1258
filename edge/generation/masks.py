"""Mask checks, the feather band, and random defect-shaped masks.

The feather band is where the edit fades into the surface. Everything outside
it is copied bit-for-bit from the input, so the band is computed once here and
used both to blend and to guarantee that promise.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.generation.errors import GenerationError


def validate_mask(mask: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Return the mask as bool [H, W], or raise a GenerationError that says what is wrong.

    Accepts bool or integer masks (non-zero = defect), 2-D or with a single /
    three identical channels (a PNG saved from a paint program).
    """
    if not isinstance(mask, np.ndarray) or mask.size == 0:
        raise GenerationError("the mask is empty (zero size)")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.ndim != 2:
        raise GenerationError(f"the mask must be a 2-D image, got shape {tuple(mask.shape)}")
    h, w = image_shape[:2]
    if mask.shape != (h, w):
        raise GenerationError(
            f"the mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but the image is {w}x{h}; they must be the same size"
        )
    out = mask.astype(bool)
    if not out.any():
        raise GenerationError("the mask is empty: it has no non-zero pixel, so there is nowhere to put a defect")
    return out


def feather_alpha(mask: np.ndarray, feather_px: float) -> np.ndarray:
    """Blend weight float32 [H, W]: 1 inside the mask, fading to 0 at ``feather_px`` outside it.

    Exactly 0 at distances >= feather_px, which defines the band (``alpha > 0``).
    A smoothstep fall-off avoids a visible ring at the band edge.
    """
    if feather_px <= 0:
        return mask.astype(np.float32)
    outside = (~mask).astype(np.uint8)
    dist = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    t = np.clip(1.0 - dist / float(feather_px), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def random_defect_mask(
    shape: tuple[int, int],
    defect_type: str,
    rng: np.random.Generator,
    roi: tuple[int, int, int, int] | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """A plausible bool mask for ``defect_type`` at a random place (synthetic NG images, self-test).

    Elongated strokes for scratches and cracks, blobs for the rest. ``roi`` is
    ``(x, y, width, height)``; the mask stays inside it with a margin. ``scale``
    multiplies the defect size (1.0 ≈ 6 % of the shorter ROI side).
    """
    h, w = shape
    x0, y0, rw, rh = roi if roi is not None else (0, 0, w, h)
    side = min(rw, rh)
    size = max(4.0, 0.06 * side * scale)
    margin = int(min(side * 0.25, size * 2 + 4))
    cx = int(rng.integers(x0 + margin, max(x0 + margin + 1, x0 + rw - margin)))
    cy = int(rng.integers(y0 + margin, max(y0 + margin + 1, y0 + rh - margin)))
    canvas = np.zeros((h, w), np.uint8)
    if defect_type in ("scratch", "crack"):
        angle = rng.uniform(0, np.pi)
        length = size * rng.uniform(2.0, 3.5)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        thickness = max(2, int(round(size * (0.25 if defect_type == "scratch" else 0.4))))
        cv2.line(canvas, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 255, thickness)
    else:
        n = 10
        angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
        radii = size * rng.uniform(0.6, 1.0, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(canvas, [pts], 255)
        canvas = cv2.GaussianBlur(canvas, (0, 0), max(1.0, size * 0.15))
        canvas = np.where(canvas > 127, 255, 0).astype(np.uint8)
    out = canvas > 0
    if not out.any():  # degenerate tiny ROI: fall back to a small disc
        cv2.circle(canvas, (cx, cy), 2, 255, -1)
        out = canvas > 0
    return out
