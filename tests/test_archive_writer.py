"""Archive writer: complete entries, retention by size and age, disk errors reported without stopping."""

from __future__ import annotations

import json
import os
import time

import cv2
import numpy as np

from edge.archive import MAP_SCALE, Archive
from edge.config.archive import ArchiveConfig
from edge.types import Frame, InspectionResult, Region


def _frame(i: int) -> Frame:
    rng = np.random.default_rng(i)
    return Frame(image=rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), trigger_id=i, trigger_time=time.time())


def _result() -> InspectionResult:
    amap = np.zeros((64, 80), np.float32)
    amap[10:20, 30:40] = 0.8
    region = Region(bbox=[30, 10, 40, 20], area_px=100, centroid=[34.5, 14.5], peak=0.8, mean=0.8, location="top-center")
    return InspectionResult(score=0.8, verdict="NG", reason="score", regions=[region], anomaly_map=amap)


def _drain(archive: Archive, written: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while archive.written + archive.errors < written and time.monotonic() < deadline:
        time.sleep(0.02)


def test_entry_has_frame_map_overlay_and_result(tmp_path):
    archive = Archive(ArchiveConfig(path=tmp_path / "a"), session="s1").start()
    frame, result = _frame(1), _result()
    entry = archive.entry_for(frame, "NG")
    assert archive.submit(entry, frame, result, {"trigger_id": 1}, pixel_threshold=0.5)
    archive.close()
    assert sorted(p.name for p in entry.iterdir()) == ["frame.png", "map.png", "overlay.png", "result.json"]
    assert np.array_equal(cv2.imread(str(entry / "frame.png"), cv2.IMREAD_UNCHANGED), frame.image)
    amap = cv2.imread(str(entry / "map.png"), cv2.IMREAD_UNCHANGED)
    assert amap.dtype == np.uint16 and abs(amap[15, 35] / MAP_SCALE - 0.8) < 1e-4 and amap[0, 0] == 0
    body = json.loads((entry / "result.json").read_text())
    assert body["trigger_id"] == 1 and body["map_scale"] == MAP_SCALE
    assert not list(entry.parent.glob(".tmp-*"))


def test_ok_frames_are_sampled_evenly():
    archive = Archive(ArchiveConfig(path="unused", ok_sample_rate=0.25), session="s")
    picks = [archive.wants("OK") for _ in range(100)]
    assert sum(picks) == 25 and archive.wants("NG")


def test_retention_keeps_total_size_and_drops_old_entries(tmp_path):
    root = tmp_path / "a"
    old = root / "2000-01-01" / "000000_000_old_1_NG"
    old.mkdir(parents=True)
    (old / "result.json").write_text("{}")
    past = time.time() - 40 * 86400
    os.utime(old, (past, past))
    archive = Archive(ArchiveConfig(path=root, max_total_mb=0.04, max_age_days=30), session="s").start()
    entries = []
    for i in range(6):  # each entry is ~20 kB (random frame PNG)
        frame = _frame(i)
        entries.append(archive.entry_for(frame, "NG", when=time.time() + i))
        archive.submit(entries[-1], frame, _result(), {"trigger_id": i}, 0.5)
        _drain(archive, i + 1)
    archive.close()
    assert not old.exists() and not old.parent.exists()  # too old: deleted at start, with its empty day folder
    kept = [e for e in entries if e.exists()]
    assert kept == entries[-len(kept):] and 1 <= len(kept) < 6  # the newest survive, oldest went first
    size = sum(f.stat().st_size for e in kept for f in e.iterdir())
    assert size <= 0.04e6 or len(kept) == 1
    assert archive.deleted == 1 + (6 - len(kept))


def test_disk_full_is_reported_and_the_writer_keeps_going(tmp_path):
    archive = Archive(ArchiveConfig(path=tmp_path / "a"), session="s").start()
    first = archive.entry_for(_frame(6), "NG", when=1_799_999_999.0)
    archive.submit(first, _frame(6), _result(), {"trigger_id": 6}, 0.5)
    _drain(archive, 1)  # the writer is up and has cleaned old .tmp- folders: now set the trap
    frame = _frame(7)
    entry = archive.entry_for(frame, "NG", when=1_800_000_000.0)
    tmp = entry.parent / f".tmp-{entry.name}"
    tmp.mkdir(parents=True)
    os.symlink("/dev/full", tmp / "frame.png")  # the kernel answers every write with ENOSPC
    archive.submit(entry, frame, _result(), {"trigger_id": 7}, 0.5)
    _drain(archive, 2)
    assert archive.errors == 1 and "disk full (ENOSPC)" in archive.last_error
    assert not entry.exists() and not tmp.exists()  # no half entry left behind
    good = archive.entry_for(_frame(8), "NG", when=1_800_000_001.0)
    archive.submit(good, _frame(8), _result(), {"trigger_id": 8}, 0.5)
    archive.close()
    assert (good / "result.json").exists() and archive.written == 2
    assert archive.stats()["errors"] == 1
