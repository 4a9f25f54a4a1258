"""GenICam pixel formats -> the image the expert takes (gray or BGR, uint8 or uint16).

The buffer data of a GenTL component is a flat array; the pixel format name
(PFNC) says how to read it. Mono10/12/14 arrive LSB-aligned in 16-bit
containers; they are shifted up to fill 16 bits (MSB-aligned), the convention
the expert's preprocessing uses for every uint16 image (value / 257), so the
score does not depend on the camera's bit depth. ``frame.meta['bit_depth']``
keeps the original depth. Bayer mosaics are demosaiced with OpenCV. Packed
formats (Mono10p, Mono12p, ...) are refused with a clear error: configure the
camera for the unpacked variant.

Note on Bayer names: PFNC names the pattern by its first row (``BayerRG`` =
R G / G B), OpenCV by the second row's second and third pixels, so GenICam
``BayerRG`` is OpenCV ``BayerBG``. :data:`BAYER_CODES` holds the mapping (checked
by a test that mosaics a known colour image).
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.errors import BadFrameError

MONO = {"Mono8": (np.uint8, 8), "Mono10": (np.uint16, 10), "Mono12": (np.uint16, 12), "Mono14": (np.uint16, 14),
        "Mono16": (np.uint16, 16)}
COLOR = {"RGB8": (3, cv2.COLOR_RGB2BGR), "BGR8": (3, None), "RGBa8": (4, cv2.COLOR_RGBA2BGR),
         "BGRa8": (4, cv2.COLOR_BGRA2BGR)}
BAYER_CODES = {"BayerRG": cv2.COLOR_BayerBG2BGR, "BayerBG": cv2.COLOR_BayerRG2BGR,
               "BayerGR": cv2.COLOR_BayerGB2BGR, "BayerGB": cv2.COLOR_BayerGR2BGR}
BAYER_DEPTHS = {"8": (np.uint8, 8), "10": (np.uint16, 10), "12": (np.uint16, 12), "16": (np.uint16, 16)}

SUPPORTED = sorted(list(MONO) + list(COLOR) + [f"{p}{d}" for p in BAYER_CODES for d in BAYER_DEPTHS])


def bit_depth(pixel_format: str) -> int:
    """Significant bits per sample of a supported format (8 for colour formats)."""
    if pixel_format in MONO:
        return MONO[pixel_format][1]
    for prefix in BAYER_CODES:
        if pixel_format.startswith(prefix) and pixel_format[len(prefix):] in BAYER_DEPTHS:
            return BAYER_DEPTHS[pixel_format[len(prefix):]][1]
    return 8


def to_image(data: np.ndarray, width: int, height: int, pixel_format: str) -> np.ndarray:
    """Convert one buffer component to an owned gray (H, W) or BGR (H, W, 3) array.

    Raises :class:`BadFrameError` naming the format and sizes when the buffer
    does not hold ``width * height`` pixels of that format.
    """
    flat = np.asarray(data).reshape(-1)
    if pixel_format in MONO:
        dtype, bits = MONO[pixel_format]
        return _msb_align(_reshape(flat, dtype, (height, width), pixel_format).copy(), bits)
    if pixel_format in COLOR:
        channels, code = COLOR[pixel_format]
        image = _reshape(flat, np.uint8, (height, width, channels), pixel_format)
        return image.copy() if code is None else cv2.cvtColor(image, code)
    for prefix, code in BAYER_CODES.items():
        depth = pixel_format[len(prefix):]
        if pixel_format.startswith(prefix) and depth in BAYER_DEPTHS:
            dtype, bits = BAYER_DEPTHS[depth]
            mosaic = _msb_align(_reshape(flat, dtype, (height, width), pixel_format).copy(), bits)
            return cv2.cvtColor(mosaic, code)
    raise BadFrameError(
        f"pixel format {pixel_format!r} is not supported; set the camera's PixelFormat to one of: {', '.join(SUPPORTED)}"
    )


def _msb_align(image: np.ndarray, bits: int) -> np.ndarray:
    """Shift LSB-aligned 10/12/14-bit samples up so that full scale is 65535-ish (in place)."""
    if image.dtype == np.uint16 and bits < 16:
        image <<= np.uint16(16 - bits)
    return image


def _reshape(flat: np.ndarray, dtype: type, shape: tuple[int, ...], pixel_format: str) -> np.ndarray:
    raw = flat.view(np.uint8) if flat.dtype != np.uint8 else flat
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if raw.size < need:
        raise BadFrameError(
            f"{pixel_format} buffer holds {raw.size} bytes, {shape[1]}x{shape[0]} needs {need} (incomplete or packed data)"
        )
    return raw[:need].view(dtype).reshape(shape)
