"""Memory bank: build options, file format, refusing a bank that does not fit."""


import numpy as np
import pytest

from edge.bank import Bank, build_bank, greedy_coreset, rotations
from edge.config import load_recipe
from edge.errors import BankError
from edge.expert import load_expert
from edge.inspector import Inspector
from tests.fixtures.expert import synthetic_frames, write_recipe


def test_rotations_give_eight_views_of_the_same_size():
    img = np.arange(40 * 40 * 3, dtype=np.uint8).reshape(40, 40, 3)
    views = rotations(img)
    assert len(views) == 8 and all(v.shape == img.shape for v in views)
    assert np.array_equal(views[0], img) and np.array_equal(views[4], np.rot90(img, 2))


def test_greedy_coreset_picks_spread_out_points():
    rng = np.random.default_rng(0)
    cluster = rng.normal(0, 0.01, (100, 8)).astype(np.float32)
    outliers = np.eye(8, dtype=np.float32)[:3] * 5
    picked = greedy_coreset(np.concatenate([cluster, outliers]), 4)
    assert len(set(picked.tolist())) == 4
    assert {100, 101, 102} <= set(picked.tolist())  # the far points are always kept


def test_bank_options_and_round_trip(tmp_path, tiny_expert_dir):
    recipe = load_recipe(write_recipe(tmp_path, tiny_expert_dir, {"bank": {"path": "b.npz", "rotations": True, "coreset_max": 500, "foreground_mask": True}}))
    expert = load_expert(recipe.expert)
    images = [f.image for f in synthetic_frames(2, defect=None)]
    bank = build_bank(expert, images, recipe, progress=False)
    assert bank.size == 500 and bank.meta["rotations"] and bank.meta["patches_before_coreset"] > 500
    np.testing.assert_allclose(np.linalg.norm(bank.features, axis=1), 1.0, atol=1e-5)
    loaded = Bank.load(bank.save(tmp_path / "b.npz"))
    np.testing.assert_array_equal(loaded.features, bank.features)
    assert loaded.meta["expert_sha256"] == bank.meta["expert_sha256"] != ""
    result = Inspector(recipe, expert, loaded).inspect(images[0])  # masked inspection runs
    assert result.verdict in ("OK", "NG")


def test_missing_corrupt_and_foreign_banks_are_refused(tmp_path, tiny_recipe_path):
    recipe = load_recipe(tiny_recipe_path)
    with pytest.raises(BankError, match="no memory bank here.*iad-edge calibrate"):
        Inspector.from_recipe(recipe, bank_path=tmp_path / "nope.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(BankError, match="not a readable iad-edge bank"):
        Inspector.from_recipe(recipe, bank_path=tmp_path / "garbage.npz")
    Bank(np.ones((4, 7), np.float32), {}).save(tmp_path / "dims.npz")
    with pytest.raises(BankError, match="7 dims but the expert gives"):
        Inspector.from_recipe(recipe, bank_path=tmp_path / "dims.npz")
    good = Bank.load(tmp_path / "bank.npz")
    good.meta["expert_sha256"] = "0" * 64
    good.save(tmp_path / "foreign.npz")
    with pytest.raises(BankError, match="another expert model"):
        Inspector.from_recipe(recipe, bank_path=tmp_path / "foreign.npz")


def test_update_recipe_swaps_the_bank_and_keeps_the_old_one_on_failure(tmp_path, tiny_recipe_path):
    from edge.config.loader import parse_recipe

    inspector = Inspector.from_recipe(load_recipe(tiny_recipe_path))
    frame = synthetic_frames(1, defect=None)[0].image
    before = inspector.inspect(frame).score
    text = tiny_recipe_path.read_text().replace("path: bank.npz", "path: other.npz")
    with pytest.raises(BankError):
        inspector.update_recipe(parse_recipe(text, tiny_recipe_path))
    assert inspector.inspect(frame).score == pytest.approx(before)  # still the old bank
    tiny_bank = Bank.load(tmp_path / "bank.npz")
    Bank(tiny_bank.features[:10], tiny_bank.meta).save(tmp_path / "other.npz")
    inspector.update_recipe(parse_recipe(text, tiny_recipe_path))
    assert inspector.bank.size == 10
    assert inspector.inspect(frame).score > before  # fewer good patches -> farther neighbours


def test_a_gpu_provider_that_is_not_available_falls_back_to_the_cpu_with_a_warning(tiny_expert_dir, caplog):
    import onnxruntime as ort

    from edge.config.expert import OnnxRuntimeExpertConfig

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the fallback path is not taken")
    with caplog.at_level("WARNING"):
        expert = load_expert(OnnxRuntimeExpertConfig(model=tiny_expert_dir / "expert.onnx", providers=["cuda", "cpu"]))
    assert expert.providers == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider is not available" in caplog.text
