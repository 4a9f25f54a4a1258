"""OK/NG from the image score and the regions, by the recipe's rules.

Every verdict carries a reason a person can read on the PLC side or in the
archive ("image score 0.41 >= 0.35", "region top-left 230 px >= 64 px").

Rules, per region (``recipe.rules``):

1. a region whose defect type is in ``always_reject`` rejects, whatever its
   size and zone (the type comes from ``region.defect_type``, set when
   defect-type prototypes matched the region);
2. otherwise the first zone (list order) whose polygon contains the region's
   centroid decides: an ``ignore`` zone never rejects; else the zone's
   ``min_area_px`` / ``min_area_mm2`` / ``pixel`` (peak) replace the general ones;
3. regions outside every zone follow ``min_area_px`` and ``min_area_mm2``
   (both must be reached when both are given).

The part is NG when the image score reaches ``thresholds.image_score`` or any
region rejects.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from edge.config.decision import ZoneConfig
from edge.config.recipe import Recipe
from edge.errors import NonFiniteError
from edge.types import Region


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "OK" | "NG"
    reason: str


@dataclass(frozen=True)
class RegionRule:
    """Why one region rejects or not (kept for the reason text)."""

    rejects: bool
    zone: Optional[str]
    min_area_px: int
    why: str


def zone_of(region: Region, zones: list[ZoneConfig]) -> Optional[ZoneConfig]:
    """The first zone whose polygon contains the region's centroid (frame pixels), or None."""
    cx, cy = region.centroid
    for zone in zones:
        if zone.contains(cx, cy):
            return zone
    return None


_PROTOTYPES: dict[Path, tuple[tuple[int, int], Any]] = {}
_PROTOTYPES_LOCK = threading.Lock()


def _prototypes(path: Path) -> Any:
    """Defect-type prototypes, loaded once per file version (reloaded when calibrate rewrites the file)."""
    from edge.prototypes import Prototypes

    st = path.stat() if path.is_file() else None
    stamp = (st.st_mtime_ns, st.st_size) if st else (-1, -1)
    with _PROTOTYPES_LOCK:
        cached = _PROTOTYPES.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, Prototypes.load(path))  # a missing file raises: the lane decides fail-safe, with the reason
            _PROTOTYPES[path] = cached
        return cached[1]


def region_defect_type(region: Region, recipe: Recipe) -> Optional[str]:
    """The region's defect type: already set, or its nearest prototype when always_reject needs it."""
    known = region.defect_type
    if known is not None or not recipe.rules.always_reject or recipe.assistant.prototypes is None:
        return known
    if region.feature is None:
        return None
    best = _prototypes(Path(recipe.assistant.prototypes)).match(region.feature, k=1)
    if best and best[0]["similarity"] >= recipe.rules.type_min_similarity:
        region.defect_type = best[0]["type"]  # shown in results
        return region.defect_type
    return None


def judge_region(region: Region, recipe: Recipe) -> RegionRule:
    """Apply the rules to one region (see the module docstring for the order)."""
    rules = recipe.rules
    zone = zone_of(region, list(rules.zones)) if rules.zones else None
    zone_name = zone.name if zone is not None else None
    defect_type = region_defect_type(region, recipe)
    if defect_type is not None and defect_type in rules.always_reject:
        return RegionRule(True, zone_name, 0, f"{defect_type} always rejects")
    if zone is not None and zone.ignore:
        return RegionRule(False, zone_name, 0, f"zone {zone.name} is ignored")
    min_px = zone.min_area_px if zone is not None and zone.min_area_px is not None else rules.min_area_px
    min_mm2 = zone.min_area_mm2 if zone is not None and zone.min_area_mm2 is not None else rules.min_area_mm2
    if region.area_px < min_px:
        return RegionRule(False, zone_name, min_px, f"{region.area_px} px < {min_px} px")
    if min_mm2 is not None and (region.area_mm2 or 0.0) < min_mm2:
        return RegionRule(False, zone_name, min_px, f"{region.area_mm2 or 0.0:.3g} mm² < {min_mm2:g} mm²")
    if zone is not None and zone.pixel is not None and region.peak < zone.pixel:
        return RegionRule(False, zone_name, min_px, f"peak {region.peak:.3f} < zone {zone.name} {zone.pixel:g}")
    why = f"{region.area_px} px >= {min_px} px"
    if min_mm2 is not None:
        why += f", {region.area_mm2 or 0.0:.3g} mm² >= {min_mm2:g} mm²"
    return RegionRule(True, zone_name, min_px, why)


def mark_rejecting_regions(regions: list[Region], recipe: Recipe) -> list[RegionRule]:
    """Set ``region.rejects`` (and ``region.zone`` when zones are configured); return each region's rule."""
    judged = []
    for region in regions:
        rule = judge_region(region, recipe)
        region.rejects = rule.rejects
        if recipe.rules.zones:
            region.zone = rule.zone  # shown in results when zones exist
        judged.append(rule)
    return judged


def decide(score: float, regions: list[Region], recipe: Recipe) -> Verdict:
    """NG when the image score reaches its threshold or any region rejects; otherwise OK.

    A NaN/inf score raises :class:`NonFiniteError` (``nan >= threshold`` is false, so
    it would otherwise pass the part); the lane answers with the fail-safe verdict.
    """
    if not math.isfinite(score):
        raise NonFiniteError(f"image score is {score}")
    judged = mark_rejecting_regions(regions, recipe)
    threshold = recipe.thresholds.image_score
    reasons = []
    if score >= threshold:
        reasons.append(f"image score {score:.3f} >= {threshold:.3f}")
    rejecting = [(r, j) for r, j in zip(regions, judged) if j.rejects]
    if rejecting:
        top, rule = rejecting[0]
        more = f" (+{len(rejecting) - 1} more)" if len(rejecting) > 1 else ""
        where = f" in zone {rule.zone}" if rule.zone else ""
        reasons.append(f"region {top.location}{where} {rule.why}{more}")
    if reasons:
        return Verdict("NG", "; ".join(reasons))
    if recipe.rules.zones or recipe.rules.always_reject:
        return Verdict("OK", f"image score {score:.3f} < {threshold:.3f}, no rejecting region")
    return Verdict("OK", f"image score {score:.3f} < {threshold:.3f}, no region >= {recipe.rules.min_area_px} px")
