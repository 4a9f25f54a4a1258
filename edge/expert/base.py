"""The small protocol every region-expert backend implements.

A backend runs the compiled graph ``uint8 RGB NHWC tiles + bank -> patch
distances + L2-normalised patch features``; everything around it (tiling,
scoring, regions) is shared backend-independent code.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Expert(Protocol):
    """A loaded region expert with a bank installed."""

    resolution: int  # square model input size in pixels
    patch_size: int  # 14 for DINOv2
    feature_dim: int  # D
    manifest: dict[str, Any]  # manifest.json of the exported graph
    providers: list[str]  # what actually runs (e.g. ['CPUExecutionProvider'])

    def set_bank(self, bank: np.ndarray) -> None:
        """Install the memory bank, float32 [N, D], L2-normalised rows (upload once per calibration)."""

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [B, R, R, 3] RGB -> (distances float32 [B, R/14, R/14], features float32 [B, R/14, R/14, D])."""

    def close(self) -> None:
        """Release sessions / device buffers."""
