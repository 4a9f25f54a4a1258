"""Synthetic and folder sources: deterministic frames, masks, bad files reported not fatal."""

import cv2
import numpy as np
import pytest

from edge.config.source import FolderSourceConfig, SyntheticSourceConfig
from edge.sources import open_source
from edge.sources.synthetic import DEFECT_TYPES, SyntheticPartRenderer


def test_the_same_seed_renders_the_same_frames():
    a = SyntheticPartRenderer(160, 120, 3, seed=5, defect_rate=0.5)
    b = SyntheticPartRenderer(160, 120, 3, seed=5, defect_rate=0.5)
    for i in range(6):
        fa, fb = a.render(i), b.render(i)
        assert np.array_equal(fa.image, fb.image) and fa.defect_type == fb.defect_type
    assert not np.array_equal(a.render(0).image, SyntheticPartRenderer(160, 120, 3, seed=6).render(0).image)


@pytest.mark.parametrize("kind", DEFECT_TYPES)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_defect_type_changes_exactly_its_masked_pixels(kind, channels):
    renderer = SyntheticPartRenderer(200, 150, channels, seed=1)
    good, bad = renderer.render(4, defect=None), renderer.render(4, defect=kind)
    assert good.ground_truth is None and bad.defect_type == kind
    mask = bad.ground_truth
    assert mask.shape == (150, 200) and 20 < mask.sum() < 0.2 * mask.size
    diff = np.abs(good.image.astype(int) - bad.image.astype(int))
    diff = diff if diff.ndim == 2 else diff.max(axis=2)
    assert (diff[~mask] == 0).all() and (diff[mask] > 0).mean() > 0.5
    assert bad.image.shape == ((150, 200) if channels == 1 else (150, 200, 3)) and bad.image.dtype == np.uint8


def test_defect_rate_is_respected_roughly():
    renderer = SyntheticPartRenderer(64, 64, 1, seed=2, defect_rate=0.3)
    rate = np.mean([renderer.render(i).defect_type is not None for i in range(300)])
    assert 0.2 < rate < 0.4


def test_synthetic_source_yields_increasing_trigger_ids():
    source = open_source(SyntheticSourceConfig(width=64, height=64, seed=0))
    frames = []
    for frame in source:
        frames.append(frame)
        if len(frames) == 3:
            source.close()
    assert [f.trigger_id for f in frames] == [0, 1, 2]


def test_folder_source_reports_a_bad_file_as_a_frame_with_an_error(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))
    (tmp_path / "b.png").write_bytes(b"broken")
    cv2.imwrite(str(tmp_path / "c.png"), np.full((8, 8), 9, np.uint8))
    frames = list(open_source(FolderSourceConfig(path=tmp_path)))
    assert [f.name for f in frames] == ["a", "b", "c"] and [f.trigger_id for f in frames] == [0, 1, 2]
    assert "not a readable image" in frames[1].meta["error"] and "error" not in frames[2].meta
