"""Frame sources (synthetic, folder, GenICam camera), selected by the recipe's ``source.type``.

The source config class names its implementation (``implementation = "module:Class"``
in :mod:`edge.config.source`); the module is imported only when used, so a box
without a camera never imports harvesters.
"""

from __future__ import annotations

from edge.config.source import SourceConfigBase
from edge.plugins import implementation_of
from edge.sources.base import FrameSource


def open_source(cfg: SourceConfigBase) -> FrameSource:
    """Open the source described by a source config (its ``implementation`` is the class)."""
    source: FrameSource = implementation_of(cfg)(cfg)
    return source


__all__ = ["FrameSource", "open_source"]
