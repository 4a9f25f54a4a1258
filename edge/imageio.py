"""Reading images from disk and turning any camera image into the expert's input.

The expert graph takes uint8 RGB. Cameras and files give gray or BGR(A),
8 or 16 bit, any size: this module is the one place that converts, and the one
place that rejects what cannot be converted (with the reason).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.atomic import write_bytes_atomic
from edge.errors import BadFrameError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as stored (gray or BGR, 8 or 16 bit); raise BadFrameError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise BadFrameError(f"{path}: no such image file")
    if path.stat().st_size == 0:
        raise BadFrameError(f"{path}: empty file (0 bytes)")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BadFrameError(f"{path}: not a readable image (supported: {', '.join(IMAGE_SUFFIXES)})")
    check_frame(image, what=str(path))
    return image


def check_frame(image: object, what: str = "frame") -> np.ndarray:
    """Validate a frame's type and shape; return it unchanged or raise BadFrameError saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise BadFrameError(f"{what}: expected a numpy image, got {type(image).__name__}")
    if image.size == 0 or 0 in image.shape[:2]:
        raise BadFrameError(f"{what}: empty image (shape {image.shape})")
    if image.dtype not in (np.uint8, np.uint16):
        raise BadFrameError(f"{what}: unsupported pixel type {image.dtype} (expected uint8 or uint16)")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise BadFrameError(f"{what}: unsupported channel count {image.shape[2]} (expected 1, 3 or 4)")
    if image.ndim not in (2, 3):
        raise BadFrameError(f"{what}: expected a 2-D gray or 3-D colour image, got {image.ndim} dimensions")
    return image


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Gray/BGR/BGRA, uint8/uint16 -> contiguous uint8 RGB (H, W, 3).

    16-bit images are scaled by the full 16-bit range (value / 257): camera
    sources deliver Mono10/12 left-aligned into 16 bit, so the same factor
    applies to every bit depth and scores do not depend on image content.
    """
    check_frame(image)
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 + 32767) // 65535
        image = image.astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any accepted frame -> uint8 BGR, for overlays and archives."""
    return cv2.cvtColor(to_rgb8(image), cv2.COLOR_RGB2BGR)


def write_image_atomic(path: str | Path, image: np.ndarray) -> None:
    """Encode by the file suffix and replace ``path`` atomically (no half-written files)."""
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise OSError(f"cannot encode image for {path}")
    write_bytes_atomic(path, buf.tobytes(), fsync=False)
