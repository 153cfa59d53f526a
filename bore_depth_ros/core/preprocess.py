"""Model-input preparation shared by inference (the engine) and training (no ROS, no torch).

Both paths turn an RGB uint8 frame into the model's input the same way, so a frame gives
bit-identical inputs whether it is served by a node, replayed, or trained on:
``resize_unit`` (bilinear, no crop, no aspect preservation, values in [0, 1]) then
``normalise_into`` (per-channel mean/std, HWC -> CHW). Training inserts its augmentations on the
[0, 1] image between the two.
"""

from __future__ import annotations

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
    x = (img01 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    chw = x.transpose(2, 0, 1)
    if out is None:
        return np.ascontiguousarray(chw, dtype=np.float32)
    out[...] = chw
    return out


def model_input(
    rgb: np.ndarray, input_hw: tuple[int, int], mean, std, out: np.ndarray | None = None
) -> np.ndarray:
    """The model input (3, h, w) of one RGB uint8 frame: ``resize_unit`` then ``normalise_into``."""
    return normalise_into(resize_unit(rgb, *input_hw), mean, std, out)
