"""Frame sources (synthetic, folder, GenICam camera), selected by the recipe's ``source.type``.

Modules are imported on demand so that a box without a camera never imports
harvesters.
"""

from __future__ import annotations

import importlib

from edge.sources.base import FrameSource, register_source, source_factory

_MODULES = {"synthetic": "edge.sources.synthetic", "folder": "edge.sources.folder", "genicam": "edge.sources.genicam"}


def open_source(cfg: object) -> FrameSource:
    """Open the source described by a source config (``cfg.type`` picks the implementation)."""
    type_name = getattr(cfg, "type")
    importlib.import_module(_MODULES[type_name])
    return source_factory(type_name)(cfg)


__all__ = ["FrameSource", "open_source", "register_source"]
