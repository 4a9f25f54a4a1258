"""What a memory bank was built for, and whether it fits the recipe that loads it.

A bank is only meaningful for the expert, tiling and part it was calibrated
on: patches cut at another tiling, another ROI or from another product give
distances that look like numbers but mean nothing. ``calibrate`` records the
build conditions in the bank (:func:`build_record`); every load compares them
with the running recipe (:func:`compare`) by fixed rules:

- **refuse** (the bank cannot give meaningful distances): another expert
  model, another tiling mode or resolution, in ``resize`` mode another ROI size;
- **warn** (it works, but a person should know): another tile overlap, ROI
  offset, ROI added or removed, another line/station, a recipe frame size
  outside the range the bank was calibrated on, a bank without these records.

The same record gives the frame guard its default: a frame much larger than
anything calibrated is refused before it is tiled (:func:`frame_limit`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# default frame guard: this many times the largest calibrated frame (area), never below FLOOR_MP
DEFAULT_LIMIT_FACTOR = 4.0
FLOOR_MP = 1.0
UNKNOWN_BANK_LIMIT_MP = 40.0


def build_record(recipe: Any, frame_sizes: Iterable[tuple[int, int]]) -> dict[str, Any]:
    """Metadata of the build: tiling, ROI, (width, height) range of the good frames, line/station, recipe file."""
    sizes = list(frame_sizes)
    roi = recipe.roi
    record: dict[str, Any] = {
        "tiling_overlap": float(recipe.tiling.overlap),
        "roi": [roi.x, roi.y, roi.width, roi.height] if roi is not None else None,
        "line": recipe.line,
        "station": recipe.station,
        "recipe": recipe.source_path.name if getattr(recipe, "source_path", None) else None,
    }
    if sizes:
        record["frame_min"] = [min(w for w, _ in sizes), min(h for _, h in sizes)]
        record["frame_max"] = [max(w for w, _ in sizes), max(h for _, h in sizes)]
    return record


@dataclass
class Fit:
    """Result of comparing a bank's record with a recipe: ``errors`` refuse the bank, ``warnings`` do not."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _roi_text(roi: list[int] | None) -> str:
    return "none (whole frame)" if not roi else f"x={roi[0]} y={roi[1]} {roi[2]}x{roi[3]}"


def compare(meta: dict[str, Any], recipe: Any, expert_sha256: str | None = None) -> Fit:
    """Apply the refuse/warn rules of the module docstring; messages say what differs and what to do."""
    fit = Fit()
    rebuild = "rebuild it with `iad-edge calibrate RECIPE --good DIR`"
    if expert_sha256 and meta.get("expert_sha256") and meta["expert_sha256"] != expert_sha256:
        fit.errors.append(f"bank was built with another expert model (sha256 {str(meta['expert_sha256'])[:12]}, "
                          f"this one {expert_sha256[:12]}); {rebuild}")
    tiling = recipe.tiling
    if meta.get("tiling") is not None and meta["tiling"] != tiling.mode:
        fit.errors.append(f"bank was built with tiling.mode {meta['tiling']} but the recipe uses {tiling.mode}; "
                          f"{rebuild}, or set tiling.mode: {meta['tiling']}")
    if meta.get("resolution") is not None and int(meta["resolution"]) != tiling.resolution:
        fit.errors.append(f"bank was built at tiling.resolution {meta['resolution']} but the recipe uses "
                          f"{tiling.resolution}; {rebuild}")
    missing = [key for key in ("tiling_overlap", "frame_max", "line") if key not in meta]
    if missing:
        fit.warnings.append(f"bank has no record of {', '.join(missing)} (built by an older iad-edge), so they cannot be "
                            f"checked; {rebuild}")
        return fit
    if tiling.mode == "tile" and abs(float(meta["tiling_overlap"]) - tiling.overlap) > 1e-9:
        fit.warnings.append(f"bank was built with tiling.overlap {meta['tiling_overlap']:g}, the recipe uses "
                            f"{tiling.overlap:g}; scores shift slightly: {rebuild} to be exact")
    roi = recipe.roi
    now = [roi.x, roi.y, roi.width, roi.height] if roi is not None else None
    was = meta.get("roi")
    if was and now and was[2:] != now[2:]:
        message = (f"bank was built for ROI {_roi_text(was)} but the recipe's ROI is {_roi_text(now)}")
        if tiling.mode == "resize":
            fit.errors.append(f"{message}: in resize mode another ROI size changes the scale of every patch; {rebuild}")
        else:
            fit.warnings.append(f"{message}; {rebuild} if the part changed")
    elif bool(was) != bool(now) or (was and now and was[:2] != now[:2]):
        fit.warnings.append(f"bank was built for ROI {_roi_text(was)} but the recipe's ROI is {_roi_text(now)}; "
                            f"{rebuild} if the part changed")
    if (meta.get("line"), meta.get("station")) != (recipe.line, recipe.station):
        fit.warnings.append(f"bank was built for {meta.get('line')}/{meta.get('station')} but the recipe is "
                            f"{recipe.line}/{recipe.station}: is this the right product's bank?")
    size = recipe.frame_size()
    lo, hi = meta.get("frame_min"), meta.get("frame_max")
    if size is not None and lo and hi and not (lo[0] <= size[0] <= hi[0] and lo[1] <= size[1] <= hi[1]):
        fit.warnings.append(f"the recipe's frames are {size[0]}x{size[1]} but the bank was calibrated on "
                            f"{_range_text(meta)} frames; {rebuild} on frames of this camera")
    return fit


def _range_text(meta: dict[str, Any]) -> str:
    lo, hi = meta.get("frame_min"), meta.get("frame_max")
    if not lo or not hi:
        return "unknown"
    if lo == hi:
        return f"{lo[0]}x{lo[1]}"
    return f"{lo[0]}x{lo[1]} to {hi[0]}x{hi[1]}"


def describe(meta: dict[str, Any]) -> str:
    """One line for `check`: what the bank was built for."""
    parts = [f"{meta.get('patches', '?')} patches from {meta.get('images', '?')} images"]
    if meta.get("frame_max"):
        parts.append(f"frames {_range_text(meta)}")
    parts.append(f"tiling {meta.get('tiling', '?')} at {meta.get('resolution', '?')} px"
                 + (f" overlap {meta['tiling_overlap']:g}" if meta.get("tiling") == "tile" and "tiling_overlap" in meta else ""))
    if "roi" in meta:
        parts.append(f"ROI {_roi_text(meta.get('roi'))}")
    if meta.get("line"):
        parts.append(f"{meta['line']}/{meta.get('station')}")
    if meta.get("created_at"):
        parts.append(f"built {meta['created_at']}")
    return ", ".join(parts)


def frame_limit(recipe: Any, meta: dict[str, Any] | None) -> tuple[float, str]:
    """(largest frame in megapixels, where that limit comes from) for the frame guard."""
    if recipe.tiling.max_megapixels is not None:
        return float(recipe.tiling.max_megapixels), "tiling.max_megapixels"
    hi = (meta or {}).get("frame_max")
    if hi:
        calibrated = hi[0] * hi[1] / 1e6
        limit = max(FLOOR_MP, DEFAULT_LIMIT_FACTOR * calibrated)
        return limit, (f"default: {DEFAULT_LIMIT_FACTOR:g}x the {hi[0]}x{hi[1]} frames the bank was calibrated on; "
                       "set tiling.max_megapixels to change it")
    return UNKNOWN_BANK_LIMIT_MP, "default for a bank without a frame-size record; set tiling.max_megapixels"
