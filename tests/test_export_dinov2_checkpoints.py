"""Round trips from real checkpoint layouts: HF folders (current and legacy key names) and
torch-hub state dicts (plain, registers + SwiGLU), each compared with the HF model itself."""

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

RESOLUTION = 56  # 4x4 patches: enough to catch transposed/shifted maps, fast to export


def _onnx_features(model_dir: Path, tiles: np.ndarray, dim: int) -> np.ndarray:
    session = ort.InferenceSession(str(model_dir / "expert.onnx"), providers=["CPUExecutionProvider"])
    bank = np.eye(2, dim, dtype=np.float32)
    _, features = session.run(None, {"tiles": tiles, "bank": bank})
    return features


def _tiles(batch: int = 2) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (batch, RESOLUTION, RESOLUTION, 3), dtype=np.uint8)


def _assert_same_as_model(out: Path, model: Any, prefix: int) -> None:
    tiles = _tiles()
    expected = export_reference_features(model, tiles, num_prefix_tokens=prefix)
    got = _onnx_features(out, tiles, model.config.hidden_size)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_hf_folder_round_trip(tmp_path: Path, export_make_hf_model: Any) -> None:
    model = export_make_hf_model()
    folder = tmp_path / "dinov2-hf"
    model.save_pretrained(folder)
    manifest = export_dinov2(tmp_path / "out", checkpoint=folder, resolution=RESOLUTION)
    assert manifest["architecture"] == "dinov2-custom-d128-l2"
    assert manifest["feature_dim"] == 128 and manifest["parity_max_abs_error"] <= 1e-4
    source = manifest["source"]
    assert source["format"] == "hf-folder" and source["path"] == str(folder.resolve())
    assert set(source["files"]) == {"config.json", "model.safetensors"} and len(source["sha256"]) == 64
    _assert_same_as_model(tmp_path / "out", model, prefix=1)


def test_hf_folder_with_legacy_key_names_loads_like_facebook_dinov2(tmp_path: Path, export_make_hf_model: Any) -> None:
    """facebook/dinov2-* folders name attention weights ``attention.attention.query`` etc."""
    from safetensors.torch import save_file

    model = export_make_hf_model(seed=5)
    folder = tmp_path / "legacy"
    model.save_pretrained(folder)
    legacy = {}
    for key, tensor in model.state_dict().items():
        key = key.replace("attention.q_proj", "attention.attention.query")
        key = key.replace("attention.k_proj", "attention.attention.key")
        key = key.replace("attention.v_proj", "attention.attention.value")
        key = key.replace("attention.o_proj", "attention.output.dense")
        legacy[key] = tensor.contiguous()
    (folder / "model.safetensors").unlink()
    save_file(legacy, str(folder / "model.safetensors"), metadata={"format": "pt"})
    export_dinov2(tmp_path / "out", checkpoint=folder, resolution=RESOLUTION)
    _assert_same_as_model(tmp_path / "out", model, prefix=1)


