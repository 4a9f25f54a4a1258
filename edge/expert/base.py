"""The small protocol every region-expert backend implements (defined in :mod:`edge.types`, with the other core types).

A backend runs the compiled graph ``uint8 RGB NHWC tiles + bank -> patch
distances + L2-normalised patch features``; everything around it (tiling,
scoring, regions) is shared backend-independent code.
"""

from __future__ import annotations

from edge.types import Expert

__all__ = ["Expert"]
