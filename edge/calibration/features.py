"""An expert wrapper that remembers patch features, so k-fold banks cost no extra expert runs.

Bank building only needs the features of the good images, and those do not
depend on the bank. k-fold calibration builds k+1 banks from the same images;
with this cache the expert runs once per image for all of them (memory:
about tiles x patches x D x 4 bytes per image, e.g. 0.4 MB for ViT-S at 224).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from edge.bank import placeholder_bank
from edge.types import Expert


class FeatureCachingExpert:
    """Looks like an :class:`Expert` to ``build_bank``; runs the real expert once per distinct tile batch."""

    def __init__(self, expert: Expert):
        self._expert = expert
        self.resolution = expert.resolution
        self.patch_size = expert.patch_size
        self.feature_dim = expert.feature_dim
        self.manifest: dict[str, Any] = expert.manifest
        self.providers = expert.providers
        self._cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self.runs = 0

    def set_bank(self, bank: np.ndarray) -> None:
        """Ignored: features do not depend on the bank (the real expert's bank is left alone)."""

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = hashlib.blake2b(tiles.tobytes(), digest_size=16).digest() + repr(tiles.shape).encode()
        hit = self._cache.get(key)
        if hit is None:
            # any bank gives the same features; install one if the expert has none yet
            if self.runs == 0:
                self._expert.set_bank(placeholder_bank(self.feature_dim))
            hit = self._expert.run(tiles)
            self._cache[key] = hit
            self.runs += 1
        return hit

    def close(self) -> None:
        self._cache.clear()
