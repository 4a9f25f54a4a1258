"""Before anything is loaded: recipe paths inside the allowed roots, model files matching their manifests.

``iad-edge run`` and ``iad-edge assistant`` call :func:`preflight` first. Path
confinement itself is :mod:`edge.security` (pure, also used by the recipe
loader); this module adds the artifact checks, which need the expert's and the
assistant's manifest readers, so it sits above both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edge.assistant.gguf_check import load_gguf_manifest, verify_gguf
from edge.config.recipe import Recipe
from edge.errors import ModelLoadError
from edge.expert.manifest import load_manifest
from edge.security import check_recipe_paths, confinement_enabled


def verify_artifacts(recipe: Recipe, require_gguf_manifest: bool = False) -> dict[str, str]:
    """Check the expert and the assistant's GGUF files against their manifests before loading; returns {field: sha256}.

    Reuses the loaders' own checks (one implementation of each): a missing,
    truncated, corrupt or swapped file raises :class:`~edge.errors.ModelLoadError`
    naming the file.
    """
    out: dict[str, str] = {}
    expert = recipe.expert
    model = getattr(expert, "model", None) or getattr(expert, "engine", None)
    if model is not None:
        manifest = load_manifest(model, verify=True)
        out["expert"] = str(manifest["files"][Path(model).name]["sha256"])
    assistant = getattr(recipe, "assistant", None)
    if assistant is not None and assistant.enabled:
        for key in ("model", "mmproj"):
            path = getattr(assistant, key, None)
            if path is None:
                continue
            if require_gguf_manifest and load_gguf_manifest(Path(path)) is None:
                raise ModelLoadError(
                    f"{path}: assistant.{key} has no manifest.json beside it; production requires one "
                    "(written by `iad-export qwen`), so a swapped model cannot load"
                )
            entry = verify_gguf(Path(path))
            if "sha256" in entry:
                out[f"assistant.{key}"] = str(entry["sha256"])
    return out


def preflight(recipe: Recipe, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Both checks, as ``iad-edge run`` / ``assistant`` do before loading anything.

    With confinement on (production), GGUF files must have a manifest too.
    """
    check_recipe_paths(recipe, environ)
    return verify_artifacts(recipe, require_gguf_manifest=confinement_enabled(environ))
