"""Thresholds and reject rules that turn an anomaly map into OK/NG."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict, field_validator, model_validator

from edge.config.base import StrictModel, rule_error

VerdictName = Literal["OK", "NG"]  # in the recipe; edge.types.Verdict at run time
Point = Annotated[tuple[Annotated[float, Strict()], Annotated[float, Strict()]], Strict(False)]
"""[x, y]: a YAML list (lax for the pair), strict numbers inside."""


class ThresholdsConfig(StrictModel):
    """Score thresholds; `iad-edge calibrate` proposes both from good parts."""

    image_score: float = Field(0.35, ge=0.0, le=2.0, description="Image score at or above which a part is NG (cosine distance, 0..2).")
    pixel: float = Field(0.35, ge=0.0, le=2.0, description="Anomaly-map value at or above which a pixel belongs to a defect region.")


def _segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """True when segment p1-p2 and q1-q2 properly cross or touch (orientation test)."""

    def orient(a: Point, b: Point, c: Point) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    def on_segment(a: Point, b: Point, c: Point) -> bool:
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and d1 and d2 and ((d3 > 0) != (d4 > 0)) and d3 and d4:
        return True
    return (
        (d1 == 0 and on_segment(q1, q2, p1))
        or (d2 == 0 and on_segment(q1, q2, p2))
        or (d3 == 0 and on_segment(p1, p2, q1))
        or (d4 == 0 and on_segment(p1, p2, q2))
    )


def polygon_self_intersection(points: list[Point]) -> tuple[int, int] | None:
    """Indices (i, j) of two non-adjacent edges that cross, or None for a simple polygon.

    Edge i runs from point i to point i+1 (the last edge closes the polygon).
    A crossing polygon (a 'bow tie') has no clear inside, so a zone drawn that
    way would select regions nobody intended.
    """
    n = len(points)
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbours share a point
            if _segments_cross(points[i], points[(i + 1) % n], points[j], points[(j + 1) % n]):
                return i, j
    return None


def polygon_area(points: list[Point]) -> float:
    """Absolute area (shoelace formula) in square pixels."""
    total = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        total += x0 * y1 - x1 * y0
    return abs(total) / 2.0


def point_in_polygon(x: float, y: float, points: list[Point]) -> bool:
    """Even-odd ray casting: is (x, y) inside the polygon?"""
    inside = False
    n = len(points)
    for i in range(n):
        x0, y0 = points[i]
        x1, y1 = points[(i + 1) % n]
        if (y0 > y) != (y1 > y):
            x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
            if x < x_cross:
                inside = not inside
    return inside


class ZoneConfig(StrictModel):
    """A part area with its own reject rules (e.g. a sealing face stricter, a label area ignored).

    A region belongs to the first zone (in list order) that contains its centroid;
    regions outside every zone follow the general `rules`.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Zone name, shown in verdict reasons and results.")
    polygon: list[Point] = Field(
        description="Corner points [x, y] in frame pixels (at least 3, edges must not cross); the polygon closes itself."
    )
    pixel: float | None = Field(
        None, ge=0.0, le=2.0,
        description="A region in this zone rejects only when its peak reaches this value; null = thresholds.pixel. "
        "Must not be below thresholds.pixel (regions are cut at thresholds.pixel).",
    )
    min_area_px: int | None = Field(None, ge=0, description="Minimum region area in pixels in this zone; null = rules.min_area_px.")
    min_area_mm2: float | None = Field(
        None, ge=0, description="Minimum region area in mm² in this zone (needs pixel_pitch_mm); null = rules.min_area_mm2."
    )
    ignore: bool = Field(False, description="Regions in this zone never reject (unless their defect type is in rules.always_reject).")

    @field_validator("polygon")
    @classmethod
    def _simple_polygon(cls, points: list[Point]) -> list[Point]:
        if len(points) < 3:
            raise ValueError(f"a zone polygon needs at least 3 points [x, y] (got {len(points)})")
        for x, y in points:
            if x < 0 or y < 0:
                raise ValueError(f"point [{x:g}, {y:g}] is outside the frame: coordinates are frame pixels, 0 or more")
        crossing = polygon_self_intersection(points)
        if crossing is not None:
            i, j = crossing
            raise ValueError(
                f"edges cross (edge {i + 1}→{(i + 1) % len(points) + 1} and edge {j + 1}→{(j + 1) % len(points) + 1}); "
                "list the corners in order around the zone"
            )
        if polygon_area(points) == 0:
            raise ValueError("the points lie on one line (zero area)")
        return points

    @model_validator(mode="after")
    def _ignore_has_no_thresholds(self) -> ZoneConfig:
        if self.ignore:
            for key in ("pixel", "min_area_px", "min_area_mm2"):
                if getattr(self, key) is not None:
                    raise rule_error(key, f"an ignored zone has no thresholds: remove '{key}' or set ignore: false")
        return self

    def contains(self, x: float, y: float) -> bool:
        """Is the frame point (x, y) inside this zone?"""
        return point_in_polygon(x, y, list(self.polygon))


class RulesConfig(StrictModel):
    """Which regions reject a part."""

    min_area_px: int = Field(16, ge=0, description="A region smaller than this many pixels does not reject the part.")
    min_area_mm2: float | None = Field(
        None, ge=0, description="Same as min_area_px in mm² (needs pixel_pitch_mm); both apply when both are given."
    )
    zones: list[ZoneConfig] = Field(
        default_factory=list, description="Part areas with their own rules; the first zone containing a region's centroid applies."
    )
    always_reject: list[str] = Field(
        default_factory=list,
        description="Defect types (names of the prototypes in assistant.prototypes) that reject at any size, in any zone.",
    )
    type_min_similarity: float = Field(
        0.8, ge=-1.0, le=1.0,
        description="A region is given the defect type of its nearest prototype only at or above this cosine similarity "
        "(used by always_reject).",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> RulesConfig:
        seen: dict[str, int] = {}
        for index, zone in enumerate(self.zones):
            if zone.name in seen:
                raise rule_error(
                    f"zones.{index}.name", f"zone name '{zone.name}' is already used by zone {seen[zone.name] + 1}; names must be unique"
                )
            seen[zone.name] = index
        duplicates = sorted({t for t in self.always_reject if self.always_reject.count(t) > 1})
        if duplicates:
            raise rule_error("always_reject", f"defect type '{duplicates[0]}' is listed twice")
        return self


class DecisionConfig(StrictModel):
    """Deadline and fail-safe behaviour of the real-time lane."""

    window_ms: int = Field(150, ge=1, le=60000, description="A decision later than this after the trigger is never delivered; the PLC rejects.")
    queue_size: int = Field(
        4, ge=1, le=256,
        description="Frames from a camera waiting for inspection; a frame arriving at a full queue gets the fail-safe verdict at once.",
    )
    fail_safe: VerdictName = Field("NG", description="Verdict published when the lane cannot decide in time or a stage fails.")
