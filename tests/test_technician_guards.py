"""The technician's guards: the include deadlock, the wrong bank, the huge frame, the squashed aspect ratio.

All with the tiny random expert on real ONNX Runtime and the real CLI.
"""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import yaml

from edge.bank import Bank
from edge.cli import main
from edge.config import load_recipe
from edge.errors import BadFrameError, BankError
from edge.inspector import Inspector
from tests.fixtures.expert import synthetic_frames, write_recipe


def _good_folder(root, count=4, start=7000, width=224, height=224):
    folder = root / "good"
    folder.mkdir(exist_ok=True)
    for frame in synthetic_frames(count, defect=None, start=start, width=width, height=height):
        cv2.imwrite(str(folder / f"{frame.name}.png"), frame.image)
    return folder


def _edit(path, **changes):
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


# --------------------------------------------------------------------------- 2. include deadlock
def test_first_calibration_of_a_recipe_that_includes_its_generated_file(tmp_path, tiny_expert_dir, capsys):
    """The docs' `include: line3.generated.yaml` works before the file exists: calibrate creates it."""
    recipe = write_recipe(tmp_path, tiny_expert_dir, {"include": "line3.generated.yaml"}, name="line3.yaml")
    data = yaml.safe_load(recipe.read_text())
    del data["thresholds"]  # the calibrated values must be the ones used
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    good = _good_folder(tmp_path)
    # before calibration, the running appliance must not start on defaults: a clear line that names calibrate
    assert main(["check", str(recipe)]) == 1
    assert "iad-edge calibrate" in capsys.readouterr().err
    assert main(["calibrate", str(recipe), "--good", str(good), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "does not include" not in out  # it does include it
    generated = yaml.safe_load((tmp_path / "line3.generated.yaml").read_text())
    loaded = load_recipe(recipe)
    assert loaded.thresholds.image_score == generated["thresholds"]["image_score"]
    assert main(["check", str(recipe)]) == 0


# --------------------------------------------------------------------------- 3. the wrong bank
@pytest.fixture
def tile_bank(tmp_path, tiny_expert_dir):
    """A bank built for another station at tiling.mode tile."""
    from edge.bank import build_bank
    from edge.expert import load_expert

    other = tmp_path / "other"
    other.mkdir()
    recipe = load_recipe(write_recipe(other, tiny_expert_dir, {"tiling": {"mode": "tile"}, "station": "st9"}))
    frames = [f.image for f in synthetic_frames(3, defect=None, start=9000)]
    return build_bank(load_expert(recipe.expert), frames, recipe, progress=False).save(other / "bank.npz")


def test_bank_records_what_it_was_built_for(tile_bank):
    meta = Bank.load(tile_bank).meta
    assert meta["tiling"] == "tile" and meta["resolution"] == 112 and meta["tiling_overlap"] == 0.25
    assert meta["roi"] is None and meta["frame_min"] == [224, 224] and meta["frame_max"] == [224, 224]
    assert (meta["line"], meta["station"]) == ("testline", "st9") and meta["expert_sha256"]


def test_inspect_refuses_a_bank_built_at_another_tiling(tiny_recipe_path, tile_bank, tmp_path, capsys):
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), synthetic_frames(1, defect="scratch")[0].image)
    assert main(["inspect", str(tiny_recipe_path), str(image), "--bank", str(tile_bank), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "bank was built with tiling.mode tile but the recipe uses resize" in err and str(tile_bank) in err
    assert not (tmp_path / "o").exists()


def test_check_reports_the_bank_and_refuses_one_the_appliance_would_refuse(tiny_recipe_path, tile_bank, capsys):
    assert main(["check", str(tiny_recipe_path)]) == 0
    out = capsys.readouterr().out
    assert "bank built for: " in out and "frames 224x224" in out and "tiling resize at 112 px" in out
    assert "frame guard: frames above 1.0 MP are refused" in out
    shutil.copy(tile_bank, tiny_recipe_path.parent / "bank.npz")
    assert main(["check", str(tiny_recipe_path)]) == 1
    assert "bank was built with tiling.mode tile" in capsys.readouterr().err


def test_reload_with_another_tiling_keeps_the_running_recipe(tiny_recipe_path):
    """Live reload: a recipe that changes tiling.mode but keeps the bank is refused (the lane keeps the old one)."""
    inspector = Inspector.from_recipe(load_recipe(tiny_recipe_path))
    _edit(tiny_recipe_path, tiling={"mode": "tile"})
    with pytest.raises(BankError, match="tiling.mode"):
        inspector.update_recipe(load_recipe(tiny_recipe_path))
    assert inspector.recipe.tiling.mode == "resize"


def test_other_station_and_overlap_are_warnings_not_refusals(tiny_recipe_path, tile_bank):
    _edit(tiny_recipe_path, tiling={"mode": "tile", "overlap": 0.5})
    inspector = Inspector.from_recipe(load_recipe(tiny_recipe_path), bank_path=tile_bank)
    text = " ".join(inspector.bank_warnings)
    assert "tiling.overlap 0.25" in text and "testline/st9 but the recipe is testline/st1" in text


# --------------------------------------------------------------------------- 4. frame guard
def test_a_frame_far_larger_than_calibrated_is_refused_with_the_limit(tiny_recipe_path, tmp_path, capsys):
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.full((1100, 1000), 128, np.uint8))  # 1.1 MP; the bank saw 224x224 (limit 1 MP)
    assert main(["inspect", str(tiny_recipe_path), str(big), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "frame 1000x1100 (1.1 MP) is larger than the 1.0 MP limit" in err and "tiling.max_megapixels" in err
    assert not (tmp_path / "o").exists()
    _edit(tiny_recipe_path, tiling={"max_megapixels": 2.0})  # the technician raises it on purpose
    assert main(["inspect", str(tiny_recipe_path), str(big), "--out", str(tmp_path / "o")]) == 0


def test_the_lane_fails_safe_on_a_huge_frame_with_the_reason(tiny_recipe_path):
    """In the lane the guard's error is a BadFrameError: fail-safe verdict, the reason names the limit."""
    from edge.inspector import FrameTooLargeError

    recipe = load_recipe(tiny_recipe_path)
    inspector = Inspector.from_recipe(recipe)
    with pytest.raises(FrameTooLargeError) as caught:
        inspector.inspect(np.zeros((1100, 1000, 3), np.uint8))
    assert isinstance(caught.value, BadFrameError)  # edge/lane/lane.py: BadFrameError -> fail-safe "bad frame: ..."
    assert "1.0 MP limit" in str(caught.value)


def test_the_running_lane_decides_a_huge_frame_fail_safe_with_the_limit_in_the_reason(tiny_recipe_path):
    """A real lane (no broker): the huge frame gets the fail-safe verdict and the reason; the next frame is inspected."""
    import time

    from edge.station import build_lane
    from edge.types import Frame

    recipe = load_recipe(tiny_recipe_path)
    normal = synthetic_frames(1, defect=None, start=4000)[0].image

    class _Camera:
        def __iter__(self):
            for i, image in enumerate((np.zeros((1100, 1000, 3), np.uint8), normal)):
                yield Frame(image=image, trigger_id=700 + i, trigger_time=time.time())

        def close(self):
            pass

    lane = build_lane(recipe, mqtt_enabled=False, source=_Camera(), pull=False)
    decisions = []
    lane.add_observer(lambda frame, result, decision: decisions.append(decision))
    counters = lane.run()
    assert counters["decisions"] == 2
    huge, after = sorted(decisions, key=lambda d: d.trigger_id)
    assert huge.fail_safe and huge.verdict == recipe.decision.fail_safe and huge.score is None
    assert "bad frame: frame 1000x1100 (1.1 MP) is larger than the 1.0 MP limit" in huge.reason
    assert not after.fail_safe and after.score is not None  # the line goes on


# --------------------------------------------------------------------------- 5. aspect ratio
def test_calibrate_and_check_warn_when_resize_squashes_an_elongated_frame(tmp_path, tiny_expert_dir, capsys):
    recipe = write_recipe(tmp_path, tiny_expert_dir, {"source": {"width": 224, "height": 560}}, name="tall.yaml")
    good = _good_folder(tmp_path, count=3, width=224, height=560)
    assert main(["calibrate", str(recipe), "--good", str(good), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "squashes the 224x560 good images into 112x112 (aspect ratio 2.50:1" in captured.err
    assert "tiling: {mode: tile}" in captured.err
    assert "squashes" in (tmp_path / "tall.calibration" / "calibration_report.md").read_text()
    assert main(["check", str(recipe)]) == 0
    assert "squashes the 224x560 frames" in capsys.readouterr().out
    _edit(recipe, tiling={"mode": "tile"})
    assert main(["check", str(recipe), "--no-files"]) == 0
    assert "squashes" not in capsys.readouterr().out


def test_no_aspect_warning_for_a_square_part(tiny_recipe_path, capsys):
    assert main(["check", str(tiny_recipe_path)]) == 0
    assert "squashes" not in capsys.readouterr().out
