"""Zero-copy decoding of sensor_msgs/Image buffers into (H, W, 3) uint8 RGB views."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .errors import (
    BIG_ENDIAN_UNSUPPORTED,
    EMPTY_IMAGE,
    SIZE_MISMATCH,
    STEP_TOO_SMALL,
    TRUNCATED_DATA,
    UNKNOWN_ENCODING,
    InputRejected,
)

SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")

# encoding -> (bytes per pixel, bytes per channel sample, channel index selecting R, G, B in order)
_LAYOUT = {
    "rgb8": (3, 1, slice(None)),
    "bgr8": (3, 1, slice(None, None, -1)),
    "rgba8": (4, 1, slice(0, 3)),
    "bgra8": (4, 1, slice(2, None, -1)),
    "mono8": (1, 1, None),
}


def _nbytes(data) -> int:
    if isinstance(data, np.ndarray):
        return int(data.nbytes)
    return memoryview(data).nbytes


def _flat_bytes(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        # frombuffer needs a contiguous buffer; a strided array can only be used through a copy.
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def check_layout(data, width: int, height: int, step: int, bpp: int, encoding: str) -> None:
    """Raise InputRejected unless ``data`` holds ``height`` rows of ``step`` bytes, each at least
    ``width`` pixels of ``bpp`` bytes (``encoding`` names them in the message), for a non-empty
    image."""
    if width <= 0 or height <= 0:
        raise InputRejected(EMPTY_IMAGE, f"image is {width}x{height}; width and height must be > 0")
    min_step = width * bpp
    if step < min_step:
        raise InputRejected(
            STEP_TOO_SMALL, f"step {step} < width {width} * {bpp} bytes per pixel = {min_step} ({encoding})"
        )
    n = _nbytes(data)
    expected = step * height
    if n < expected:
        raise InputRejected(
            TRUNCATED_DATA, f"data has {n} bytes, expected step {step} * height {height} = {expected}"
        )
    if n > expected:
        raise InputRejected(
            SIZE_MISMATCH, f"data has {n} bytes, expected step {step} * height {height} = {expected}"
        )


def image_to_rgb(
    data, width: int, height: int, step: int, encoding: str, is_bigendian: int = 0
) -> np.ndarray:
    """View an image buffer as a read-only (height, width, 3) uint8 RGB array without copying.

    ``data`` is any byte buffer (bytes, bytearray, array.array('B'), memoryview, uint8 ndarray); rows
    may be padded (``step`` > width * bytes per pixel). ``data`` must hold exactly ``step * height``
    bytes. Raises :class:`InputRejected` naming the first problem found.
    """
    layout = _LAYOUT.get(encoding)
    if layout is None:
        raise InputRejected(
            UNKNOWN_ENCODING,
            f"encoding {encoding!r} is not supported (supported: {', '.join(SUPPORTED_ENCODINGS)})",
        )
    bpp, sample_bytes, channels = layout
    width, height, step = int(width), int(height), int(step)
    check_layout(data, width, height, step, bpp, encoding)
    if is_bigendian and sample_bytes > 1:  # byte order is meaningless for 8-bit samples
        raise InputRejected(
            BIG_ENDIAN_UNSUPPORTED, f"encoding {encoding} has {sample_bytes}-byte samples in big-endian order"
        )

    flat = _flat_bytes(data)
    if channels is None:  # mono8: repeat the single channel with a zero stride
        return as_strided(flat, shape=(height, width, 3), strides=(step, 1, 0), writeable=False)
    pixels = as_strided(flat, shape=(height, width, bpp), strides=(step, bpp, 1), writeable=False)
    return pixels[..., channels]


def rgb_contiguous(rgb: np.ndarray) -> np.ndarray:
    """Return ``rgb`` as a C-contiguous uint8 array, copying only when it is not one already."""
    return np.ascontiguousarray(rgb, dtype=np.uint8)
