"""Parity on the real ViT-S/14 architecture (random weights, 224 px): the shape of the product's default expert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.dinov2 import export_dinov2
from export.hub_keys import hf_to_hub
from tests.fixtures.export import export_reference_features


@pytest.mark.slow
def test_vits14_random_weights_export_parity(tmp_path: Path, export_make_hf_model: Any) -> None:
    # dinov2-small: hidden 384, 12 layers, 6 heads, MLP ratio 4, 518-px position grid
    model = export_make_hf_model(seed=11, hidden_size=384, num_hidden_layers=12, num_attention_heads=6)
    checkpoint = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(hf_to_hub(model.state_dict()), checkpoint)

    manifest = export_dinov2(tmp_path / "vits14", checkpoint=checkpoint, resolution=224)
    assert manifest["architecture"] == "dinov2-vits14"
    assert (manifest["feature_dim"], manifest["grid"]) == (384, [16, 16])
    assert manifest["parity_max_abs_error"] <= 1e-4

    tile = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(tmp_path / "vits14" / "expert.onnx"), providers=["CPUExecutionProvider"])
    _, features = session.run(None, {"tiles": tile, "bank": np.eye(3, 384, dtype=np.float32)})
    np.testing.assert_allclose(features, export_reference_features(model, tile), atol=1e-4)
