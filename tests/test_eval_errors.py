"""Bad datasets and bad arguments: a specific message naming the file, exit 1, and no report written."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import main


def _eval_fails(recipe: Path, dataset: Path, out: Path, capsys, *extra: str) -> str:
    capsys.readouterr()
    assert main(["eval", str(recipe), str(dataset), "--out", str(out), "--no-progress", *extra]) == 1
    assert not out.exists(), "a failed evaluation must not leave a report folder"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}-")], "staging folder left behind"
    err = capsys.readouterr().err
    assert err.startswith("iad-edge eval: error: ")
    return err


def test_eval_missing_mask(tiny_recipe_path, eval_dataset_copy, tmp_path, capsys):
    mask = eval_dataset_copy / "part_gray/ground_truth/spot/001_mask.png"
    mask.unlink()
    err = _eval_fails(tiny_recipe_path, eval_dataset_copy, tmp_path / "out", capsys)
    assert "part_gray/test/spot/001.png: ground-truth mask missing" in err
    assert f"(expected {mask})" in err


def test_eval_mask_of_wrong_size(tiny_recipe_path, eval_dataset_copy, tmp_path, capsys):
    mask = eval_dataset_copy / "part_odd/ground_truth/scratch/000_mask.png"
    cv2.imwrite(str(mask), np.zeros((50, 60), np.uint8))
    err = _eval_fails(tiny_recipe_path, eval_dataset_copy, tmp_path / "out", capsys)
    assert f"{mask}: mask is 60x50 but its image" in err
    assert "is 131x97; masks must have the image's size" in err


@pytest.mark.parametrize(
    "folder, message",
    [
        ("part_color/train/good", "category 'part_color' has no good training images"),
        ("part_color/test", "category 'part_color' has no test images"),
        ("part_color/test/good", "category 'part_color' has no good test images"),
    ],
)
def test_eval_empty_category(tiny_recipe_path, eval_dataset_copy, tmp_path, capsys, folder, message):
    target = eval_dataset_copy / folder
    shutil.rmtree(target)
    if folder.endswith("good") and "train" in folder:
        target.mkdir()  # an existing but empty train/good is the same error
    err = _eval_fails(tiny_recipe_path, eval_dataset_copy, tmp_path / "out", capsys)
    assert message in err


def test_eval_no_defective_test_images(tiny_recipe_path, eval_dataset_copy, tmp_path, capsys):
    for d in (eval_dataset_copy / "part_gray/test").iterdir():
        if d.name != "good":
            shutil.rmtree(d)
    err = _eval_fails(tiny_recipe_path, eval_dataset_copy, tmp_path / "out", capsys)
    assert "category 'part_gray' has no defective test images" in err


def test_eval_unknown_category_and_layout(tiny_recipe_path, eval_dataset_dir, tmp_path, capsys):
    err = _eval_fails(tiny_recipe_path, eval_dataset_dir, tmp_path / "out", capsys, "--categories", "part_color,bolt")
    assert "no category 'bolt' (found: part_color, part_gray, part_odd)" in err
    (tmp_path / "empty").mkdir()
    err = _eval_fails(tiny_recipe_path, tmp_path / "empty", tmp_path / "out", capsys)
    assert "not an MVTec AD layout" in err


def test_eval_too_many_shots(tiny_recipe_path, eval_dataset_dir, tmp_path, capsys):
    err = _eval_fails(tiny_recipe_path, eval_dataset_dir, tmp_path / "out", capsys, "--shots", "9")
    assert "has 4 good training images, fewer than --shots 9" in err


def test_eval_refuses_non_empty_out(tiny_recipe_path, eval_dataset_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["eval", str(tiny_recipe_path), str(eval_dataset_dir), "--out", str(out), "--no-progress"]) == 1
    assert "folder exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_eval_visa_csv_errors(tiny_recipe_path, eval_dataset_dir, tmp_path, capsys):
    root = tmp_path / "visa"
    (root / "split_csv").mkdir(parents=True)
    csv_path = root / "split_csv/1cls.csv"
    csv_path.write_text("object,split,image\nx,train,a.png\n")
    err = _eval_fails(tiny_recipe_path, root, tmp_path / "out", capsys)
    assert f"{csv_path}:1: missing column(s) label, mask" in err
    shutil.copy(eval_dataset_dir / "part_color/test/good/000.png", root / "a.png")
    csv_path.write_text("object,split,label,image,mask\nx,train,normal,a.png,\nx,test,anomaly,a.png,m.png\n")
    err = _eval_fails(tiny_recipe_path, root, tmp_path / "out", capsys)
    assert f"{csv_path}:3: ground-truth mask missing for {root / 'a.png'}" in err
    csv_path.write_text("object,split,label,image,mask\nx,train,broken,a.png,\n")
    err = _eval_fails(tiny_recipe_path, root, tmp_path / "out", capsys)
    assert f"{csv_path}:2: label must be 'normal' or 'anomaly' (got 'broken')" in err


def test_eval_argument_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "recipe.yaml"])
    assert exc.value.code == 2
    assert "RECIPE, DATASET and --out are required" in capsys.readouterr().err
