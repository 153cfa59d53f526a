"""Per-pixel confidence for models that do not predict one (BoRe-Depth).

Definition (documented in docs/nodes.md): a monocular network is least reliable where depth changes
abruptly (object boundaries, where bilinear upsampling also creates "flying pixels") and where its
output saturates at the bounds of its output transform. So

    confidence = exp(-edge_sensitivity * |grad log(depth)|) * (depth not saturated)

with the gradient taken as the larger of the absolute central differences along rows and columns
(in log-depth per pixel, so it does not depend on the unknown scale of relative depth).
"""

from __future__ import annotations

import numpy as np


def _abs_gradient(f: np.ndarray, axis: int) -> np.ndarray:
    """``|np.gradient(f, axis=axis)|`` for float32 ``f`` (central differences inside, one-sided at
    the borders; the same float32 operations, bit for bit) into one new array."""
    f = np.moveaxis(f, axis, -1)
    out = np.empty_like(f)
    np.subtract(f[..., 2:], f[..., :-2], out=out[..., 1:-1])
    np.divide(out[..., 1:-1], 2.0, out=out[..., 1:-1])
    np.subtract(f[..., 1], f[..., 0], out=out[..., 0])
    np.subtract(f[..., -1], f[..., -2], out=out[..., -1])
    np.abs(out, out=out)
    return np.moveaxis(out, -1, axis)


def edge_confidence(
    depth: np.ndarray, edge_sensitivity: float = 8.0, saturation_bounds: tuple[float, float] | None = None
) -> np.ndarray:
    """Confidence in [0, 1] for a batch (N,H,W) or single (H,W) depth map at model resolution."""
    d = np.asarray(depth, dtype=np.float32)
    log_d = np.maximum(d, np.float32(1e-6))
    np.log(log_d, out=log_d)
    # Central differences in the interior; one-sided at the borders (as np.gradient).
    if d.shape[-2] > 1 and d.shape[-1] > 1:
        conf = _abs_gradient(log_d, -2)
        np.maximum(conf, _abs_gradient(log_d, -1), out=conf)
    elif d.shape[-2] > 1 or d.shape[-1] > 1:
        conf = _abs_gradient(log_d, -2 if d.shape[-2] > 1 else -1)
    else:
        conf = np.zeros_like(log_d)
    np.multiply(conf, np.float32(-edge_sensitivity), out=conf)
    np.exp(conf, out=conf)
    if saturation_bounds is not None:
        lo, hi = saturation_bounds
        # Within 1 % of either bound the sigmoid is saturated: the value says only "near"/"far".
        conf[(d <= lo * 1.01) | (d >= hi * 0.99)] = 0.0
    conf[~np.isfinite(d)] = 0.0
    return conf
