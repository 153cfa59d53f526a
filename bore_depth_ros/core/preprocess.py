"""Model-input preparation shared by inference (the engine) and training (no ROS, no torch).

Both paths turn an RGB uint8 frame into the model's input the same way, so a frame gives
bit-identical inputs whether it is served by a node, replayed, or trained on:
``resize_unit`` (bilinear, no crop, no aspect preservation, values in [0, 1]) then
``normalise_into`` (per-channel mean/std, HWC -> CHW). Training inserts its augmentations on the
[0, 1] image between the two.
"""

from __future__ import annotations

import functools

import numpy as np

from .resize import resize_bilinear

_INV255 = np.float32(1.0 / 255.0)


def resize_unit(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width, 3) float32 in [0, 1] of an (H, W, 3) uint8 RGB image (a new array)."""
    if rgb.shape[:2] != (height, width):
        x = resize_bilinear(rgb, height, width)
    else:
        x = rgb.astype(np.float32)
    x *= _INV255
    return x


def normalise_into(img01: np.ndarray, mean, std, out: np.ndarray | None = None) -> np.ndarray:
    """(3, h, w) float32 ``(img01 - mean) / std`` of an (h, w, 3) image in [0, 1]; written into
    ``out`` (a (3, h, w) view, e.g. one slot of a batch) when given."""
    m, s = _per_channel(mean, std)
    if img01.ndim != 3 or img01.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) image, got shape {img01.shape}")
    if img01.dtype != np.float32:  # float64 (augmented) images: the arithmetic in their precision
        chw = ((img01 - m) / s).transpose(2, 0, 1)
        if out is None:
            return np.ascontiguousarray(chw, dtype=np.float32)
        out[...] = chw
        return out
    if out is None:
        out = np.empty((3, *img01.shape[:2]), np.float32)
    # channel by channel straight into the (3, h, w) slot: the same float32 operations as the
    # broadcast form, without its two full-size temporaries and the transposing copy
    for c in range(3):
        np.subtract(img01[..., c], m[c], out=out[c])
        np.divide(out[c], s[c], out=out[c])
    return out


def _per_channel(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std as float32 (3,) arrays (a scalar applies to every channel)."""
    m = np.broadcast_to(np.asarray(mean, np.float32), (3,))
    s = np.broadcast_to(np.asarray(std, np.float32), (3,))
    return m, s


@functools.lru_cache(maxsize=8)
def _uint8_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: the normalised value of every uint8 level per channel, computed with the
    float32 operations of ``resize_unit`` + ``normalise_into`` (so a lookup is bit-identical)."""
    levels = np.arange(256, dtype=np.uint8).astype(np.float32)
    levels *= _INV255
    m, s = _per_channel(mean, std)
    table = np.stack([(levels - m[c]) / s[c] for c in range(3)])
    table.flags.writeable = False
    return table


def model_input(
    rgb: np.ndarray, input_hw: tuple[int, int], mean, std, out: np.ndarray | None = None
) -> np.ndarray:
    """The model input (3, h, w) of one RGB uint8 frame: ``resize_unit`` then ``normalise_into``.

    A frame already at the input size is normalised by a per-channel lookup of its uint8 levels
    (bit-identical to the two steps, a third of their time)."""
    if rgb.shape[:2] != tuple(input_hw) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        return normalise_into(resize_unit(rgb, *input_hw), mean, std, out)
    m, s = _per_channel(mean, std)
    table = _uint8_table(tuple(float(v) for v in m), tuple(float(v) for v in s))
    if out is None:
        out = np.empty((3, *rgb.shape[:2]), np.float32)
    for c in range(3):
        np.take(table[c], rgb[..., c], out=out[c], mode="clip")  # uint8 indices are in range
    return out
