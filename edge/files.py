"""Small file helpers every layer shares (the export step too): one of each.

* :data:`MANIFEST_NAME`: the manifest beside every exported model (expert, engine, GGUF).
* :func:`sha256_file`: streaming sha256 (constant memory for multi-GB engines and GGUFs).
* :func:`file_stamp` / :func:`stamps`: (mtime_ns, size) to notice a file rewritten in place
  (a bank or prototypes file re-calibrated, a recipe edited) with one ``stat()``.
* :func:`save_npz` / :func:`load_npz`: the ``.npz`` format of banks and prototypes: a JSON
  ``meta`` plus named float arrays, written atomically, read without pickle.

Depends only on the standard library, numpy and :mod:`edge.atomic`, so the pure core,
the runtime and ``export/`` can all import it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic import atomic_writer

PathLike = str | os.PathLike[str]
MANIFEST_NAME = "manifest.json"
Stamp = tuple[int, int] | None
Stamps = tuple[tuple[str, Stamp], ...]
_CHUNK = 1 << 20


def sha256_file(path: PathLike, chunk: int = _CHUNK) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_stamp(path: PathLike) -> Stamp:
    """(mtime_ns, size) of a file, or None when it cannot be stat()ed (missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def stamps(paths: list[Path]) -> Stamps:
    """The stamps of several files (e.g. a recipe and its include: files), comparable as one value."""
    return tuple((str(path), file_stamp(path)) for path in paths)


def save_npz(path: PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``meta`` (JSON) and float32 ``arrays`` to ``path`` atomically (a crash never leaves half a file)."""
    path = Path(path)
    with atomic_writer(path) as handle:
        named: dict[str, Any] = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
        np.savez(handle, meta=np.array(json.dumps(meta)), **named)
    return path


def load_npz(path: PathLike, names: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, {name: contiguous float32 array}) from a :func:`save_npz` file; never unpickles.

    Raises OSError/ValueError/KeyError for an unreadable file or a missing array
    (callers turn them into an error naming the file and the fix).
    """
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        arrays = {name: np.ascontiguousarray(data[name], dtype=np.float32) for name in names}
    if not isinstance(meta, dict):
        raise ValueError("meta is not a JSON object")
    return meta, arrays
