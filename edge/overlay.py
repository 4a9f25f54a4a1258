"""Human-readable picture of an inspection: labelled heat map, region boxes, colour scale.

Layout (BGR uint8): a banner on top with the verdict, score and threshold; the
frame with the anomaly map blended over it and the regions boxed and labelled;
a colour scale on the right (0, the pixel threshold, twice the threshold). The
picture is scaled so that its short side is at least ``min_side`` pixels and
its long side at most ``max_side``, so labels stay readable on small parts and
thumbnails of tall or wide frames keep their shape. Text sizes follow the
picture size. Colours: NG and rejecting regions red, OK blue, non-rejecting
regions orange — never green, which the evaluation uses for the ground truth.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.imageio import to_bgr8
from edge.types import Region

NG_COLOUR = (40, 40, 230)  # BGR red
OK_COLOUR = (230, 150, 30)  # BGR blue
REGION_COLOUR = (0, 140, 255)  # BGR orange: a region below the reject rule
TEXT_COLOUR = (255, 255, 255)
BANNER_COLOUR = (40, 40, 40)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour: tuple[int, int, int], thick: int) -> None:
    """Text with a dark outline: readable on any heat-map colour."""
    cv2.putText(img, text, org, FONT, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, colour, thick, cv2.LINE_AA)


def _fit_scale(height: int, width: int, min_side: int, max_side: int) -> float:
    scale = 1.0
    if min(height, width) < min_side:
        scale = min_side / min(height, width)
    if max(height, width) * scale > max_side:
        scale = max_side / max(height, width)
    return scale


def heat_colours(anomaly_map: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """JET colours of the map on a fixed scale [0, 2 x pixel threshold] (the scale drawn beside it)."""
    scale = max(pixel_threshold * 2.0, 1e-6)
    return cv2.applyColorMap(np.clip(anomaly_map / scale * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)


def _colour_bar(height: int, pixel_threshold: float, font_scale: float) -> np.ndarray:
    """Vertical JET scale from 2 x threshold (top) to 0 (bottom), ticks labelled with their map values."""
    thick = max(1, round(font_scale * 2))
    (label_w, label_h), _ = cv2.getTextSize(f"{2 * pixel_threshold:.3f}", FONT, font_scale, thick)
    bar_w = max(12, label_h + 6)
    pad = label_h // 2 + 4
    panel = np.full((height, bar_w + label_w + 14, 3), 255, np.uint8)
    usable = max(2, height - 2 * pad)
    ramp = np.linspace(255, 0, usable).astype(np.uint8)[:, None].repeat(bar_w, axis=1)
    panel[pad : pad + usable, 4 : 4 + bar_w] = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)
    for value, label in ((2 * pixel_threshold, f"{2 * pixel_threshold:.3f}"), (pixel_threshold, f"{pixel_threshold:.3f}"),
                         (0.0, "0")):
        y = pad + round((1.0 - value / max(2 * pixel_threshold, 1e-9)) * (usable - 1))
        cv2.line(panel, (2, y), (bar_w + 8, y), (0, 0, 0), 1)
        cv2.putText(panel, label, (bar_w + 10, min(height - 2, y + label_h // 2)), FONT, font_scale, (0, 0, 0), thick,
                    cv2.LINE_AA)
    return panel


def render_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    regions: list[Region],
    pixel_threshold: float,
    verdict: str | None = None,
    score: float | None = None,
    image_threshold: float | None = None,
    title: str | None = None,
    min_side: int = 320,
    max_side: int = 1600,
    colour_bar: bool = True,
) -> np.ndarray:
    """BGR uint8 picture: banner (title, verdict, score vs threshold), heat map + labelled regions, colour scale."""
    bgr = to_bgr8(image)
    h, w = bgr.shape[:2]
    heat = heat_colours(anomaly_map, pixel_threshold)
    # visible everywhere (faintly where the map is low), strong at and above the pixel threshold
    level = np.clip(anomaly_map / max(pixel_threshold, 1e-6), 0.0, 1.0)[..., None]
    alpha = 0.25 + 0.35 * level
    out: np.ndarray = (bgr.astype(np.float32) * (1.0 - alpha) + heat.astype(np.float32) * alpha).astype(np.uint8)
    s = _fit_scale(h, w, min_side, max_side)
    if s != 1.0:
        out = cv2.resize(out, (max(1, round(w * s)), max(1, round(h * s))),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
    oh, ow = out.shape[:2]
    font_scale = max(0.45, min(1.2, min(oh, ow) / 600))
    thick = max(1, round(font_scale * 2))
    box = max(2, round(min(oh, ow) / 200))
    for region in regions:
        x0, y0, x1, y1 = (round(v * s) for v in region.bbox)
        colour = NG_COLOUR if region.rejects else REGION_COLOUR
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, box)
        label = f"{region.peak:.2f}" + (f" {region.defect_type}" if getattr(region, "defect_type", None) else "")
        (tw, th), _ = cv2.getTextSize(label, FONT, font_scale, thick)
        ty = y0 - 4 if y0 - 4 - th >= 0 else min(oh - 2, y1 + th + 4)
        tx = min(max(0, x0), max(0, ow - tw - 2))
        _text(out, label, (tx, ty), font_scale, colour, thick)
    if colour_bar:
        out = np.hstack([out, _colour_bar(oh, pixel_threshold, font_scale * 0.8)])
    parts = []
    if title:
        parts.append((title, TEXT_COLOUR))
    if verdict is not None:
        parts.append((verdict, NG_COLOUR if verdict == "NG" else OK_COLOUR))
    if score is not None:
        digits = 4
        while image_threshold is not None and digits < 6 and f"{score:.{digits}f}" == f"{image_threshold:.{digits}f}":
            digits += 1  # show the digit where score and threshold differ
        text = f"score {score:.{digits}f}"
        if image_threshold is not None:
            text += f" {'>=' if score >= image_threshold else '<'} threshold {image_threshold:.{digits}f}"
        parts.append((text, TEXT_COLOUR))
    if not parts:
        return out
    (_, th), base = cv2.getTextSize("Ag", FONT, font_scale, thick)
    banner = np.full((th + base + 12, out.shape[1], 3), BANNER_COLOUR, np.uint8)
    x = 6
    for text, colour in parts:
        cv2.putText(banner, text, (x, th + 6), FONT, font_scale, colour, thick + (1 if text in ("OK", "NG") else 0),
                    cv2.LINE_AA)
        x += cv2.getTextSize(text, FONT, font_scale, thick)[0][0] + 14
    if x > banner.shape[1]:  # too long for one line: shrink the banner text to fit
        shrink = banner.shape[1] / x
        banner[:] = BANNER_COLOUR
        x = 6
        for text, colour in parts:
            cv2.putText(banner, text, (x, th + 6), FONT, font_scale * shrink, colour, max(1, thick - 1), cv2.LINE_AA)
            x += cv2.getTextSize(text, FONT, font_scale * shrink, max(1, thick - 1))[0][0] + round(14 * shrink)
    return np.vstack([banner, out])
