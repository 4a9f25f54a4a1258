"""Refuse a TensorRT engine that does not fit this machine or this recipe, saying why and how to rebuild.

Why: a TensorRT plan is compiled for one TensorRT version and one GPU
architecture, for one input resolution and feature width, and for a fixed range
of tile batch and bank sizes (its optimisation profile). Loaded anyway, it
fails deep inside TensorRT with an opaque message, or worse, deserializes and
then rejects shapes on the first frame of a running line. The manifest written
by ``iad-export dinov2 --engine`` records all of these; this module compares
them before the plan is deserialized. No TensorRT import here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.errors import BankError, ModelLoadError

ENGINE_NAME = "expert.plan"


def rebuild_hint(manifest: dict[str, Any], engine_path: Path) -> str:
    """The command that rebuilds this engine on the machine that will run it."""
    source = manifest.get("source") or {}
    if source.get("format") == "tiny":
        what = "--tiny"
    else:
        what = f"--checkpoint {source.get('path') or 'CHECKPOINT'}"
    resolution = manifest.get("resolution", "R")
    return f"rebuild it on this machine: `iad-export dinov2 {what} --resolution {resolution} --engine --out {engine_path.parent}`"


def engine_section(manifest: dict[str, Any], engine_path: Path) -> dict[str, Any]:
    """The manifest's ``tensorrt`` section (what the engine was built with), or a clear error."""
    section = manifest.get("tensorrt")
    if not isinstance(section, dict):
        raise ModelLoadError(f"{engine_path}: its manifest has no 'tensorrt' section (not built by --engine); {rebuild_hint(manifest, engine_path)}")
    for key in ("version", "compute_capability", "profile"):
        if key not in section:
            raise ModelLoadError(f"{engine_path}: manifest field tensorrt.{key} is missing; {rebuild_hint(manifest, engine_path)}")
    return section


def check_engine_manifest(
    manifest: dict[str, Any],
    engine_path: Path,
    *,
    trt_version: str,
    compute_capability: str,
    max_tiles: int | None = None,
    max_bank: int | None = None,
    resolution: int | None = None,
    feature_dim: int | None = None,
) -> dict[str, Any]:
    """Compare the engine's manifest with this machine and the recipe; return the ``tensorrt`` section.

    Raises :class:`ModelLoadError` naming the first field that does not match
    (TensorRT version, GPU compute capability, input resolution, feature dim,
    tile batch or bank size beyond the profile) and the rebuild command.
    """
    engine_path = Path(engine_path)
    section = engine_section(manifest, engine_path)
    hint = rebuild_hint(manifest, engine_path)

    def refuse(field: str, built: Any, here: Any, why: str) -> None:
        raise ModelLoadError(f"{engine_path}: {field} mismatch: the engine was built for {built}, {why} {here}; {hint}")

    if str(section["version"]) != str(trt_version):
        refuse("tensorrt.version", f"TensorRT {section['version']}", f"TensorRT {trt_version}", "this machine has")
    if str(section["compute_capability"]) != str(compute_capability):
        refuse(
            "tensorrt.compute_capability",
            f"GPU compute capability {section['compute_capability']} ({section.get('device_name', '?')})",
            f"{compute_capability}",
            "this GPU has",
        )
    if resolution is not None and int(manifest.get("resolution", -1)) != int(resolution):
        refuse("resolution", f"{manifest.get('resolution')}px tiles", f"{resolution}px (expert.tiling.resolution)", "the recipe asks for")
    if feature_dim is not None and int(manifest.get("feature_dim", -1)) != int(feature_dim):
        refuse("feature_dim", f"D={manifest.get('feature_dim')}", f"D={feature_dim}", "the bank has")
    profile = section["profile"]
    tiles_max = int(profile["tiles"][2])
    bank_max = int(profile["bank"][2])
    if max_tiles is not None and max_tiles > tiles_max:
        refuse("tensorrt.profile.tiles", f"at most {tiles_max} tiles per batch", f"{max_tiles} (expert.max_tiles)", "the recipe asks for")
    if max_bank is not None and max_bank > bank_max:
        refuse("tensorrt.profile.bank", f"a bank of at most {bank_max} rows", f"{max_bank} (expert.max_bank)", "the recipe asks for")
    return section


def check_bank_shape(section: dict[str, Any], feature_dim: int, shape: tuple[int, ...], engine_path: Path) -> None:
    """A bank must be [N, D] with D the engine's feature dim and N inside the engine's bank profile."""
    low, _, high = (int(v) for v in section["profile"]["bank"])
    if len(shape) != 2 or shape[1] != feature_dim:
        raise BankError(f"bank shape {tuple(shape)} does not fit the engine {engine_path} (expected [N, {feature_dim}]); recalibrate with this expert")
    if not low <= shape[0] <= high:
        raise BankError(
            f"bank has {shape[0]} rows but the engine {engine_path} takes {low}..{high} (its optimisation profile); "
            f"cap it with bank.coreset_max: {high} or rebuild the engine with a larger --max-bank"
        )
