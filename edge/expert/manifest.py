"""Read and verify the ``manifest.json`` that sits beside every exported expert.

The manifest is the contract between the offline export step and the runtime:
it says what the graph expects (resolution, patch size, feature dim) and which
exact bytes were exported. The runtime checks the model file against the
recorded sha256 before loading it, because a truncated copy or a model swapped
without its manifest would otherwise load fine and silently score wrongly.

No torch here: this module is part of the import-light runtime.
The format is documented in ``engines/README.md``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edge.errors import ModelLoadError
from edge.files import MANIFEST_NAME, sha256_file

MANIFEST_FORMAT = "iad-expert/1"

# Keys every expert manifest must carry; the backends read these.
REQUIRED_KEYS = ("format", "kind", "resolution", "patch_size", "grid", "feature_dim", "files")

# (path, size, mtime_ns, inode) -> sha256: re-verifying an unchanged file costs one stat().
_sha_cache: dict[tuple[str, int, int, int], str] = {}


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of ``path``, cached on (size, mtime, inode) so repeated loads/reloads stay cheap."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    cached = _sha_cache.get(key)
    if cached is None:
        cached = sha256_file(resolved)
        _sha_cache[key] = cached
    return cached


def _rebuild_hint(model_path: Path) -> str:
    return f"rebuild it with `iad-export dinov2 (--checkpoint PATH | --tiny) --out {model_path.parent}`"


def manifest_path_for(model_path: str | os.PathLike[str]) -> Path:
    """Where the manifest of ``model_path`` lives (the same folder)."""
    return Path(model_path).parent / MANIFEST_NAME


def load_manifest(model_path: str | os.PathLike[str], verify: bool = True) -> dict[str, Any]:
    """Read the manifest beside ``model_path``, check its format and (by default) the model's bytes.

    Raises :class:`ModelLoadError` naming the file and how to rebuild when the
    model or manifest is missing, the manifest is not an ``iad-expert/1``
    manifest, the model file is not listed in it, or its size/sha256 differ
    (truncated, corrupt or swapped file).
    """
    model_path = Path(model_path)
    hint = _rebuild_hint(model_path)
    if not model_path.is_file():
        raise ModelLoadError(f"model file {model_path} does not exist; {hint}")
    manifest_file = manifest_path_for(model_path)
    if not manifest_file.is_file():
        raise ModelLoadError(f"no {MANIFEST_NAME} beside {model_path} (expected {manifest_file}); {hint}")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{manifest_file} is not valid JSON ({exc}); {hint}") from None
    if not isinstance(manifest, dict):
        raise ModelLoadError(f"{manifest_file} must hold a JSON object (got {type(manifest).__name__}); {hint}")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ModelLoadError(
            f"{manifest_file}: format is {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}; {hint}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ModelLoadError(f"{manifest_file}: missing key(s) {', '.join(missing)}; {hint}")
    if verify:
        verify_model_file(model_path, manifest, manifest_file)
    return manifest


def verify_model_file(model_path: Path, manifest: dict[str, Any], manifest_file: Path) -> None:
    """Check the model file's size and sha256 against ``manifest['files'][name]``."""
    hint = _rebuild_hint(model_path)
    files = manifest.get("files")
    entry = files.get(model_path.name) if isinstance(files, dict) else None
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise ModelLoadError(f"{manifest_file} does not list {model_path.name} under 'files' (sha256); {hint}")
    size = model_path.stat().st_size
    expected_size = entry.get("bytes")
    if expected_size is not None and size != expected_size:
        raise ModelLoadError(
            f"{model_path} is {size} bytes but its manifest says {expected_size} (truncated or replaced file); {hint}"
        )
    actual = cached_sha256(model_path)
    if actual != entry["sha256"]:
        raise ModelLoadError(
            f"{model_path} does not match its manifest (sha256 {actual[:12]}… != {str(entry['sha256'])[:12]}…: "
            f"corrupt or replaced file); {hint}"
        )
