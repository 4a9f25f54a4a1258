"""Test-set loaders: MVTec AD folder layout and VisA's split CSV.

Both loaders only look at file names (plus image headers in :func:`check_sizes`),
so every structural problem — a missing mask, a category without good training
images, a mask whose size differs from its image — is reported before any
model runs, naming the file and what was expected.

MVTec AD layout (one folder per category)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect_type>/<stem>.png
    <root>/<category>/ground_truth/<defect_type>/<stem>_mask.png

``<root>`` may also be a single category folder (it holds ``train/`` and ``test/``).

VisA: ``<root>/split_csv/1cls.csv`` with columns ``object,split,label,image,mask``
(``split`` train/test, ``label`` normal/anomaly, paths relative to ``<root>``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.errors import IadError
from edge.imageio import IMAGE_SUFFIXES

VISA_CSV = Path("split_csv") / "1cls.csv"
VISA_COLUMNS = ("object", "split", "label", "image", "mask")


class DatasetError(IadError):
    """A dataset whose layout, files or masks cannot be evaluated (the message names the file)."""


@dataclass(frozen=True)
class Sample:
    """One test image: label 0 = good, 1 = defective; ``mask`` is None for good images."""

    path: Path
    label: int
    defect_type: str
    mask: Path | None = None


@dataclass
class Category:
    """The good training images and the labelled test images of one product."""

    name: str
    train: list[Path]
    test: list[Sample]

    @property
    def n_anomalous(self) -> int:
        return sum(s.label for s in self.test)


@dataclass
class Dataset:
    """A loaded dataset: its format ('mvtec' or 'visa') and categories in name order."""

    root: Path
    format: str
    categories: list[Category] = field(default_factory=list)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def load_dataset(root: str | Path, categories: Sequence[str] | None = None) -> Dataset:
    """Detect the layout under ``root`` and load it (optionally only ``categories``)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if (root / VISA_CSV).is_file():
        dataset = load_visa(root, root / VISA_CSV)
    else:
        dataset = load_mvtec(root)
    if categories:
        known = {c.name: c for c in dataset.categories}
        missing = [c for c in categories if c not in known]
        if missing:
            raise DatasetError(
                f"{root}: no category {', '.join(repr(m) for m in missing)} (found: {', '.join(sorted(known)) or 'none'})"
            )
        dataset.categories = [known[c] for c in categories]
    for category in dataset.categories:
        _check_usable(dataset.root, category)
    return dataset


def load_mvtec(root: Path) -> Dataset:
    """MVTec AD layout; a folder holding ``train/`` and ``test/`` is read as one category."""
    if (root / "train").is_dir() or (root / "test").is_dir():
        folders = [root]
        root = root.parent
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and ((p / "train").is_dir() or (p / "test").is_dir()))
    if not folders:
        raise DatasetError(
            f"{root}: not an MVTec AD layout (expected <category>/train/good and <category>/test/<type>/) "
            f"and no VisA {VISA_CSV} either"
        )
    return Dataset(root, "mvtec", [_load_mvtec_category(folder) for folder in folders])


def _load_mvtec_category(folder: Path) -> Category:
    train_dir = folder / "train" / "good"
    train = _images_in(train_dir) if train_dir.is_dir() else []
    test: list[Sample] = []
    test_dir = folder / "test"
    if test_dir.is_dir():
        for type_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            defect_type = type_dir.name
            for image in _images_in(type_dir):
                if defect_type == "good":
                    test.append(Sample(image, 0, "good"))
                    continue
                mask = folder / "ground_truth" / defect_type / f"{image.stem}_mask.png"
                if not mask.is_file():
                    raise DatasetError(f"{image}: ground-truth mask missing (expected {mask})")
                test.append(Sample(image, 1, defect_type, mask))
    return Category(folder.name, train, test)


