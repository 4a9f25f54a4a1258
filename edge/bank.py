"""The memory bank: patch features of good parts that test patches are compared with.

Built by ``iad-edge calibrate`` from good images in exactly the inspection's
tiling, so bank and test patches see the same scale. Saved as one ``.npz``
next to the recipe with enough metadata to refuse a bank built for another
expert. Optional: 8-rotation augmentation, greedy coreset. The bank is never
foreground-masked: good images keep every patch, as in AnomalyDINO; the mask is
computed per inspected image (edge/foreground.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from edge.bank_fit import build_record
from edge.config.recipe import Recipe
from edge.errors import BankError
from edge.files import load_npz, save_npz
from edge.imageio import to_rgb8
from edge.tiling import cut_tiles, plan_tiles
from edge.types import Expert

log = logging.getLogger(__name__)

BANK_FORMAT = "iad-bank/1"


@dataclass
class Bank:
    """L2-normalised good-part patch features [N, D] plus how they were made."""

    features: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.features.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename): a crash never leaves half a bank."""
        return save_npz(path, dict(self.meta, format=BANK_FORMAT), {"features": self.features})

    @classmethod
    def load(cls, path: str | Path) -> Bank:
        path = Path(path)
        if not path.is_file():
            raise BankError(f"{path}: no memory bank here; build it with `iad-edge calibrate RECIPE --good DIR`")
        try:
            meta, arrays = load_npz(path, ("features",))
            features = arrays["features"]
        except (OSError, ValueError, KeyError) as exc:
            raise BankError(f"{path}: not a readable iad-edge bank ({exc}); rebuild it with `iad-edge calibrate`") from None
        if meta.get("format") != BANK_FORMAT or features.ndim != 2 or features.shape[0] == 0:
            raise BankError(f"{path}: not an {BANK_FORMAT} bank; rebuild it with `iad-edge calibrate`")
        return cls(features, meta)

    def check_fits(self, expert: Expert, path: str | Path = "bank") -> None:
        """Refuse a bank made by another expert (feature size, model hash, resolution)."""
        if self.features.shape[1] != expert.feature_dim:
            raise BankError(
                f"{path}: bank features have {self.features.shape[1]} dims but the expert gives {expert.feature_dim}; "
                "re-run `iad-edge calibrate` with this expert"
            )
        model_sha = expert_sha256(expert)
        if self.meta.get("expert_sha256") and model_sha and self.meta["expert_sha256"] != model_sha:
            raise BankError(f"{path}: bank was built with another expert model; re-run `iad-edge calibrate` with this one")


def expert_sha256(expert: Expert) -> str:
    """sha256 of the expert's model file as recorded in its manifest ('' if unknown)."""
    files = expert.manifest.get("files", {})
    for entry in files.values():
        if isinstance(entry, dict) and "sha256" in entry:
            return str(entry["sha256"])
    return ""


def rotations(image: np.ndarray) -> list[np.ndarray]:
    """The image rotated by 0°, 45°, …, 315° about its centre (border replicated)."""
    h, w = image.shape[:2]
    out = [image]
    for k in range(1, 8):
        if k % 2 == 0:
            out.append(np.ascontiguousarray(np.rot90(image, k // 2)) if h == w else cv2.rotate(image, (cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_CLOCKWISE)[k // 2 - 1]))
        else:
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 45.0 * k, 1.0)
            out.append(cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return out


def greedy_coreset(features: np.ndarray, size: int, seed: int = 0, projection_dim: int = 128) -> np.ndarray:
    """Indices of a greedy k-centre coreset (PatchCore's method) on a random projection."""
    n = features.shape[0]
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    reduced = features
    if features.shape[1] > projection_dim:
        proj = rng.standard_normal((features.shape[1], projection_dim)).astype(np.float32) / np.sqrt(projection_dim)
        reduced = features @ proj
    chosen = np.empty(size, dtype=np.int64)
    chosen[0] = int(rng.integers(n))
    min_dist = np.linalg.norm(reduced - reduced[chosen[0]], axis=1)
    for i in range(1, size):
        chosen[i] = int(np.argmax(min_dist))
        np.minimum(min_dist, np.linalg.norm(reduced - reduced[chosen[i]], axis=1), out=min_dist)
    return chosen


def build_bank(
    expert: Expert,
    images: Iterable[np.ndarray],
    recipe: Recipe,
    progress: bool = True,
    total: int | None = None,
) -> Bank:
    """Patch features of good images, in the recipe's ROI and tiling, as a :class:`Bank`.

    The expert runs with a one-row placeholder bank while features are
    extracted (distances are not needed), so install the bank you want with
    ``expert.set_bank`` / ``Inspector.set_bank`` afterwards. Calibration runs in
    its own process, never on the live lane's expert.
    """

    cfg = recipe.bank
    roi = recipe.roi
    per_image: list[np.ndarray] = []
    count = 0
    sizes: list[tuple[int, int]] = []  # (width, height) of each good frame, recorded in the bank (edge/bank_fit.py)
    expert.set_bank(placeholder_bank(expert.feature_dim))
    for image in tqdm(images, total=total, desc="bank", unit="img", disable=not progress):
        sizes.append((int(image.shape[1]), int(image.shape[0])))
        rgb = to_rgb8(image)
        if roi is not None:
            rgb = rgb[roi.y : roi.y + roi.height, roi.x : roi.x + roi.width]
        variants = rotations(rgb) if cfg.rotations else [rgb]
        for variant in variants:
            plan = plan_tiles(variant.shape[:2], recipe.tiling, expert.patch_size)
            tiles = cut_tiles(variant, plan)
            _, features = run_batched(expert, tiles, recipe.tiling.max_batch)  # features [T, g, g, D]
            per_image.append(features)
        count += 1
    if not per_image:
        raise BankError("no good images to build a bank from")
    bank = np.concatenate([f.reshape(-1, f.shape[-1]) for f in per_image]).astype(np.float32)
    full_size = bank.shape[0]
    if cfg.coreset_max is not None and full_size > cfg.coreset_max:
        log.info("coreset: %d -> %d patches", full_size, cfg.coreset_max)
        bank = bank[greedy_coreset(bank, cfg.coreset_max)]
    bank /= np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
    meta = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "images": count,
        "patches_before_coreset": full_size,
        "patches": int(bank.shape[0]),
        "feature_dim": int(bank.shape[1]),
        "resolution": recipe.tiling.resolution,
        "tiling": recipe.tiling.mode,
        "rotations": cfg.rotations,
        "foreground_mask": cfg.foreground_mask,
        "expert_sha256": expert_sha256(expert),
        "expert_architecture": expert.manifest.get("architecture", ""),
        **build_record(recipe, sizes),
    }
    return Bank(np.ascontiguousarray(bank), meta)


def placeholder_bank(feature_dim: int) -> np.ndarray:
    """A one-row bank for runs that only need the features (distances are discarded)."""
    bank = np.zeros((1, feature_dim), dtype=np.float32)
    bank[0, 0] = 1.0
    return bank


def run_batched(expert: Expert, tiles: np.ndarray, max_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Run the expert over tiles in chunks of at most ``max_batch``."""
    if tiles.shape[0] <= max_batch:
        return expert.run(tiles)
    parts = [expert.run(tiles[i : i + max_batch]) for i in range(0, tiles.shape[0], max_batch)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
