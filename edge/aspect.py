"""Aspect-ratio check: ``tiling.mode: resize`` squashes an elongated frame into one square input.

A 500x1260 commutator image resized to 224x224 is stretched 2.5x along one
axis; on such a set `eval` measured AUPRO 53.6 with ``resize`` against 86.8 with
``tile`` (pixel AUROC 82.3 vs 94.9, docs/recipes.md). ``tile`` keeps the aspect
ratio (square tiles at native resolution), as AnomalyDINO does. `check` and
`calibrate` call :func:`aspect_warning` and propose ``tile`` beyond the tolerance.
"""

from __future__ import annotations

from typing import Any

# width/height (or height/width) above which resize distorts enough to matter; 4:3 and 3:2 cameras stay quiet
ASPECT_TOLERANCE = 1.5


def aspect_warning(width: int, height: int, tiling: Any, what: str = "frames") -> str | None:
    """One warning line when resize mode distorts a ``width`` x ``height`` image beyond the tolerance, else None."""
    if tiling.mode != "resize" or width <= 0 or height <= 0:
        return None
    ratio = max(width / height, height / width)
    if ratio <= ASPECT_TOLERANCE:
        return None
    r = tiling.resolution
    return (f"tiling.mode resize squashes the {width}x{height} {what} into {r}x{r} (aspect ratio {ratio:.2f}:1, "
            f"one axis stretched {ratio:.1f}x; tolerance {ASPECT_TOLERANCE:g}:1): small defects lose detail. Use "
            f"`tiling: {{mode: tile}}` (square tiles at native resolution keep the aspect ratio) and re-run calibrate; "
            "see docs/recipes.md, 'Choosing the tiling'")


def inspected_size(recipe: Any, frame_size: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """(width, height) the expert sees: the ROI when set, else the frame size (when known)."""
    if recipe.roi is not None:
        return recipe.roi.width, recipe.roi.height
    return frame_size if frame_size is not None else recipe.frame_size()
