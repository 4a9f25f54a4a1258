"""Foreground mask of one image, after AnomalyDINO's ``compute_background_mask``.

For parts on a plain background (a fixture, a conveyor belt) the background
patches are removed from scoring: their distance becomes 0, so dust on the belt
does not reject the part. As in AnomalyDINO (``src/backbones.py``), per image:

1. the first principal component of the image's own patch tokens (not one PCA
   fitted once on the bank: lighting and part position change per frame);
2. patches projecting above a threshold are foreground;
3. sanity check: if 35 % or less of the centre crop (the middle 60 % of each
   side) is kept, the sign was wrong (PCA signs are arbitrary) and the other side
   is taken, so the part is assumed to lie in the middle of the ROI;
4. a 3×3 dilation, then a 3×3 closing, on the patch grid: the mask grows by one
   patch and small holes are filled, so a defect that looks like background (a
   dark hole in a bright part) stays in the mask.

Reference (good) images are not masked: the bank keeps every patch, as in
AnomalyDINO's default.

One difference, on purpose: the exported graph returns L2-normalised patch
tokens (the kNN needs them), not the raw tokens AnomalyDINO projects. The
projection is therefore on the unit-length tokens and the threshold is on that
scale: ``THRESHOLD = 0.2`` instead of AnomalyDINO's 10 on raw tokens, whose
length is several tens for DINOv2 (the ratio is an estimate; it was not measured
on real weights here). Exporting the raw token norms would make it exact but
needs every engine re-exported. In tile mode the positions of the ROI's own patch
lattice are used (overlapping tiles averaged), so the mask is per image, not per tile.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.tiling import PatchPositions

THRESHOLD = 0.2  # on the projection of unit-length tokens (see the module docstring)
CENTRE_BORDER = 0.2  # the centre crop leaves out 20 % on every side
CENTRE_MIN_KEPT = 0.35  # more than this share of the centre crop must be foreground
KERNEL = np.ones((3, 3), np.uint8)
FIT_POSITIONS = 1024  # at most about this many positions fit the component (cost; the direction barely changes)


def first_component(x: np.ndarray, iterations: int = 8, block: int = 5) -> np.ndarray:
    """First principal direction [D] of centred rows ``x`` [P, D] (randomised block power iteration, fixed seed).

    Cheaper than a full SVD for the thousands of positions of a tiled ROI, and
    the same direction to float precision whenever the first component stands
    out (which is the case the mask is for); deterministic for a given input.
    """
    rng = np.random.default_rng(0)
    q = rng.standard_normal((x.shape[1], min(block, x.shape[1]))).astype(np.float32)
    q, _ = np.linalg.qr(q)
    for _ in range(iterations):
        q, _ = np.linalg.qr(x.T @ (x @ q))
    _, _, vt = np.linalg.svd(x @ q, full_matrices=False)  # Rayleigh-Ritz in the found subspace
    return (q @ vt[0]).astype(np.float32)


def foreground_positions(features: np.ndarray, positions: PatchPositions, threshold: float = THRESHOLD) -> np.ndarray:
    """[P, D] features of the image's unique positions -> [P] bool, True = part (scored)."""
    x = features.astype(np.float32) - features.mean(axis=0, dtype=np.float64).astype(np.float32)
    fit = np.ascontiguousarray(x[:: max(1, x.shape[0] // FIT_POSITIONS)])  # a wide tiled ROI: an even subsample
    projection = x @ first_component(fit)
    rows, cols = positions.shape
    grid = np.full(rows * cols, np.nan, dtype=np.float32)
    grid[positions.occupied] = projection
    grid = grid.reshape(rows, cols)
    r0, r1 = int(rows * CENTRE_BORDER), int(rows * (1 - CENTRE_BORDER))
    c0, c1 = int(cols * CENTRE_BORDER), int(cols * (1 - CENTRE_BORDER))
    centre = grid[r0:r1, c0:c1]
    centre = centre[np.isfinite(centre)]
    with np.errstate(invalid="ignore"):
        mask = grid > threshold
        if centre.size and (centre > threshold).sum() <= centre.size * CENTRE_MIN_KEPT:
            mask = -grid > threshold
    mask = cv2.dilate(mask.astype(np.uint8), KERNEL)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, KERNEL)
    return mask.reshape(-1)[positions.occupied].astype(bool)
