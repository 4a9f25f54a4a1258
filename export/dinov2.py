"""``export_dinov2``: checkpoint -> ``expert.onnx`` + ``manifest.json``, parity-checked.

All-or-nothing: everything is written into a hidden temporary folder beside
``out_dir`` and moved into place with :func:`os.replace` only after the graph
passed the ONNX checker and the parity check. A failed export leaves ``out_dir``
exactly as it was (and does not create it).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.files import MANIFEST_NAME
from export.checkpoint import TINY_SEED, load_backbone
from export.errors import ExportError, ParityError

log = logging.getLogger(__name__)

MODEL_NAME = "expert.onnx"
DEFAULT_RESOLUTION = 224
DEFAULT_OPSET = 17
SUPPORTED_OPSETS = range(14, 21)  # legacy exporter; 17/18 are the tested ones
_PATCH = 14


def _check_arguments(resolution: int, opset: int) -> None:
    if not isinstance(resolution, int) or resolution < _PATCH or resolution % _PATCH:
        suggestion = max(_PATCH, round(int(resolution) / _PATCH) * _PATCH) if isinstance(resolution, int) else 224
        raise ExportError(f"--resolution must be a positive multiple of the patch size 14 (got {resolution}; e.g. {suggestion})")
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"--opset must be between {SUPPORTED_OPSETS.start} and {SUPPORTED_OPSETS.stop - 1} (got {opset})")


def _export_onnx(graph: Any, path: Path, opset: int) -> None:
    """Trace with the legacy exporter (dynamo=False: the dynamo exporter breaks on DINOv2's
    position-embedding interpolation) with dynamic tile batch B and bank size N."""
    import torch

    tiles = torch.zeros((2, graph.resolution, graph.resolution, 3), dtype=torch.uint8)
    bank = torch.nn.functional.normalize(torch.ones((7, graph.feature_dim)), dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python ints are expected here
        torch.onnx.export(
            graph,
            (tiles, bank),
            str(path),
            input_names=["tiles", "bank"],
            output_names=["distances", "features"],
            dynamic_axes={"tiles": {0: "B"}, "bank": {0: "N"}, "distances": {0: "B"}, "features": {0: "B"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def export_dinov2(
    out_dir: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    tiny: bool = False,
    resolution: int = DEFAULT_RESOLUTION,
    opset: int = DEFAULT_OPSET,
    seed: int = TINY_SEED,
    num_heads: int | None = None,
    tolerance: float = 1e-4,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Export the region-expert graph to ``out_dir/expert.onnx`` with ``out_dir/manifest.json``.

    Exactly one of ``checkpoint`` (a local HF folder or torch-hub ``.pth``) and
    ``tiny=True`` (seeded random tiny DINOv2) is required. Returns the manifest
    written. Raises :class:`export.errors.ExportError` (and subclasses
    ``CheckpointError``/``ParityError``) with nothing written on failure.
    """
    say = progress or log.info
    out_dir = Path(out_dir)
    _check_arguments(resolution, opset)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} exists and is not a folder")

    started = time.monotonic()
    say(f"[1/4] loading {f'tiny DINOv2 (seed {seed})' if tiny else checkpoint}")
    backbone = load_backbone(checkpoint=checkpoint, tiny=tiny, seed=seed, num_heads=num_heads)
    if resolution % backbone.patch_size:
        raise ExportError(f"--resolution {resolution} is not a multiple of the model's patch size {backbone.patch_size}")

    from export.graph import RegionExpertGraph
    from export.manifest import build_manifest, write_manifest
    from export.parity import max_abs_error

    graph = RegionExpertGraph(backbone.model, resolution, backbone.patch_size, backbone.num_register_tokens)
    graph.eval()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    try:
        model_tmp = staging / MODEL_NAME
        say(f"[2/4] exporting {backbone.architecture} at {resolution}x{resolution} to ONNX (opset {opset})")
        try:
            _export_onnx(graph, model_tmp, opset)
        except Exception as exc:
            raise ExportError(f"ONNX export of {backbone.architecture} failed: {exc}") from exc
        extra = sorted(p.name for p in staging.iterdir() if p.name != MODEL_NAME)
        if extra:
            raise ExportError(
                f"the exported graph needs external data files ({', '.join(extra)}: model > 2 GB), "
                "which iad-expert/1 does not support yet"
            )
        import onnx

        try:
            onnx.checker.check_model(str(model_tmp))
        except Exception as exc:
            raise ExportError(f"the exported graph fails the ONNX checker: {exc}") from exc

        say("[3/4] parity check: PyTorch vs ONNX Runtime (CPU) on random tiles, batch 2")
        error = max_abs_error(graph, model_tmp)
        if not error <= tolerance:  # also catches NaN
            raise ParityError(
                f"ONNX output differs from PyTorch by {error:.3g} (max abs), above the tolerance {tolerance:g}; nothing written"
            )

        manifest = build_manifest(
            model_file=model_tmp,
            architecture=backbone.architecture,
            resolution=resolution,
            patch_size=backbone.patch_size,
            feature_dim=backbone.feature_dim,
            num_register_tokens=backbone.num_register_tokens,
            opset=opset,
            source=backbone.source,
            parity_max_abs_error=error,
        )
        write_manifest(manifest, staging / MANIFEST_NAME)

        say(f"[4/4] writing {out_dir / MODEL_NAME} and {out_dir / MANIFEST_NAME}")
        out_dir.mkdir(exist_ok=True)
        # Model first, manifest last: a crash in between leaves a manifest whose sha256
        # no longer matches, which the runtime reports instead of loading a wrong model.
        os.replace(model_tmp, out_dir / MODEL_NAME)
        os.replace(staging / MANIFEST_NAME, out_dir / MANIFEST_NAME)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.debug("export took %.1f s", time.monotonic() - started)
    return manifest
