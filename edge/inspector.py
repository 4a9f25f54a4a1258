"""One frame in, one inspection result out: the region expert's whole per-frame path.

ROI crop → RGB → tiles → expert (patch distances + features) → stitched map
(bilinear, σ = 4 px blur) → image score (top 1 %) → regions → verdict. This is
the ``inspect`` path of the CLI and the decision core of the real-time lane.

Thread safety: ``inspect`` may run on one thread while ``prepare_recipe``
loads a new recipe's expert/bank on another; ``commit_recipe`` swaps them in
as whole references between frames, so a frame sees either the old or the
new settings, never a mix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.bank import Bank, run_batched
from edge.bank_fit import compare, frame_limit
from edge.config.recipe import Recipe
from edge.errors import BadFrameError, BankError, ModelLoadError
from edge.expert import load_expert
from edge.expert.base import Expert
from edge.files import Stamp, file_stamp
from edge.foreground import foreground_positions
from edge.imageio import check_frame, to_rgb8
from edge.prototypes import Prototypes
from edge.regions import extract_regions, with_features
from edge.scoring import image_score, require_finite, smooth_map
from edge.tiling import cut_tiles, patch_centers, patch_positions, plan_tiles, stitch_distances
from edge.types import InspectionResult
from edge.verdict import decide

log = logging.getLogger(__name__)


def check_resolution(recipe: Recipe, expert: Expert) -> None:
    """The recipe's tile size must be the size the expert was exported (and its engine profiled) for."""
    if recipe.tiling.resolution != expert.resolution:
        raise ModelLoadError(
            f"tiling.resolution is {recipe.tiling.resolution} but the expert was exported for {expert.resolution}: "
            f"set tiling.resolution: {expert.resolution}, or re-export with `iad-export dinov2 --resolution "
            f"{recipe.tiling.resolution}`"
        )


class FrameTooLargeError(BadFrameError):
    """A frame above the frame guard's limit (tiling.max_megapixels or its default from the bank)."""


def check_bank_fits_recipe(bank: Bank, recipe: Recipe, path: str | Path) -> list[str]:
    """Apply edge/bank_fit.py's rules: raise BankError on a refusal, log and return the warnings."""
    fit = compare(bank.meta, recipe)
    if fit.errors:
        raise BankError(f"{path}: " + "; ".join(fit.errors))
    for warning in fit.warnings:
        log.warning("%s: %s", path, warning)
    return [f"{path}: {w}" for w in fit.warnings]


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


@dataclass
class PreparedRecipe:
    """A recipe with everything it needs already loaded (:meth:`Inspector.prepare_recipe`), ready to swap in."""

    recipe: Recipe
    expert: Expert
    bank: Bank | None
    bank_path: Path | None
    upload_bank: bool  # same expert, new bank: upload when committing
    warnings: list[str]
    prototypes: Prototypes | None
    prototypes_key: tuple[Path | None, Stamp]
    bank_stamp: Stamp


