"""Untrusted files: confine recipe paths to allowed roots, check model files against their manifests.

Why: a recipe is edited on the line (live reload) and may arrive over the
network (`cmd/...`, a copied USB stick). The appliance runs with write access
to its archive and outbox; a recipe that names ``../../home/...`` or
``/etc/shadow`` as a "model" or "archive" must be refused, and a model file that
was swapped or truncated must never be loaded. Two checks:

* :func:`check_recipe_paths`: every path in the recipe (all ``RecipePath``
  fields, found by walking the models, so new fields are covered without
  edits here, and the ``include:`` files), after resolving symlinks, lies
  under one of the allowed roots. The recipe loader (:mod:`edge.config.loader`)
  applies the same check to every recipe it reads while confinement is on, so
  start-up, live reload and every command are covered, and an included file
  outside the roots is refused before it is read.
  Roots come from ``$IAD_ALLOWED_ROOTS`` (``:``-separated; the word
  ``default`` expands to :data:`DEFAULT_ROOTS`); the recipe's own folder is
  always allowed. Confinement is **on whenever ``$IAD_ALLOWED_ROOTS`` is set**
  (the systemd units set it) and off in a development shell, where
  :func:`confinement_enabled` is False and ``iad-edge check`` only warns.
* :func:`edge.preflight.verify_artifacts`: the expert file (ONNX or TensorRT plan) against
  the sha256/size in its ``manifest.json`` (:func:`edge.expert.manifest.load_manifest`)
  and the assistant's GGUF model and mmproj against theirs
  (:func:`edge.assistant.gguf_check.verify_gguf`), before anything is loaded. With
  ``require_gguf_manifest`` a GGUF without a manifest is refused too.

Checkpoints (export step) are read with ``torch.load(weights_only=True)`` or
safetensors (:mod:`export.checkpoint`); banks and prototypes with
``np.load(allow_pickle=False)``: no pickle is ever executed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edge.errors import IadError

ENV_ROOTS = "IAD_ALLOWED_ROOTS"
REPO_ENGINES = Path(__file__).resolve().parents[1] / "engines"
DEFAULT_ROOTS: tuple[Path, ...] = (Path("/etc/iad"), Path("/var/lib/iad"), Path("/var/cache/iad"), REPO_ENGINES)
"""Allowed besides the recipe's folder: configuration, state (archive, outbox, banks), engine cache, the repo's engines/."""


class PathNotAllowedError(IadError):
    """A recipe names a file outside the allowed roots."""


def confinement_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``$IAD_ALLOWED_ROOTS`` is set (non-empty): production units set it."""
    env = os.environ if environ is None else environ
    return bool(env.get(ENV_ROOTS, "").strip())


def allowed_roots(recipe_path: str | Path | None = None,
                  environ: Mapping[str, str] | None = None) -> list[Path]:
    """The allowed roots (resolved): ``$IAD_ALLOWED_ROOTS`` or the defaults, plus the recipe's folder."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_ROOTS, "").strip()
    roots: list[Path] = []
    if not value:
        roots.extend(DEFAULT_ROOTS)
    else:
        for item in value.split(os.pathsep):
            item = item.strip()
            if not item:
                continue
            if item == "default":
                roots.extend(DEFAULT_ROOTS)
                continue
            path = Path(item).expanduser()
            if not path.is_absolute():
                raise PathNotAllowedError(f"${ENV_ROOTS}: '{item}' is not an absolute path (use /var/lib/iad style paths)")
            roots.append(path)
    if recipe_path is not None:
        roots.insert(0, Path(recipe_path).parent)
    out: list[Path] = []
    for root in roots:
        resolved = Path(os.path.realpath(root))
        if resolved not in out:
            out.append(resolved)
    return out


def recipe_paths(model: Any, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """(dotted field path, Path) for every path value in a recipe model, at any depth."""
    if isinstance(model, BaseModel):
        for name in type(model).model_fields:
            yield from recipe_paths(getattr(model, name), f"{prefix}.{name}" if prefix else name)
    elif isinstance(model, Path):
        yield prefix, model
    elif isinstance(model, (list, tuple)):
        for index, item in enumerate(model):
            yield from recipe_paths(item, f"{prefix}.{index}")
    elif isinstance(model, dict):
        for key, item in model.items():
            yield from recipe_paths(item, f"{prefix}.{key}")


def is_within(path: str | Path, roots: Sequence[Path]) -> bool:
    """True when ``path`` (symlinks resolved, even if it does not exist yet) lies under one of ``roots``."""
    real = Path(os.path.realpath(path))
    return any(real == root or root in real.parents for root in roots)


def outside_roots(recipe: BaseModel, roots: Sequence[Path]) -> list[tuple[str, Path]]:
    """(field, path) of each recipe path outside ``roots``."""
    return [(field, path) for field, path in recipe_paths(recipe) if not is_within(path, roots)]


def check_recipe_paths(recipe: BaseModel, environ: Mapping[str, str] | None = None, force: bool = False) -> list[Path]:
    """Refuse a recipe with a path outside the allowed roots; returns the roots used.

    A no-op (returns []) unless confinement is enabled or ``force`` is given.
    Raises :class:`PathNotAllowedError` naming every offending field, its path
    (as resolved) and the allowed roots.
    """
    if not (force or confinement_enabled(environ)):
        return []
    recipe_path = getattr(recipe, "source_path", None)
    roots = allowed_roots(recipe_path, environ)
    bad = outside_roots(recipe, roots)
    bad += [(f"include.{n}", p) for n, p in enumerate(getattr(recipe, "included_paths", ())) if not is_within(p, roots)]
    if bad:
        where = f"{recipe_path}: " if recipe_path else ""
        lines = [
            f"{where}{field}: {path} resolves to {os.path.realpath(path)}, outside the allowed roots" for field, path in bad
        ]
        lines.append(f"allowed roots: {', '.join(str(r) for r in roots)} (set ${ENV_ROOTS}, ':'-separated, to change them)")
        raise PathNotAllowedError("\n".join(lines))
    return roots
