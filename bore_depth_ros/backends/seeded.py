"""Deterministic model inputs for export, parity checks, self-checks and benchmarks (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..models.info import IMAGENET_MEAN, IMAGENET_STD
from .base import InputShapes, validate_input_shape, validate_input_shapes

_MEAN = np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
_STD = np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)


def seeded_input(input_shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """A deterministic ImageNet-normalised batch: uniform [0, 1) pixels, so values stay in the range
    models see."""
    shape = validate_input_shape(input_shape)
    pixels = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return np.ascontiguousarray((pixels - _MEAN) / _STD, dtype=np.float32)


def seeded_inputs(input_shape: InputShapes, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic float32 inputs in their natural ranges, keyed by name (one shape: ``{"image": ...}``).

    "image" is :func:`seeded_input` (so single-input checks are unchanged), "prev_image" the same with
    seed + 1, "rays" random unit vectors along axis 1, "origins" uniform in [-2, 2) m, "focal" uniform
    in [0.5, 2); any other name uniform in [0, 1).
    """
    shapes = validate_input_shapes(input_shape)
    out: dict[str, np.ndarray] = {}
    for i, (name, shape) in enumerate(shapes.items()):
        rng = np.random.default_rng([seed, i])
        if name == "image":
            x = seeded_input(shape, seed)
        elif name == "prev_image":
            x = seeded_input(shape, seed + 1)
        elif name == "rays" and len(shape) >= 2:
            x = rng.standard_normal(shape).astype(np.float32)
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
        elif name == "origins":
            x = rng.uniform(-2.0, 2.0, shape)
        elif name == "focal":
            x = rng.uniform(0.5, 2.0, shape)
        else:
            x = rng.random(shape)
        out[name] = np.ascontiguousarray(x, dtype=np.float32)
    return out
