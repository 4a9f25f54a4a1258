"""Find the class a config section names: the one registry mechanism for sources and expert backends.

Every source config (``edge/config/source.py``) and expert config
(``edge/config/expert.py``) carries ``implementation = "module:Class"``. The
module is imported only when that section is used, so a box without a camera
never imports harvesters and a CPU box never imports TensorRT.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def implementation_of(cfg: Any) -> Callable[[Any], Any]:
    """The class named by ``type(cfg).implementation`` ("package.module:Class"), imported now."""
    spec = getattr(type(cfg), "implementation", None)
    if not isinstance(spec, str) or ":" not in spec:
        raise TypeError(f"{type(cfg).__name__} names no implementation (set implementation = 'module:Class')")
    module, _, name = spec.partition(":")
    factory: Callable[[Any], Any] = getattr(importlib.import_module(module), name)
    return factory