class Inspector:
    """Holds the loaded expert, the installed bank and the current recipe."""

    def __init__(self, recipe: Recipe, expert: Expert, bank: Bank | None = None):
        check_resolution(recipe, expert)
        self.recipe = recipe
        self.expert = expert
        self.bank: Bank | None = None
        self.bank_path: Path | None = None
        self.bank_warnings: list[str] = []  # what edge/bank_fit.py found worth saying about the loaded bank
        self._bank_stamp: Stamp = None
        self.prototypes: Prototypes | None = None  # defect types, when rules.always_reject needs them
        self._prototypes_key: tuple[Path | None, Stamp] = (None, None)
        self.prototypes, self._prototypes_key = self._prototypes_for(recipe)
        self._sizes_seen: set[tuple[int, int]] = set()
        # called as progress(tiles_done, tiles_total) during a frame of many tiles (the CLI's `inspect`; never the lane)
        self.progress: Callable[[int, int], None] | None = None
        if bank is not None:
            self.set_bank(bank)

    @classmethod
    def from_recipe(cls, recipe: Recipe, bank_path: str | Path | None = None, load_bank: bool = True) -> Inspector:
        """Load the expert named by the recipe and (unless ``load_bank`` is false) its bank."""
        inspector = cls(recipe, load_expert(recipe.expert))
        if load_bank:
            inspector.load_bank(bank_path or recipe.bank.path)
        return inspector

    def load_bank(self, path: str | Path) -> None:
        bank = Bank.load(path)
        bank.check_fits(self.expert, path)
        self.bank_warnings = check_bank_fits_recipe(bank, self.recipe, path)
        self.set_bank(bank)
        self.bank_path = Path(path)
        self._bank_stamp = file_stamp(self.bank_path)

    def set_bank(self, bank: Bank) -> None:
        """Install a bank (uploaded to the expert once; the next frame uses it)."""
        bank.check_fits(self.expert)
        self.expert.set_bank(bank.features)
        self.bank = bank

    def _prototypes_for(self, recipe: Recipe) -> tuple[Prototypes | None, tuple[Path | None, Stamp]]:
        """The defect-type prototypes ``recipe`` needs (for ``rules.always_reject``), reloaded only when the file changed.

        Held like the bank: loaded at start and on a recipe update, never stat()ed per
        frame; a missing or bad file raises (at start, or on a live reload, which then
        keeps the running recipe).
        """
        path = Path(recipe.assistant.prototypes) if recipe.rules.always_reject and recipe.assistant.prototypes else None
        key = (path, file_stamp(path) if path is not None else None)
        if key == self._prototypes_key:
            return self.prototypes, key
        return (Prototypes.load(path) if path is not None else None), key

    def close(self) -> None:
        """Release the expert (sessions, device buffers)."""
        self.expert.close()

    def update_recipe(self, recipe: Recipe) -> None:
        """Apply a new recipe at once (:meth:`prepare_recipe` then :meth:`commit_recipe`); for callers without frames in flight."""
        self.commit_recipe(self.prepare_recipe(recipe))

    def prepare_recipe(self, recipe: Recipe) -> PreparedRecipe:
        """Load everything a new recipe needs, without touching what frames use (safe beside :meth:`inspect`).

        A changed ``expert`` section loads the new expert (and uploads its bank to
        it); a changed bank path or bank file loads the bank; changed prototypes
        are loaded. This is where the time goes, so the lane runs it on a
        background thread. If anything fails, whatever this call opened (a new
        expert) is closed before the error propagates, and nothing was swapped.
        """
        expert = self.expert
        try:
            if recipe.expert != self.recipe.expert:
                expert = load_expert(recipe.expert)
            check_resolution(recipe, expert)
            bank, bank_path, upload = self.bank, self.bank_path, False
            new_path = Path(recipe.bank.path)
            if expert is not self.expert or new_path != bank_path or file_stamp(new_path) != self._bank_stamp:
                bank = Bank.load(new_path)
                bank.check_fits(expert, new_path)
                warnings = check_bank_fits_recipe(bank, recipe, new_path)
                bank_path = new_path
                if expert is not self.expert:
                    expert.set_bank(bank.features)  # not serving frames yet: upload now, off the frame path
                else:
                    upload = True  # the running expert's bank is swapped between frames (commit_recipe)
            else:
                warnings = check_bank_fits_recipe(bank, recipe, bank_path or "bank") if bank is not None else self.bank_warnings
            prototypes, prototypes_key = self._prototypes_for(recipe)
        except BaseException:
            if expert is not self.expert:
                expert.close()  # a failed reload leaves nothing open behind it
            raise
        return PreparedRecipe(recipe, expert, bank, bank_path, upload, warnings, prototypes, prototypes_key,
                              file_stamp(bank_path) if bank_path else None)

    def commit_recipe(self, prepared: PreparedRecipe) -> None:
        """Swap in a prepared recipe (between frames: a reference swap, plus the bank upload for the same expert)."""
        if prepared.upload_bank and prepared.bank is not None:
            prepared.expert.set_bank(prepared.bank.features)
        old_expert = self.expert
        self.expert, self.bank, self.bank_path = prepared.expert, prepared.bank, prepared.bank_path
        self.prototypes, self._prototypes_key = prepared.prototypes, prepared.prototypes_key
        self.bank_warnings, self._bank_stamp, self.recipe = prepared.warnings, prepared.bank_stamp, prepared.recipe
        if old_expert is not prepared.expert:
            old_expert.close()

    def discard_recipe(self, prepared: PreparedRecipe) -> None:
        """Drop a prepared recipe that will not be committed (superseded, or the lane stopped): close its new expert."""
        if prepared.expert is not self.expert:
            prepared.expert.close()

    def _guard_frame(self, width: int, height: int, recipe: Recipe, bank: Bank) -> None:
        """Refuse a frame far larger than calibrated before it costs seconds and gigabytes (bounded memory)."""
        limit_mp, why = frame_limit(recipe, bank.meta)
        megapixels = width * height / 1e6
        if megapixels > limit_mp:
            raise FrameTooLargeError(
                f"frame {width}x{height} ({megapixels:.1f} MP) is larger than the {limit_mp:.1f} MP limit ({why}); "
                "crop it with roi, or raise tiling.max_megapixels if the part really is this large"
            )
        if (width, height) not in self._sizes_seen and len(self._sizes_seen) < 64:
            self._sizes_seen.add((width, height))
            lo, hi = bank.meta.get("frame_min"), bank.meta.get("frame_max")
            if lo and hi and not (lo[0] <= width <= hi[0] and lo[1] <= height <= hi[1]):
                log.warning("frame %dx%d is outside the %s range the bank was calibrated on; scores may not be comparable",
                            width, height, f"{lo[0]}x{lo[1]}..{hi[0]}x{hi[1]}")

    def _run_tiles(self, tiles: np.ndarray, max_batch: int) -> tuple[np.ndarray, np.ndarray]:
        """The expert over all tiles; with ``self.progress`` set and many tiles, in chunks with a report after each."""
        report = self.progress
        if report is None or tiles.shape[0] <= max_batch * 4:
            return run_batched(self.expert, tiles, max_batch)
        chunk = max_batch * 4
        parts = []
        for start in range(0, tiles.shape[0], chunk):
            parts.append(run_batched(self.expert, tiles[start : start + chunk], max_batch))
            report(min(start + chunk, tiles.shape[0]), tiles.shape[0])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def inspect(self, image: np.ndarray) -> InspectionResult:
        """Inspect one frame (gray or BGR, uint8 or uint16, any size)."""
        recipe, bank, prototypes = self.recipe, self.bank, self.prototypes  # one consistent snapshot for this frame
        if bank is None:
            raise BadFrameError("no memory bank installed: run `iad-edge calibrate` first")
        timings: dict[str, float] = {}

        t0 = time.perf_counter()
        check_frame(image)
        frame_h, frame_w = image.shape[:2]
        self._guard_frame(frame_w, frame_h, recipe, bank)
        ox, oy, roi_h, roi_w = 0, 0, frame_h, frame_w
        if recipe.roi is not None:
            roi = recipe.roi
            if roi.x + roi.width > frame_w or roi.y + roi.height > frame_h:
                raise BadFrameError(
                    f"ROI x={roi.x} y={roi.y} {roi.width}x{roi.height} does not fit the {frame_w}x{frame_h} frame"
                )
            ox, oy, roi_h, roi_w = roi.x, roi.y, roi.height, roi.width
            image = image[oy : oy + roi_h, ox : ox + roi_w]
        rgb = to_rgb8(image)
        plan = plan_tiles((roi_h, roi_w), recipe.tiling, self.expert.patch_size)
        tiles = cut_tiles(rgb, plan)
        timings["preprocess"] = _ms(t0)

        t1 = time.perf_counter()
        distances, features = self._run_tiles(tiles, recipe.tiling.max_batch)
        require_finite(distances, "expert patch distances")  # e.g. an FP16 overflow: fail-safe, never a silent OK
        require_finite(features, "expert patch features")
        timings["expert"] = _ms(t1)

        t2 = time.perf_counter()
        centers, valid = patch_centers(plan)
        positions = patch_positions(plan)
        flat = distances.reshape(-1)
        if recipe.bank.foreground_mask:  # per image, AnomalyDINO's mask: background patches get distance 0
            on_part = foreground_positions(positions.per_position(features.reshape(-1, features.shape[-1])), positions)
            flat = np.where(positions.to_patches(on_part), flat, 0.0).astype(np.float32)
            distances = flat.reshape(distances.shape)
        score = image_score(positions.per_position(flat))  # each place of the ROI once (tile overlaps averaged)
        roi_map = smooth_map(stitch_distances(distances, plan))
        timings["map"] = _ms(t2)

        t3 = time.perf_counter()
        threshold = recipe.thresholds.pixel
        regions = extract_regions(roi_map, threshold, (ox, oy), recipe.pixel_pitch_mm)
        regions = with_features(regions, roi_map, threshold, (ox, oy), centers, valid,
                                features.reshape(-1, features.shape[-1]))
        verdict = decide(score, regions, recipe, prototypes)
        timings["regions"] = _ms(t3)

        if recipe.roi is None:
            full_map = roi_map
        else:
            full_map = np.zeros((frame_h, frame_w), dtype=np.float32)
            full_map[oy : oy + roi_h, ox : ox + roi_w] = roi_map
        timings["total"] = _ms(t0)
        return InspectionResult(
            score=score,
            verdict=verdict.verdict,
            reason=verdict.reason,
            regions=list(verdict.regions),
            anomaly_map=full_map,
            timings=timings,
            patch_features=features,
        )
