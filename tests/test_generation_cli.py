"""`iad-edge generate`: files in, file out, errors name the problem and leave no file."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.cli import main


@pytest.fixture
def generation_inputs(tmp_path):
    rng = np.random.default_rng(1)
    img = (cv2.GaussianBlur(rng.integers(0, 256, (80, 100, 3)).astype(np.uint8), (0, 0), 1.5) // 2 + 90).astype(np.uint8)
    mask = np.zeros((80, 100), np.uint8)
    cv2.line(mask, (20, 20), (70, 50), 255, 4)
    cv2.imwrite(str(tmp_path / "part.png"), img)
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    return tmp_path, img, mask


def test_generate_cli_writes_deterministic_image(generation_inputs, capsys) -> None:
    d, img, mask = generation_inputs
    args = ["generate", str(d / "part.png"), "--mask", str(d / "mask.png"), "--type", "crack", "--seed", "4"]
    assert main([*args, "--out", str(d / "a.png")]) == 0
    assert main([*args, "--out", str(d / "b.png")]) == 0
    a = cv2.imread(str(d / "a.png"), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(d / "b.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(a, b)
    far = cv2.dilate(mask, np.ones((9, 9), np.uint8)) == 0  # beyond the 3 px band
    assert np.array_equal(a[far], img[far])
    assert (a != img).any(axis=2)[mask > 0].mean() > 0.9
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["defect_type"] == "crack" and report["mask_px"] == int((mask > 0).sum())


def test_generate_cli_16bit_gray_round_trip(tmp_path) -> None:
    img = (np.random.default_rng(0).integers(20000, 40000, (64, 64))).astype(np.uint16)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 25:45] = 255
    cv2.imwrite(str(tmp_path / "p.png"), img)
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    assert main(["generate", str(tmp_path / "p.png"), "--mask", str(tmp_path / "m.png"), "--type", "dent",
                 "--out", str(tmp_path / "o.png")]) == 0
    out = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == img.shape


@pytest.mark.parametrize(
    "mask_shape, kind, message",
    [
        ((40, 50), "crack", "mask is 50x40 (WxH) but the image is 100x80"),
        (None, "crack", "mask is empty"),
        ((80, 100), "bubble", "unknown defect type 'bubble'"),
    ],
)
def test_generate_cli_bad_input_is_a_clear_error_and_writes_nothing(generation_inputs, capsys, mask_shape, kind, message) -> None:
    d, _, _ = generation_inputs
    bad = np.zeros(mask_shape or (80, 100), np.uint8)
    if mask_shape is not None:
        bad[5:15, 5:15] = 255
    cv2.imwrite(str(d / "bad.png"), bad)
    out = d / "never.png"
    rc = main(["generate", str(d / "part.png"), "--mask", str(d / "bad.png"), "--type", kind, "--out", str(out)])
    assert rc == 1
    assert message in capsys.readouterr().err
    assert not out.exists()
