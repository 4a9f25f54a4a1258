"""Synthetic NG images for calibration and the self-test: a random mask + a generated defect."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.generation.generator import DEFECT_TYPES, generate_defect, normalise_defect_type
from edge.generation.masks import random_defect_mask


@dataclass
class SyntheticDefect:
    """A good image turned into a labelled NG image."""

    image: np.ndarray
    mask: np.ndarray  # bool ground truth (the requested mask; the band around it fades)
    defect_type: str
    seed: int


def synthesize_defect(
    image: np.ndarray,
    seed: int,
    defect_types: Sequence[str] | None = None,
    roi: tuple[int, int, int, int] | None = None,
    scale: float = 1.0,
    intensity: float = 1.0,
) -> SyntheticDefect:
    """Put one random defect (type drawn from ``defect_types``, default all) at a random place.

    Deterministic for ``seed``. ``roi`` = (x, y, width, height) keeps the defect
    inside the inspected area. This is what ``iad-edge calibrate --synthetic N``
    calls once per synthetic image (with seeds 0..N-1 or a recipe-derived base).
    """
    kinds = [normalise_defect_type(t) for t in (defect_types or DEFECT_TYPES)]
    rng = np.random.default_rng(seed)
    kind = kinds[int(rng.integers(0, len(kinds)))]
    mask = random_defect_mask(image.shape[:2], kind, rng, roi=roi, scale=scale)
    gen = generate_defect(image, mask, kind, seed=int(rng.integers(0, 2**31 - 1)), intensity=intensity)
    return SyntheticDefect(image=gen.image, mask=mask, defect_type=kind, seed=int(seed))
