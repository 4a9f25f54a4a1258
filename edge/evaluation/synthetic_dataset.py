"""A small synthetic dataset in MVTec AD layout (`iad-edge make-dataset --synthetic`).

Made from the same :class:`~edge.sources.synthetic.SyntheticPartRenderer` as the
synthetic camera, so users can try `iad-edge eval` without downloading anything
and the tests exercise every code path of the loaders and the runner: categories
cycle through a colour part, a **grayscale** part and an **odd-sized** colour part
(each with its own texture seed); ``bit_depth=16`` writes 16-bit PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import IadError
from edge.evaluation.staging import staged_dir
from edge.sources.synthetic import DEFECT_TYPES, SyntheticPartRenderer


@dataclass(frozen=True)
class CategoryKind:
    """How the frames of one synthetic category look."""

    name: str
    width: int
    height: int
    channels: int


KINDS = (
    CategoryKind("part_color", 128, 128, 3),
    CategoryKind("part_gray", 128, 128, 1),
    CategoryKind("part_odd", 131, 97, 3),  # odd, non-square size: tiling and map resizing must cope
)


class DatasetWriteError(IadError):
    """The synthetic dataset cannot be written where asked."""


def category_kinds(count: int) -> list[CategoryKind]:
    """``count`` categories cycling through colour / gray / odd-sized; names stay unique."""
    kinds = []
    for i in range(count):
        base = KINDS[i % len(KINDS)]
        suffix = "" if i < len(KINDS) else f"_{i // len(KINDS) + 1}"
        kinds.append(CategoryKind(base.name + suffix, base.width, base.height, base.channels))
    return kinds


def _to_depth(image: np.ndarray, bit_depth: int) -> np.ndarray:
    if bit_depth == 16:
        return image.astype(np.uint16) * 257  # full 16-bit range, as a Mono16 camera would deliver
    return image


def _write(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise DatasetWriteError(f"{path}: cannot encode PNG")
    path.write_bytes(buf.tobytes())


def write_synthetic_dataset(
    out: str | Path,
    categories: int = 3,
    train: int = 8,
    test: int = 8,
    seed: int = 0,
    bit_depth: int = 8,
    overwrite: bool = False,
) -> list[str]:
    """Write the dataset to ``out`` and return the category names.

    ``test`` images per category are half good, half defective (at least one of
    each); defect types (scratch, spot, crack, missing) take turns. The files
    are written to a temporary folder beside ``out`` and moved into place at
    the end, so an interrupted run leaves no half dataset.
    """

    if categories < 1 or train < 1 or test < 2:
        raise DatasetWriteError("need at least 1 category, 1 training image and 2 test images (one good, one defective)")
    if bit_depth not in (8, 16):
        raise DatasetWriteError(f"bit depth must be 8 or 16 (got {bit_depth})")
    with staged_dir(Path(out), overwrite) as staging:
        kinds = category_kinds(categories)
        for k, kind in enumerate(kinds):
            cat_seed = seed * 1000 + 17 * k + 1  # every category its own texture
            renderer = SyntheticPartRenderer(kind.width, kind.height, kind.channels, seed=cat_seed)
            root = staging / kind.name
            (root / "train" / "good").mkdir(parents=True)
            (root / "test" / "good").mkdir(parents=True)
            for i in range(train):
                _write(root / "train" / "good" / f"{i:03d}.png", _to_depth(renderer.render(i, defect=None).image, bit_depth))
            n_bad = max(1, test // 2)
            n_good = max(1, test - n_bad)
            for i in range(n_good):
                _write(root / "test" / "good" / f"{i:03d}.png", _to_depth(renderer.render(train + i, defect=None).image, bit_depth))
            for i in range(n_bad):
                defect_type = DEFECT_TYPES[i % len(DEFECT_TYPES)]  # every type appears once before any repeats
                frame = renderer.render(train + n_good + i, defect=defect_type)
                (root / "test" / defect_type).mkdir(exist_ok=True)
                (root / "ground_truth" / defect_type).mkdir(parents=True, exist_ok=True)
                _write(root / "test" / defect_type / f"{i:03d}.png", _to_depth(frame.image, bit_depth))
                mask = np.zeros(frame.image.shape[:2], np.uint8) if frame.ground_truth is None else frame.ground_truth.astype(np.uint8) * 255
                _write(root / "ground_truth" / defect_type / f"{i:03d}_mask.png", mask)
    return [k.name for k in kinds]
