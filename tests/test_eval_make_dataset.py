"""`iad-edge make-dataset --synthetic`: MVTec layout, gray / odd-sized / 16-bit variants, determinism."""

from __future__ import annotations

import cv2
import numpy as np

from edge.cli import main
from edge.evaluation.datasets import load_dataset


def test_eval_make_dataset_layout(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["make-dataset", "--synthetic", "--out", str(out), "--categories", "4", "--train", "2", "--test", "3",
                 "--seed", "1"]) == 0
    assert "wrote 4 categories" in capsys.readouterr().out
    dataset = load_dataset(out)
    assert [c.name for c in dataset.categories] == ["part_color", "part_color_2", "part_gray", "part_odd"]
    for category in dataset.categories:
        assert len(category.train) == 2 and len(category.test) == 3 and category.n_anomalous == 1
        for sample in category.test:
            image = cv2.imread(str(sample.path), cv2.IMREAD_UNCHANGED)
            assert image.dtype == np.uint8
            if category.name == "part_gray":
                assert image.ndim == 2
            if category.name == "part_odd":
                assert image.shape[:2] == (97, 131)
            if sample.label:
                mask = cv2.imread(str(sample.mask), cv2.IMREAD_UNCHANGED)
                assert mask.shape == image.shape[:2] and set(np.unique(mask)) == {0, 255}
                assert sample.mask.parent.name == sample.defect_type == sample.path.parent.name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_eval_make_dataset_is_deterministic_and_16bit(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, extra in ((a, []), (b, []), (c, ["--bit-depth", "16"])):
        assert main(["make-dataset", "--synthetic", "--out", str(out), "--categories", "1", "--train", "1", "--test", "2", *extra]) == 0
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    img8 = cv2.imread(str(a / "part_color/train/good/000.png"), cv2.IMREAD_UNCHANGED)
    img16 = cv2.imread(str(c / "part_color/train/good/000.png"), cv2.IMREAD_UNCHANGED)
    assert img16.dtype == np.uint16
    np.testing.assert_array_equal(img16, img8.astype(np.uint16) * 257)


def test_eval_make_dataset_refuses_non_empty_out(tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "x").write_text("keep")
    assert main(["make-dataset", "--synthetic", "--out", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["x"]
    assert main(["make-dataset", "--synthetic", "--out", str(tmp_path / "y"), "--test", "1"]) == 1
    assert "2 test images" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
