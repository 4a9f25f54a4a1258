"""Atomic file writes: a reader (or a crash) never sees half a file.

Every artifact the appliance writes for others to read — banks, prototypes,
results, overlays, generated recipes — goes through here: data is written to
a temporary file in the same folder, flushed to disk, then renamed over the
target with ``os.replace`` (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

PathLike = str | os.PathLike[str]

FILE_MODE = 0o640


@contextlib.contextmanager
def atomic_writer(path: PathLike, fsync: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; the service user reads these through its group (docs/deploy.md)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: PathLike, data: bytes, fsync: bool = True) -> None:
    with atomic_writer(path, fsync) as handle:
        handle.write(data)


def write_text_atomic(path: PathLike, text: str, fsync: bool = True) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), fsync)
