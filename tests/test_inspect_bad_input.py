"""Bad input to `iad-edge inspect`: a specific error, a non-zero exit, and no partial output."""

import cv2
import numpy as np
import pytest

from edge.cli import main
from tests.fixtures.expert import synthetic_frames


@pytest.fixture
def good_png(tmp_path):
    path = tmp_path / "good.png"
    cv2.imwrite(str(path), synthetic_frames(1, defect=None)[0].image)
    return path


def _bad_file(tmp_path, kind):
    path = tmp_path / f"bad-{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not an image")
    elif kind == "float":
        path = tmp_path / "bad-float.tiff"
        cv2.imwrite(str(path), np.random.default_rng(0).random((32, 32)).astype(np.float32))
    return path


@pytest.mark.parametrize(
    "kind,message",
    [
        ("empty", "empty file (0 bytes)"),
        ("text", "not a readable image"),
        ("float", "unsupported pixel type float32"),
        ("missing", "no such file or folder"),
    ],
)
def test_bad_images_fail_before_anything_is_written(kind, message, tmp_path, tiny_recipe_path, good_png, capsys):
    bad = tmp_path / "does-not-exist.png" if kind == "missing" else _bad_file(tmp_path, kind)
    out = tmp_path / "out"
    code = main(["inspect", str(tiny_recipe_path), str(good_png), str(bad), "--out", str(out)])
    assert code == 1
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "edit,message",
    [
        (("threads: 2", "threads: 2\n  treads: 3"), "treads"),
        (("resolution: 112", "resolution: many"), "tiling.resolution"),
        (("window_ms: 2000", "window_ms: -5"), "decision.window_ms"),
    ],
)
def test_bad_recipes_are_refused_with_the_field_named(edit, message, tmp_path, tiny_recipe_path, good_png, capsys):
    text = tiny_recipe_path.read_text()
    assert edit[0] in text
    tiny_recipe_path.write_text(text.replace(edit[0], edit[1]))
    out = tmp_path / "out"
    assert main(["inspect", str(tiny_recipe_path), str(good_png), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and "recipe.yaml:" in err
    assert not out.exists()


def test_a_missing_recipe_is_a_clear_error(tmp_path, good_png, capsys):
    assert main(["inspect", str(tmp_path / "nope.yaml"), str(good_png), "--out", str(tmp_path / "o")]) == 1
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "image,message",
    [
        (np.zeros((32, 32, 2), np.uint8), "unsupported channel count 2"),
        (np.zeros((0, 32), np.uint8), "empty image"),
        (np.zeros((4, 4, 3, 1), np.uint8), "4 dimensions"),
        (np.zeros((4, 4), np.int32), "unsupported pixel type int32"),
        ("not an array", "expected a numpy image"),
    ],
)
def test_frames_of_the_wrong_shape_or_type_are_named(image, message):
    from edge.errors import BadFrameError
    from edge.imageio import check_frame

    with pytest.raises(BadFrameError, match=message):
        check_frame(image)
