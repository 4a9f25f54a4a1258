"""Region evidence: the measured facts about one NG region that ground its explanation.

The same dictionary goes into the prompt (as plain lines), into the published
explanation (so a reader can check what the model was told), and decides the
fields the model is *not* allowed to choose: ``location`` and ``bbox``.
"""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np

from edge.imageio import to_bgr8
from edge.types import Region

LOCATIONS = ("top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right")


def region_dict(region: Region | dict[str, Any]) -> dict[str, Any]:
    """A region as the JSON the lane publishes (``Region.to_json()``), from either form."""
    return region.to_json() if isinstance(region, Region) else dict(region)


def region_evidence(
    region: Region | dict[str, Any],
    index: int,
    image_score: float | None,
    thresholds: dict[str, float] | None = None,
    candidates: list[dict[str, Any]] | None = None,
    frame_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Everything measured about one region: bbox, 3×3 location, areas, peak/mean, image score, candidates."""
    r = region_dict(region)
    ev: dict[str, Any] = {
        "region": index,
        "bbox": [int(v) for v in r["bbox"]],
        "location": r["location"],
        "area_px": int(r["area_px"]),
        "area_mm2": r.get("area_mm2"),
        "peak": float(r["peak"]),
        "mean": float(r["mean"]),
        "image_score": None if image_score is None else round(float(image_score), 6),
        "candidates": list(candidates or []),
    }
    if thresholds:
        ev["thresholds"] = {k: float(v) for k, v in thresholds.items()}
    if frame_size:
        ev["frame_size"] = [int(frame_size[0]), int(frame_size[1])]  # width, height
    return ev


def evidence_lines(ev: dict[str, Any]) -> str:
    """The evidence as short lines for the prompt (numbers rounded: a small model reads them better)."""
    x0, y0, x1, y1 = ev["bbox"]
    lines = [
        f"Region {ev['region']}: location {ev['location']} of the part",
        f"bounding box x={x0}..{x1 - 1}, y={y0}..{y1 - 1} ({x1 - x0}x{y1 - y0} px)",
        f"area {ev['area_px']} px" + (f" = {ev['area_mm2']:.3g} mm2" if ev.get("area_mm2") is not None else ""),
        f"anomaly peak {ev['peak']:.3f}, mean {ev['mean']:.3f}"
        + (f" (pixel threshold {ev['thresholds']['pixel']:.3f})" if "pixel" in ev.get("thresholds", {}) else ""),
    ]
    if ev.get("image_score") is not None:
        lines.append(f"image score {ev['image_score']:.3f}"
                     + (f" (NG at {ev['thresholds']['image_score']:.3f})" if "image_score" in ev.get("thresholds", {}) else ""))
    if ev["candidates"]:
        lines.append("defect-type candidates from known examples: "
                     + ", ".join(f"{c['type']} (similarity {c['similarity']:.2f})" for c in ev["candidates"]))
    else:
        lines.append("defect-type candidates: none known (no prototypes); answer 'unknown' unless the evidence is clear")
    return "\n".join(lines)


def severity_from_evidence(ev: dict[str, Any]) -> str:
    """A rule-based severity (used when the model's answer is unusable): peak relative to the pixel threshold."""
    threshold = ev.get("thresholds", {}).get("pixel") or 0.0
    ratio = ev["peak"] / threshold if threshold > 0 else 1.0
    if ratio >= 2.0:
        return "critical"
    return "major" if ratio >= 1.4 else "minor"


def region_images(
    image: np.ndarray, anomaly_map: np.ndarray | None, region: Region | dict[str, Any],
    pixel_threshold: float, max_side: int = 448,
) -> list[np.ndarray]:
    """Crop of the region (with context) and the same crop with the anomaly mask overlaid, BGR uint8.

    For a VLM: the model sees the defect and exactly which pixels the expert
    flagged. The crop is the bbox grown by 50 % (at least 64 px), resized so
    the longer side is at most ``max_side``.
    """

    bgr = to_bgr8(image)
    h, w = bgr.shape[:2]
    x0, y0, x1, y1 = region_dict(region)["bbox"]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side_w, side_h = max(64, 1.5 * (x1 - x0)), max(64, 1.5 * (y1 - y0))
    a0, b0 = int(max(0, cx - side_w / 2)), int(max(0, cy - side_h / 2))
    a1, b1 = int(min(w, cx + side_w / 2)), int(min(h, cy + side_h / 2))
    crop = bgr[b0:b1, a0:a1]
    overlay = crop.copy()
    if anomaly_map is not None:
        m = anomaly_map[b0:b1, a0:a1] >= pixel_threshold
        red = np.zeros_like(crop)
        red[..., 2] = 255
        overlay[m] = (0.5 * crop[m] + 0.5 * red[m]).astype(np.uint8)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(overlay, contours, -1, (0, 0, 255), 1)
    scale = min(1.0, max_side / max(crop.shape[:2]))
    if scale < 1.0:
        size = (max(1, int(crop.shape[1] * scale)), max(1, int(crop.shape[0] * scale)))
        crop, overlay = cv2.resize(crop, size, interpolation=cv2.INTER_AREA), cv2.resize(overlay, size, interpolation=cv2.INTER_AREA)
    return [crop, overlay]


def png_data_uri(image: np.ndarray) -> str:
    """A data: URI (PNG) the llama-cpp-python multimodal chat handlers accept as an image_url."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("cannot encode image as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()