def test_torch_hub_state_dict_round_trip(tmp_path: Path, export_make_hf_model: Any) -> None:
    model = export_make_hf_model(seed=2)
    hub = hf_to_hub(model.state_dict())
    assert "blocks.1.attn.qkv.weight" in hub and "patch_embed.proj.weight" in hub and "pos_embed" in hub
    path = tmp_path / "dinov2_custom14_pretrain.pth"
    torch.save(hub, path)
    manifest = export_dinov2(tmp_path / "out", checkpoint=path, resolution=RESOLUTION)
    assert manifest["source"]["format"] == "torch-hub"
    assert manifest["source"]["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert manifest["architecture"] == "dinov2-custom-d128-l2" and manifest["num_register_tokens"] == 0
    _assert_same_as_model(tmp_path / "out", model, prefix=1)


def test_torch_hub_registers_and_swiglu_round_trip(tmp_path: Path, export_make_hf_model: Any) -> None:
    """The vitg14 / *_reg4 layouts: fused SwiGLU ``w12``/``w3`` and 4 register tokens (dropped from the output)."""
    model = export_make_hf_model(registers=4, swiglu=True, seed=3)
    hub = hf_to_hub(model.state_dict())
    assert "register_tokens" in hub and "blocks.0.mlp.w12.weight" in hub
    path = tmp_path / "dinov2_custom14_reg4_pretrain.pth"
    torch.save({"model": hub}, path)  # training-style wrapper is unwrapped
    manifest = export_dinov2(tmp_path / "out", checkpoint=path, resolution=RESOLUTION)
    assert manifest["num_register_tokens"] == 4 and manifest["architecture"].endswith("-reg4")
    _assert_same_as_model(tmp_path / "out", model, prefix=5)


def test_hub_architecture_inference_names_standard_sizes() -> None:
    from export.hub_keys import infer_architecture

    def fake(hidden: int, depth: int, swiglu: bool = False) -> dict[str, Any]:
        class T:
            def __init__(self, *shape: int) -> None:
                self.shape = shape

        state: dict[str, Any] = {"patch_embed.proj.weight": T(hidden, 3, 14, 14), "pos_embed": T(1, 1 + 37 * 37, hidden)}
        for i in range(depth):
            if swiglu:
                state[f"blocks.{i}.mlp.w12.weight"] = T(2 * 4096, hidden)
            else:
                state[f"blocks.{i}.mlp.fc1.weight"] = T(4 * hidden, hidden)
        return state

    small = infer_architecture(fake(384, 12), "s")
    assert (small.name, small.num_heads, small.image_size, small.mlp_ratio) == ("vits14", 6, 518, 4)
    assert infer_architecture(fake(1024, 24), "l").num_heads == 16
    giant = infer_architecture(fake(1536, 40, swiglu=True), "g")
    assert (giant.name, giant.num_heads, giant.use_swiglu, giant.mlp_ratio) == ("vitg14", 24, True, 4)


def test_torch_hub_tensors_as_safetensors_file(tmp_path: Path, export_make_hf_model: Any) -> None:
    from safetensors.torch import save_file

    model = export_make_hf_model(seed=8)
    path = tmp_path / "dinov2_custom14.safetensors"
    save_file({k: v.contiguous() for k, v in hf_to_hub(model.state_dict()).items()}, str(path))
    manifest = export_dinov2(tmp_path / "out", checkpoint=path, resolution=RESOLUTION)
    assert manifest["source"]["format"] == "torch-hub"
    _assert_same_as_model(tmp_path / "out", model, prefix=1)


def test_training_checkpoint_keeps_backbone_and_drops_heads(tmp_path: Path, export_make_hf_model: Any) -> None:
    """DINOv2 training checkpoints: {"teacher": {"backbone.*": ..., "dino_head.*": ...}, "iteration": n}."""
    model = export_make_hf_model(seed=9)
    teacher = {f"backbone.{k}": v for k, v in hf_to_hub(model.state_dict()).items()}
    teacher["dino_head.mlp.0.weight"] = torch.zeros(8, 128)
    teacher["ibot_head.last_layer.weight_g"] = torch.zeros(8, 1)
    path = tmp_path / "teacher_checkpoint.pth"
    torch.save({"teacher": teacher, "iteration": 125000}, path)
    export_dinov2(tmp_path / "out", checkpoint=path, resolution=RESOLUTION)
    _assert_same_as_model(tmp_path / "out", model, prefix=1)


@pytest.mark.parametrize("swiglu", [False, True])
def test_legacy_transformers_layout_round_trip(export_make_hf_model: Any, swiglu: bool) -> None:
    """transformers releases that still name modules ``attention.attention.query`` / ``mlp.weights_in``."""
    from export.hub_keys import to_current_names, to_legacy_names, uses_legacy_names

    state = to_current_names(export_make_hf_model(swiglu=swiglu).state_dict())  # whatever this transformers uses
    legacy = to_legacy_names(state)
    assert uses_legacy_names(legacy) and not uses_legacy_names(state)
    assert "encoder.layer.0.attention.output.dense.weight" in legacy
    if swiglu:
        assert legacy["encoder.layer.0.mlp.weights_in.weight"].shape[0] == 2 * state["encoder.layer.0.mlp.up_proj.weight"].shape[0]
    back = to_current_names(legacy)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
