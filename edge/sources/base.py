"""The protocol every frame source implements (the recipe's source config names the class: edge/config/source.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from edge.types import Frame


class FrameSource(Protocol):
    """An iterable of frames that can be closed (releasing the camera or files)."""

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...
