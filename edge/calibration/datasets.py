"""Image sets for calibration: good parts from a folder, defects from folders or synthesised.

Everything is read before anything is written, so an unreadable file stops
`iad-edge calibrate` with its name and leaves no partial output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import IadError
from edge.imageio import IMAGE_SUFFIXES, read_image


class CalibrationError(IadError):
    """Calibration input that cannot be used (empty folder, too few images, ...)."""


@dataclass
class Sample:
    """One calibration image."""

    name: str
    image: np.ndarray
    defect_type: str | None = None  # None = good part
    source: str = "file"  # 'file' or 'synthetic'


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_good(folder: Path) -> list[Sample]:
    """Every image in ``folder`` (sorted by name) as a good sample."""
    if not folder.is_dir():
        raise CalibrationError(f"--good {folder}: folder not found")
    paths = _images_in(folder)
    if not paths:
        raise CalibrationError(f"--good {folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return [Sample(p.name, read_image(p)) for p in paths]


def read_defects(folder: Path) -> list[Sample]:
    """Defect images: one sub-folder per defect type (``DIR/scratch/*.png``); loose images count as type 'defect'."""
    if not folder.is_dir():
        raise CalibrationError(f"--defects {folder}: folder not found (expected one sub-folder per defect type)")
    samples = [Sample(p.name, read_image(p), "defect") for p in _images_in(folder)]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        samples += [Sample(f"{sub.name}/{p.name}", read_image(p), sub.name) for p in _images_in(sub)]
    if not samples:
        raise CalibrationError(f"--defects {folder}: no images in it or its sub-folders")
    return samples


def synthetic_defects(good: list[Sample], count: int, roi: tuple[int, int, int, int] | None = None,
                      seed: int = 0) -> list[Sample]:
    """``count`` defect images made from the good images (cycled) by the mask-guided generator.

    Uses :func:`edge.generation.synthesize_defect` (scratch, crack, dent, stain,
    contamination, hole; deterministic per seed). If that module is missing, the
    synthetic source's simple defects are painted instead.
    """
    if count <= 0:
        return []
    try:
        from edge.generation import synthesize_defect
    except ImportError:  # pragma: no cover - the generator ships with the runtime
        synthesize_defect = None
    out = []
    for index in range(count):
        base = good[index % len(good)]
        if synthesize_defect is not None:
            made = synthesize_defect(base.image, seed=seed + index, roi=roi)
            out.append(Sample(f"synthetic-{index:04d}-{made.defect_type}-from-{base.name}", made.image, made.defect_type, "synthetic"))
        else:  # pragma: no cover
            out.append(_painted_defect(base, index, seed))
    return out


def _painted_defect(base: Sample, index: int, seed: int) -> Sample:  # pragma: no cover - fallback only
    import cv2

    rng = np.random.default_rng([seed, index])
    image = base.image.copy()
    h, w = image.shape[:2]
    cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
    value = int(np.iinfo(image.dtype).max) if rng.random() < 0.5 else 0
    cv2.circle(image, (cx, cy), max(3, min(w, h) // 20), (value,) * (1 if image.ndim == 2 else image.shape[2]), -1)
    return Sample(f"synthetic-{index:04d}-spot-from-{base.name}", image, "spot", "synthetic")
