"""Human-readable picture of an inspection: heat map blended over the frame, region boxes, verdict."""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from edge.imageio import to_bgr8
from edge.types import Region


def render_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    regions: list[Region],
    pixel_threshold: float,
    verdict: Optional[str] = None,
    score: Optional[float] = None,
) -> np.ndarray:
    """BGR uint8 picture: JET heat map where the map is ≥ half the pixel threshold, boxes for regions."""
    bgr = to_bgr8(image)
    scale = max(pixel_threshold * 2.0, 1e-6)
    heat = cv2.applyColorMap(np.clip(anomaly_map / scale * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = np.clip((anomaly_map - 0.5 * pixel_threshold) / max(pixel_threshold, 1e-6), 0.0, 0.6)[..., None]
    out = (bgr.astype(np.float32) * (1.0 - alpha) + heat.astype(np.float32) * alpha).astype(np.uint8)
    thickness = max(1, round(min(out.shape[:2]) / 300))
    for region in regions:
        x0, y0, x1, y1 = region.bbox
        colour = (0, 0, 255) if region.rejects else (0, 200, 255)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)
        cv2.putText(out, f"{region.peak:.2f}", (x0, max(12, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    if verdict is not None:
        label = verdict if score is None else f"{verdict} {score:.3f}"
        colour = (0, 0, 255) if verdict == "NG" else (0, 180, 0)
        cv2.putText(out, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2, cv2.LINE_AA)
    return out
