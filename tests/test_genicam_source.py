"""GenICam source against the GenTL simulator (or $IAD_TEST_CTI): settings, named errors, pixel formats."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge.config.source import GenicamSourceConfig
from edge.errors import BadFrameError
from edge.sources import open_source
from edge.sources.genicam import CameraError, GenicamSettingError
from edge.sources.pixel_formats import to_image


def _cfg(cti, settings, **kw):
    return GenicamSourceConfig(producer=cti, settings=[{"node": k, "value": v} for k, v in settings], fetch_timeout_s=2, **kw)


def test_settings_are_applied_in_order_read_back_and_frames_arrive(genicam_cti):
    source = open_source(_cfg(genicam_cti, [("PixelFormat", "Mono8"), ("Width", 320), ("Height", 240)]))
    try:
        assert [(s["node"], s["read_back"]) for s in source.stats["applied_settings"]] == [
            ("PixelFormat", "Mono8"), ("Width", 320), ("Height", 240)]
        frames = list(itertools.islice(iter(source), 3))
    finally:
        source.close()
    assert all(f.image.shape == (240, 320) and f.image.dtype == np.uint8 for f in frames)
    ids = [f.trigger_id for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert all("error" not in f.meta for f in frames)


def test_rgba_frames_become_bgr(genicam_cti):
    source = open_source(_cfg(genicam_cti, [("PixelFormat", "RGBa8"), ("Width", 160), ("Height", 120)]))
    try:
        frame = next(iter(source))
    finally:
        source.close()
    assert frame.image.shape == (120, 160, 3) and frame.meta["pixel_format"] == "RGBa8"


@pytest.mark.parametrize(
    "settings, message",
    [
        ([("Widht", 320)], "camera setting Widht = 320: the camera has no node 'Widht'; did you mean Width"),
        ([("Width", 5000)], "camera setting Width = 5000: the camera rejected the value"),
        ([("PixelFormat", "Mono9")], "camera setting PixelFormat = 'Mono9': the camera rejected the value"),
        ([("PayloadSize", 10)], "camera setting PayloadSize = 10: node PayloadSize is read-only"),
    ],
)
def test_bad_node_or_value_is_a_named_error(genicam_cti, settings, message):
    with pytest.raises(GenicamSettingError) as err:
        open_source(_cfg(genicam_cti, settings))
    assert message in str(err.value)
    if "Width = 5000" in message:
        assert "range" in str(err.value)
    if "Mono9" in message:
        assert "allowed: RGBa8, Mono8" in str(err.value)


def test_missing_device_names_the_cameras_found(genicam_cti):
    with pytest.raises(CameraError, match="no camera matches .*cameras found: #0"):
        open_source(_cfg(genicam_cti, [], serial_number="nope"))


def _mosaic(bgr, first_row):
    rows = {"RG": ("RG", "GB"), "BG": ("BG", "GR"), "GR": ("GR", "BG"), "GB": ("GB", "RG")}[first_row]
    idx = {"B": 0, "G": 1, "R": 2}
    out = np.zeros(bgr.shape[:2], bgr.dtype)
    for y in range(2):
        for x in range(2):
            out[y::2, x::2] = bgr[y::2, x::2, idx[rows[y][x]]]
    return out


@pytest.mark.parametrize("pattern", ["RG", "BG", "GR", "GB"])
def test_bayer_demosaic_keeps_colours(pattern):
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[:, :4] = (0, 0, 255)  # red left
    bgr[:, 4:] = (255, 0, 0)  # blue right
    image = to_image(_mosaic(bgr, pattern), 8, 8, f"Bayer{pattern}8")
    assert tuple(image[4, 1]) == (0, 0, 255) and tuple(image[4, 6]) == (255, 0, 0)


def test_mono_and_colour_formats():
    mono12 = (np.arange(12, dtype=np.uint16) * 300).view(np.uint8)
    out = to_image(mono12, 4, 3, "Mono12")
    assert out.dtype == np.uint16 and out.shape == (3, 4) and out[2, 3] == 3300 << 4  # MSB-aligned like every uint16 frame
    rgb = np.array([[[10, 20, 30]]], np.uint8)
    assert tuple(to_image(rgb.reshape(-1), 1, 1, "RGB8")[0, 0]) == (30, 20, 10)
    assert tuple(to_image(rgb.reshape(-1), 1, 1, "BGR8")[0, 0]) == (10, 20, 30)


def test_short_buffer_and_packed_format_are_bad_frames():
    with pytest.raises(BadFrameError, match="Mono16 buffer holds 10 bytes, 4x3 needs 24"):
        to_image(np.zeros(10, np.uint8), 4, 3, "Mono16")
    with pytest.raises(BadFrameError, match="'Mono12p' is not supported"):
        to_image(np.zeros(24, np.uint8), 4, 3, "Mono12p")


def test_lost_device_is_reopened_with_backoff_and_frames_continue(genicam_cti):
    cfg = GenicamSourceConfig(producer=genicam_cti, settings=[{"node": "PixelFormat", "value": "Mono8"}],
                              fetch_timeout_s=0.5, reconnect_backoff_s=[0.2])
    source = open_source(cfg)
    try:
        frames = iter(source)
        before = [f.trigger_id for f in itertools.islice(frames, 2)]
        source._worker.acquirer.destroy()  # the device handle disappears under the running acquisition
        after = list(itertools.islice(frames, 3))
    finally:
        source.close()
    assert len(before) == 2 and len(after) == 3
    assert all(f.image.size and "error" not in f.meta for f in after)
    assert source.stats["reconnects"] == 1 and "GenTL" in source.stats["last_error"]


def test_hung_fetch_is_abandoned_and_the_camera_reopened(genicam_cti):
    """A GenTL call that never returns (device gone, driver stuck) must not stall the source forever."""
    import threading

    cfg = GenicamSourceConfig(producer=genicam_cti, settings=[{"node": "PixelFormat", "value": "Mono8"}],
                              fetch_timeout_s=0.5, reconnect_backoff_s=[0.3])
    source = open_source(cfg)
    release = threading.Event()
    try:
        frames = iter(source)
        next(frames)
        stuck = source._worker
        real_fetch = stuck.acquirer.fetch

        def hung_fetch(*args, **kwargs):  # stands in for a producer call that blocks
            release.wait(60)
            return real_fetch(*args, **kwargs)

        stuck.acquirer.fetch = hung_fetch
        # If the producer refuses a second open while the stuck handle exists, the source keeps
        # retrying with back-off; the stuck call returning (and releasing the device) lets it through.
        threading.Timer(source.hang_after_s + 3.0, release.set).start()
        after = list(itertools.islice(frames, 2))
    finally:
        release.set()
        source.close()
    assert stuck.abandoned.is_set() and source._worker is not stuck
    assert source.stats["reconnects"] == 1
    assert "did not answer" in source.stats["last_error"] or "reconnect failed" in source.stats["last_error"]
    assert len(after) == 2 and all(f.image.size for f in after)