def load_visa(root: Path, csv_path: Path) -> Dataset:
    """VisA split CSV (``object,split,label,image,mask``); paths are relative to ``root``."""
    by_name: dict[str, Category] = {}
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing_cols = [c for c in VISA_COLUMNS if c not in (reader.fieldnames or [])]
            if missing_cols:
                raise DatasetError(
                    f"{csv_path}:1: missing column(s) {', '.join(missing_cols)} (expected {','.join(VISA_COLUMNS)})"
                )
            for line_no, row in enumerate(reader, start=2):
                where = f"{csv_path}:{line_no}"
                name, split, label = row["object"].strip(), row["split"].strip().lower(), row["label"].strip().lower()
                if not name:
                    raise DatasetError(f"{where}: empty 'object'")
                category = by_name.setdefault(name, Category(name, [], []))
                image = root / row["image"].strip()
                if label not in ("normal", "anomaly"):
                    raise DatasetError(f"{where}: label must be 'normal' or 'anomaly' (got {row['label']!r})")
                if not image.is_file():
                    raise DatasetError(f"{where}: image file not found: {image}")
                if split == "train":
                    if label == "normal":
                        category.train.append(image)
                    continue  # anomalous training images are not used by a one-class method
                if split != "test":
                    raise DatasetError(f"{where}: split must be 'train' or 'test' (got {row['split']!r})")
                if label == "normal":
                    category.test.append(Sample(image, 0, "good"))
                    continue
                mask_rel = (row["mask"] or "").strip()
                mask = root / mask_rel if mask_rel else None
                if mask is None or not mask.is_file():
                    raise DatasetError(f"{where}: ground-truth mask missing for {image} (expected {mask or 'a mask path'})")
                category.test.append(Sample(image, 1, "anomaly", mask))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot read split CSV ({exc})") from None
    if not by_name:
        raise DatasetError(f"{csv_path}: no rows")
    return Dataset(root, "visa", [by_name[n] for n in sorted(by_name)])


def _check_usable(root: Path, category: Category) -> None:
    """A category must have good training images and both good and defective test images."""
    where = f"{root}/{category.name}"
    if not category.train:
        raise DatasetError(f"{where}: category {category.name!r} has no good training images (train/good is empty or missing)")
    if not category.test:
        raise DatasetError(f"{where}: category {category.name!r} has no test images (test/ is empty or missing)")
    if category.n_anomalous == 0:
        raise DatasetError(f"{where}: category {category.name!r} has no defective test images; AUROC/PRO need some")
    if category.n_anomalous == len(category.test):
        raise DatasetError(f"{where}: category {category.name!r} has no good test images (test/good); AUROC needs some")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header (Pillow) without decoding the pixels; falls back to OpenCV."""
    try:
        from PIL import Image  # noqa: PLC0415 - optional dependency

        with Image.open(path) as img:
            return img.size
    except Exception:  # unknown to Pillow (or Pillow missing): decode it
        image = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DatasetError(f"{path}: not a readable image") from None
        return image.shape[1], image.shape[0]


def check_sizes(category: Category) -> None:
    """Every mask must have exactly its image's size: resizing would silently move defect pixels."""
    for sample in category.test:
        if sample.mask is None:
            continue
        image_wh, mask_wh = image_size(sample.path), image_size(sample.mask)
        if image_wh != mask_wh:
            raise DatasetError(
                f"{sample.mask}: mask is {mask_wh[0]}x{mask_wh[1]} but its image {sample.path} is "
                f"{image_wh[0]}x{image_wh[1]}; masks must have the image's size"
            )


def read_mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray | None:
    """Boolean defect mask (any non-zero pixel is defect), checked against the image ``shape`` (H, W)."""
    if sample.mask is None:
        return None
    mask = cv2.imdecode(np.fromfile(str(sample.mask), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DatasetError(f"{sample.mask}: not a readable mask image")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.shape != tuple(shape):
        raise DatasetError(
            f"{sample.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {sample.path} is "
            f"{shape[1]}x{shape[0]}; masks must have the image's size"
        )
    return mask > 0  # an all-zero mask adds no PRO region and is skipped by location accuracy
