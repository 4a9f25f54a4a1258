"""Parity between the PyTorch reference and the exported ONNX graph.

Run at every export on the same inputs (random uint8 tiles, batch 2, and a bank
that mixes random unit rows with real patch features so that both near-zero and
large distances are exercised); the max absolute error over ``distances`` and
``features`` goes into the manifest and gates the export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from export.graph import RegionExpertGraph

PARITY_TOLERANCE = 1e-4


def parity_inputs(graph: RegionExpertGraph, batch: int = 2, random_rows: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic parity inputs: tiles uint8 [batch, R, R, 3] and an L2-normalised bank [N, D]."""
    rng = np.random.default_rng(seed)
    size = graph.resolution
    tiles = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    with torch.no_grad():
        features = graph.patch_features(torch.from_numpy(tiles[:1])).reshape(-1, graph.feature_dim)
    real_rows = features.numpy()[:: 2]  # half the patches of tile 0: distances ≈ 0 there
    random = rng.standard_normal((random_rows, real_rows.shape[1])).astype(np.float32)
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    bank = np.concatenate([real_rows, random]).astype(np.float32)
    return tiles, bank


def torch_outputs(graph: RegionExpertGraph, tiles: np.ndarray, bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference outputs of the PyTorch module."""
    with torch.no_grad():
        distances, features = graph(torch.from_numpy(tiles), torch.from_numpy(bank))
    return distances.numpy(), features.numpy()


def onnx_outputs(onnx_path: Path, tiles: np.ndarray, bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of the ONNX graph on ONNX Runtime CPU (the reference runtime)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    distances, features = session.run(["distances", "features"], {"tiles": tiles, "bank": bank})
    return distances, features


def max_abs_error(graph: RegionExpertGraph, onnx_path: Path, batch: int = 2) -> float:
    """max |torch - onnx| over both outputs (shapes must match exactly)."""
    tiles, bank = parity_inputs(graph, batch=batch)
    reference = torch_outputs(graph, tiles, bank)
    exported = onnx_outputs(onnx_path, tiles, bank)
    error = 0.0
    for name, ref, got in zip(("distances", "features"), reference, exported):
        if ref.shape != got.shape:
            raise ValueError(f"ONNX output {name} has shape {got.shape}, PyTorch gives {ref.shape}")
        error = max(error, float(np.max(np.abs(ref - got))))
    return error
