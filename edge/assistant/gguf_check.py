"""Checks on a GGUF model before llama.cpp gets it.

Why: llama.cpp answers a truncated or foreign file with a bare "failed to load
model" (or worse, a crash deep in C). The assistant lane checks the file first:
the GGUF header, and when ``manifest.json`` (written by ``iad-export qwen``) is
beside it, the size and sha256 recorded at export. Every failure is a
:class:`~edge.errors.ModelLoadError` naming the file and what is wrong.
No dependency beyond the standard library (llama.cpp is only needed to run).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from edge.errors import ModelLoadError
from edge.files import MANIFEST_NAME, sha256_file

MANIFEST_FORMAT = "iad-gguf/1"
GGUF_MAGIC = b"GGUF"
_SUPPORTED_GGUF_VERSIONS = (2, 3)
_REBUILD = "re-export it with `iad-export qwen --hf-dir DIR --quant Q4_K_M --out DIR` (or --tiny)"


def read_gguf_header(path: Path) -> dict[str, int]:
    """Read and sanity-check the fixed GGUF header: magic, version, tensor and key/value counts."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: GGUF model file not found")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24:
        raise ModelLoadError(f"{path}: not a GGUF file (only {size} bytes; truncated or empty) - {_REBUILD}")
    magic, version, n_tensors, n_kv = struct.unpack("<4sIQQ", head)
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r}) - {_REBUILD}")
    if version not in _SUPPORTED_GGUF_VERSIONS:
        raise ModelLoadError(f"{path}: GGUF version {version} is not supported (expected one of {_SUPPORTED_GGUF_VERSIONS})")
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise ModelLoadError(f"{path}: corrupt GGUF header ({n_tensors} tensors, {n_kv} keys) - {_REBUILD}")
    return {"version": version, "n_tensors": n_tensors, "n_kv": n_kv, "size": size}


def load_gguf_manifest(model_path: Path) -> dict[str, Any] | None:
    """The ``manifest.json`` beside ``model_path``, or None when there is none."""
    mpath = Path(model_path).with_name(MANIFEST_NAME)
    if not mpath.is_file():
        return None
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{mpath}: not valid JSON ({exc})") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ModelLoadError(f"{mpath}: format {manifest.get('format')!r} is not {MANIFEST_FORMAT!r}")
    return manifest


def verify_gguf(path: Path | str, manifest: dict[str, Any] | None = None, check_sha256: bool = True) -> dict[str, Any]:
    """Check a GGUF file before loading it; return its manifest entry (or the header when no manifest).

    ``manifest``: the "iad-gguf/1" dict; when None, ``manifest.json`` beside the
    file is used if present. A file the manifest does not list, a size or sha256
    that differs, or a bad header raises :class:`ModelLoadError`.
    """
    path = Path(path)
    header = read_gguf_header(path)
    if manifest is None:
        manifest = load_gguf_manifest(path)
        if manifest is None:
            return {"bytes": header["size"], "gguf_version": header["version"]}
    entries = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    entry = entries.get(path.name)
    if not isinstance(entry, dict):
        raise ModelLoadError(f"{path}: not listed in its manifest (lists {sorted(entries)}) - {_REBUILD}")
    if entry.get("bytes") != header["size"]:
        raise ModelLoadError(
            f"{path}: size {header['size']} bytes differs from the manifest's {entry.get('bytes')} "
            f"(truncated or replaced) - {_REBUILD}"
        )
    if check_sha256:
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise ModelLoadError(f"{path}: sha256 {actual[:12]}… differs from the manifest's {str(entry.get('sha256'))[:12]}… (corrupt or replaced) - {_REBUILD}")
    return entry


def open_llama(path: Path | str, manifest: dict[str, Any] | None = None, check_sha256: bool = True, **llama_kwargs: Any):  # type: ignore[no-untyped-def]
    """``verify_gguf`` then ``llama_cpp.Llama(model_path=path, **llama_kwargs)``, load failures as ModelLoadError."""
    verify_gguf(path, manifest, check_sha256=check_sha256)
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError("llama-cpp-python is not installed (pip install 'iad-edge[assistant]')") from exc
    try:
        return llama_cpp.Llama(model_path=str(path), **llama_kwargs)
    except Exception as exc:  # llama_cpp raises ValueError/RuntimeError variously
        raise ModelLoadError(f"{path}: llama.cpp could not load it ({exc}) - {_REBUILD}") from exc
