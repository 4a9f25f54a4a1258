"""Cutting an ROI into model inputs and stitching patch distances back into a map.

Two modes (recipe ``tiling.mode``):

* ``resize``: the ROI is scaled to one R×R input (whole parts, MVTec-style);
* ``tile``: overlapping R×R tiles at native resolution (wide line-scan frames,
  small defects). Frames smaller than R are padded (edge replication) and the
  padding is cropped away again.

A :class:`TilePlan` depends only on the ROI shape and the tiling settings, so
the lane computes it once and reuses it for every frame of that shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from edge.config.expert import TilingConfig


@dataclass(frozen=True)
class TilePlan:
    """Where each model input comes from in the ROI, and how to map it back."""

    mode: str
    roi_height: int
    roi_width: int
    resolution: int
    grid: int  # patches per side of one tile (R / 14)
    origins: tuple[tuple[int, int], ...]  # (y, x) of each tile in the padded ROI (tile mode)
    padded_shape: tuple[int, int]  # (H, W) after padding (tile mode) or the ROI shape (resize mode)

    @property
    def num_tiles(self) -> int:
        return len(self.origins)


def _starts(length: int, size: int, overlap: float) -> list[int]:
    """Evenly spaced tile starts covering [0, length) with at least the requested overlap."""
    if length <= size:
        return [0]
    stride = max(1, int(size * (1.0 - overlap)))
    count = math.ceil((length - size) / stride) + 1
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


@lru_cache(maxsize=32)
def _plan(mode: str, height: int, width: int, resolution: int, overlap: float, patch: int) -> TilePlan:
    grid = resolution // patch
    if mode == "resize":
        return TilePlan(mode, height, width, resolution, grid, ((0, 0),), (height, width))
    padded = (max(height, resolution), max(width, resolution))
    origins = tuple((y, x) for y in _starts(padded[0], resolution, overlap) for x in _starts(padded[1], resolution, overlap))
    return TilePlan(mode, height, width, resolution, grid, origins, padded)


def plan_tiles(roi_shape: tuple[int, int], tiling: TilingConfig, patch_size: int = 14) -> TilePlan:
    """The tile plan for an ROI of ``roi_shape`` (H, W) under ``tiling``."""
    return _plan(tiling.mode, int(roi_shape[0]), int(roi_shape[1]), tiling.resolution, float(tiling.overlap), patch_size)


def cut_tiles(roi_rgb: np.ndarray, plan: TilePlan) -> np.ndarray:
    """uint8 RGB ROI (H, W, 3) -> uint8 tiles [T, R, R, 3] (contiguous, ready for the expert)."""
    r = plan.resolution
    if plan.mode == "resize":
        h, w = roi_rgb.shape[:2]
        interp = cv2.INTER_AREA if (h > r or w > r) else cv2.INTER_LINEAR
        return cv2.resize(roi_rgb, (r, r), interpolation=interp)[None]
    ph, pw = plan.padded_shape
    h, w = roi_rgb.shape[:2]
    if (ph, pw) != (h, w):
        roi_rgb = cv2.copyMakeBorder(roi_rgb, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
    tiles = np.empty((plan.num_tiles, r, r, 3), dtype=np.uint8)
    for i, (y, x) in enumerate(plan.origins):
        tiles[i] = roi_rgb[y : y + r, x : x + r]
    return tiles


def stitch_distances(distances: np.ndarray, plan: TilePlan) -> np.ndarray:
    """Patch distances [T, g, g] -> float32 map at ROI size (bilinear; overlaps averaged).

    Bilinear upsampling uses pixel-centre alignment (cv2 INTER_LINEAR, the same
    convention as torch ``align_corners=False``), so patch (i, j) of a tile
    covers pixels [14*i, 14*i+14) of that tile.
    """
    r = plan.resolution
    if plan.mode == "resize":
        resized: np.ndarray = cv2.resize(distances[0].astype(np.float32), (plan.roi_width, plan.roi_height),
                                         interpolation=cv2.INTER_LINEAR)
        return resized
    ph, pw = plan.padded_shape
    acc = np.zeros((ph, pw), dtype=np.float32)
    weight = np.zeros((ph, pw), dtype=np.float32)
    for tile_map, (y, x) in zip(distances, plan.origins):
        acc[y : y + r, x : x + r] += cv2.resize(tile_map.astype(np.float32), (r, r), interpolation=cv2.INTER_LINEAR)
        weight[y : y + r, x : x + r] += 1.0
    return (acc / weight)[: plan.roi_height, : plan.roi_width]


@lru_cache(maxsize=32)
def _patch_centers(plan: TilePlan) -> tuple[np.ndarray, np.ndarray]:
    g, r = plan.grid, plan.resolution
    centers = (np.arange(g, dtype=np.float32) + 0.5) * (r / g)
    cy, cx = np.meshgrid(centers, centers, indexing="ij")
    ys, xs = [], []
    for y0, x0 in plan.origins:
        if plan.mode == "resize":
            ys.append(cy * plan.roi_height / r)
            xs.append(cx * plan.roi_width / r)
        else:
            ys.append(cy + y0)
            xs.append(cx + x0)
    ys_all, xs_all = np.stack(ys).ravel(), np.stack(xs).ravel()
    valid = (ys_all < plan.roi_height) & (xs_all < plan.roi_width)
    for arr in (ys_all, xs_all, valid):
        arr.setflags(write=False)
    return np.stack([ys_all, xs_all], axis=1), valid


def patch_centers(plan: TilePlan) -> tuple[np.ndarray, np.ndarray]:
    """(centres [T*g*g, 2] as (y, x) in ROI pixels, valid [T*g*g] bool: centre inside the unpadded ROI).

    Row order matches ``distances.reshape(-1)`` / ``features.reshape(-1, D)``.
    """
    return _patch_centers(plan)


@dataclass(frozen=True)
class PatchPositions:
    """Where each scored patch lies on the ROI's own patch lattice (one cell = one patch of pixels).

    In tile mode neighbouring tiles overlap, so the same place of the part is
    seen by two to four patches; scoring every tile patch would count a defect
    in an overlap zone several times. ``cell[i]`` is the lattice cell (row-major
    in ``shape``) holding the centre of patch ``i`` (``-1`` for padding), and
    ``occupied`` lists the cells that hold at least one patch centre: the
    unique positions that are scored. In resize mode every patch is its own cell.
    """

    cell: np.ndarray  # [T*g*g] int64, -1 = padding (centre outside the ROI)
    shape: tuple[int, int]  # (rows, cols) of the lattice
    occupied: np.ndarray  # [P] int64, sorted cell ids with at least one patch
    counts: np.ndarray  # [P] patches per occupied cell (1 in resize mode, up to 4 in tile mode)
    position_of: np.ndarray  # [T*g*g] index into ``occupied`` of each patch (0 for padding; see ``cell``)
    slots: tuple[tuple[np.ndarray, np.ndarray], ...]  # j-th patch of each position: (positions, patches)

    @property
    def count(self) -> int:
        return int(self.occupied.size)

    @property
    def identity(self) -> bool:
        """True when every patch is its own position (resize mode): nothing to average."""
        return self.occupied.size == self.cell.size

    def per_position(self, values: np.ndarray) -> np.ndarray:
        """[T*g*g, ...] per-patch values -> [P, ...] float32 mean per unique position (overlaps averaged)."""
        if self.identity:
            return values
        if values.ndim == 1:
            keep = self.cell >= 0
            sums = np.bincount(self.position_of[keep], weights=values[keep], minlength=self.count)
            mean: np.ndarray = (sums / self.counts).astype(np.float32)
            return mean
        out = np.zeros((self.count,) + values.shape[1:], dtype=np.float32)
        for rows, patches in self.slots:
            out[rows] += values[patches]
        out /= self.counts.reshape((-1,) + (1,) * (values.ndim - 1))
        return out

    def to_patches(self, per_position: np.ndarray) -> np.ndarray:
        """[P] per-position values -> [T*g*g] per-patch values (padding patches get zero / False)."""
        out: np.ndarray = per_position[self.position_of]
        out[self.cell < 0] = 0
        return out


def _positions(cell: np.ndarray, shape: tuple[int, int]) -> PatchPositions:
    keep = np.flatnonzero(cell >= 0)
    order = keep[np.argsort(cell[keep], kind="stable")]
    occupied, starts, counts = np.unique(cell[order], return_index=True, return_counts=True)
    position_of = np.zeros(cell.shape, dtype=np.int64)
    position_of[keep] = np.searchsorted(occupied, cell[keep])
    slots = []
    for j in range(int(counts.max(initial=0))):
        rows = np.flatnonzero(counts > j)
        slots.append((rows, order[starts[rows] + j]))
    result = PatchPositions(cell, shape, occupied, counts.astype(np.int64), position_of, tuple(slots))
    for arr in (result.cell, result.occupied, result.counts, result.position_of, *(a for pair in slots for a in pair)):
        arr.setflags(write=False)
    return result


@lru_cache(maxsize=32)
def _patch_positions(plan: TilePlan) -> PatchPositions:
    g = plan.grid
    if plan.mode == "resize":
        return _positions(np.arange(plan.num_tiles * g * g, dtype=np.int64), (g, g))
    step = plan.resolution / g
    rows, cols = math.ceil(plan.roi_height / step), math.ceil(plan.roi_width / step)
    centers, valid = _patch_centers(plan)
    cy = np.floor(centers[:, 0] / step).astype(np.int64)
    cx = np.floor(centers[:, 1] / step).astype(np.int64)
    return _positions(np.where(valid, cy * cols + cx, -1), (rows, cols))


def patch_positions(plan: TilePlan) -> PatchPositions:
    """The unique ROI positions of the plan's patches (cached per plan; see :class:`PatchPositions`)."""
    return _patch_positions(plan)
