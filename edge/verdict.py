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

import dataclasses
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.config.decision import ZoneConfig
from edge.config.recipe import Recipe
from edge.errors import NonFiniteError
from edge.types import Region, Verdict


class TypeMatcher(Protocol):
    """Nearest defect types of a region feature (:class:`edge.prototypes.Prototypes` implements it)."""

    def match(self, feature: np.ndarray | None, k: int = 3) -> list[dict[str, object]]: ...


@dataclass(frozen=True)
class Judgement:
    """The verdict with its reason, and the regions as judged (``rejects``, ``zone``, ``defect_type`` set).

    The regions are new objects: :func:`decide` never changes the ones it is given.
    """

    verdict: Verdict
    reason: str
    regions: tuple[Region, ...] = ()


@dataclass(frozen=True)
class RegionRule:
    """Why one region rejects or not (kept for the reason text)."""

    rejects: bool
    zone: str | None
    min_area_px: int
    why: str
    defect_type: str | None = None


def zone_of(region: Region, zones: list[ZoneConfig]) -> ZoneConfig | None:
    """The first zone whose polygon contains the region's centroid (frame pixels), or None."""
    cx, cy = region.centroid
    for zone in zones:
        if zone.contains(cx, cy):
            return zone
    return None


def region_defect_type(region: Region, recipe: Recipe, prototypes: TypeMatcher | None = None) -> str | None:
    """The region's defect type: already set, or its nearest prototype when always_reject needs it."""
    known = region.defect_type
    if known is not None or not recipe.rules.always_reject or prototypes is None or region.feature is None:
        return known
    best = prototypes.match(region.feature, k=1)
    if best and float(best[0]["similarity"]) >= recipe.rules.type_min_similarity:  # type: ignore[arg-type]
        return str(best[0]["type"])
    return None


def judge_region(region: Region, recipe: Recipe, prototypes: TypeMatcher | None = None) -> RegionRule:
    """Apply the rules to one region (see the module docstring for the order)."""
    rules = recipe.rules
    zone = zone_of(region, list(rules.zones)) if rules.zones else None
    zone_name = zone.name if zone is not None else None
    defect_type = region_defect_type(region, recipe, prototypes)
    if defect_type is not None and defect_type in rules.always_reject:
        return RegionRule(True, zone_name, 0, f"{defect_type} always rejects", defect_type)
    if zone is not None and zone.ignore:
        return RegionRule(False, zone_name, 0, f"zone {zone.name} is ignored", defect_type)
    min_px = zone.min_area_px if zone is not None and zone.min_area_px is not None else rules.min_area_px
    min_mm2 = zone.min_area_mm2 if zone is not None and zone.min_area_mm2 is not None else rules.min_area_mm2
    if region.area_px < min_px:
        return RegionRule(False, zone_name, min_px, f"{region.area_px} px < {min_px} px", defect_type)
    if min_mm2 is not None and (region.area_mm2 or 0.0) < min_mm2:
        return RegionRule(False, zone_name, min_px, f"{region.area_mm2 or 0.0:.3g} mm² < {min_mm2:g} mm²", defect_type)
    if zone is not None and zone.pixel is not None and region.peak < zone.pixel:
        return RegionRule(False, zone_name, min_px, f"peak {region.peak:.3f} < zone {zone.name} {zone.pixel:g}", defect_type)
    why = f"{region.area_px} px >= {min_px} px"
    if min_mm2 is not None:
        why += f", {region.area_mm2 or 0.0:.3g} mm² >= {min_mm2:g} mm²"
    return RegionRule(True, zone_name, min_px, why, defect_type)


def judged_regions(regions: list[Region], recipe: Recipe,
                   prototypes: TypeMatcher | None = None) -> list[tuple[Region, RegionRule]]:
    """Each region as judged (a copy with ``rejects``, ``defect_type`` and, with zones, ``zone`` set) and its rule."""
    out = []
    for region in regions:
        rule = judge_region(region, recipe, prototypes)
        changes: dict[str, object] = {"rejects": rule.rejects, "defect_type": rule.defect_type}
        if recipe.rules.zones:
            changes["zone"] = rule.zone  # shown in results when zones exist
        out.append((dataclasses.replace(region, **changes), rule))  # type: ignore[arg-type]
    return out


def decide(score: float, regions: list[Region], recipe: Recipe, prototypes: TypeMatcher | None = None) -> Judgement:
    """NG when the image score reaches its threshold or any region rejects; otherwise OK.

    Pure: the given regions are not changed (the judged copies are in the result) and
    nothing is read from disk; ``prototypes`` (held by the inspector) name the regions'
    defect types when ``rules.always_reject`` needs them.
    A NaN/inf score raises :class:`NonFiniteError` (``nan >= threshold`` is false, so
    it would otherwise pass the part); the lane answers with the fail-safe verdict.
    """
    if not math.isfinite(score):
        raise NonFiniteError(f"image score is {score}")
    judged = judged_regions(regions, recipe, prototypes)
    out = tuple(region for region, _ in judged)
    threshold = recipe.thresholds.image_score
    reasons = []
    if score >= threshold:
        reasons.append(f"image score {score:.3f} >= {threshold:.3f}")
    rejecting = [(r, j) for r, j in judged if j.rejects]
    if rejecting:
        top, rule = rejecting[0]
        more = f" (+{len(rejecting) - 1} more)" if len(rejecting) > 1 else ""
        where = f" in zone {rule.zone}" if rule.zone else ""
        reasons.append(f"region {top.location}{where} {rule.why}{more}")
    if reasons:
        return Judgement(Verdict.NG, "; ".join(reasons), out)
    if recipe.rules.zones or recipe.rules.always_reject:
        return Judgement(Verdict.OK, f"image score {score:.3f} < {threshold:.3f}, no rejecting region", out)
    return Judgement(Verdict.OK, f"image score {score:.3f} < {threshold:.3f}, no region >= {recipe.rules.min_area_px} px",
                     out)
