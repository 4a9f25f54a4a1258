"""The protocol every frame source implements, and the registry that picks one by ``source.type``."""

from __future__ import annotations

from typing import Callable, Iterator, Protocol

from edge.types import Frame


class FrameSource(Protocol):
    """An iterable of frames that can be closed (releasing the camera or files)."""

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


_REGISTRY: dict[str, Callable[[object], FrameSource]] = {}


def register_source(type_name: str) -> Callable:
    """Class decorator: make a source available under ``source.type: <type_name>``."""

    def wrap(factory: Callable[[object], FrameSource]) -> Callable[[object], FrameSource]:
        _REGISTRY[type_name] = factory
        return factory

    return wrap


def source_factory(type_name: str) -> Callable[[object], FrameSource]:
    return _REGISTRY[type_name]
