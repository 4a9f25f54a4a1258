"""Files a recipe names that must exist before anything starts.

A missing TLS certificate or GenTL producer should stop the technician at
`iad-edge check`, with the line that names it, not minutes later as a
connection error. Files the appliance writes itself (bank, outbox, archive)
are not required.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from edge.config.expert import OnnxRuntimeExpertConfig, OpenVinoExpertConfig, TensorRTExpertConfig
from edge.config.recipe import Recipe
from edge.config.source import FolderSourceConfig, GenicamSourceConfig
from edge.files import MANIFEST_NAME

KeyPath = tuple[str, ...]


def required_files(recipe: Recipe) -> Iterator[tuple[KeyPath, Path, str]]:
    """(key path, path, kind) of every input file or folder the recipe names; kind is 'file' or 'folder'."""
    expert = recipe.expert
    if isinstance(expert, (OnnxRuntimeExpertConfig, OpenVinoExpertConfig)):
        yield ("expert", "model"), expert.model, "file"
    if isinstance(expert, TensorRTExpertConfig):
        yield ("expert", "engine"), expert.engine, "file"
    source = recipe.source
    if isinstance(source, GenicamSourceConfig):
        yield ("source", "producer"), source.producer, "file"
    if isinstance(source, FolderSourceConfig):
        yield ("source", "path"), source.path, "folder"
    mqtt = recipe.mqtt
    if mqtt.password_file is not None:
        yield ("mqtt", "password_file"), mqtt.password_file, "file"
    if mqtt.tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            value: Path | None = getattr(mqtt.tls, key)
            if value is not None:
                yield ("mqtt", "tls", key), value, "file"
    console = recipe.console
    if console.password_file is not None:
        yield ("console", "password_file"), console.password_file, "file"
    if console.tls is not None:
        yield ("console", "tls", "cert_file"), console.tls.cert_file, "file"
        yield ("console", "tls", "key_file"), console.tls.key_file, "file"
    assistant = recipe.assistant
    if assistant.enabled:
        for key in ("model", "mmproj"):
            value = getattr(assistant, key)
            if value is not None:
                yield ("assistant", key), value, "file"
    if recipe.rules.always_reject and assistant.prototypes is not None:
        yield ("assistant", "prototypes"), assistant.prototypes, "file"


def missing_files(recipe: Recipe) -> list[tuple[KeyPath, str]]:
    """(key path, message) for each named input that does not exist or has the wrong kind."""
    problems = []
    for key_path, path, kind in required_files(recipe):
        if kind == "folder":
            if not path.is_dir():
                what = "is a file, not a folder" if path.exists() else "folder not found"
                problems.append((key_path, f"{what}: {path}"))
        elif not path.is_file():
            what = "is a folder, not a file" if path.exists() else "file not found"
            problems.append((key_path, f"{what}: {path}"))
    return problems


def model_mismatches(recipe: Recipe) -> list[tuple[KeyPath, str]]:
    """(key path, message) when the expert's manifest.json contradicts the recipe (only if both files exist).

    The tile size must be the size the model was exported for; catching it at
    `check` time beats a load error on the line.
    """

    model = getattr(recipe.expert, "model", None) or getattr(recipe.expert, "engine", None)
    if model is None:
        return []
    manifest = Path(model).with_name(MANIFEST_NAME)
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # no manifest here: the expert loader reports that with its own message
    resolution = data.get("resolution") if isinstance(data, dict) else None
    if isinstance(resolution, int) and resolution != recipe.tiling.resolution:
        return [(("tiling", "resolution"),
                 f"the expert {model} was exported for {resolution} px: set tiling.resolution: {resolution} "
                 f"or re-export with `iad-export dinov2 --resolution {recipe.tiling.resolution}` (got {recipe.tiling.resolution})")]
    return []
