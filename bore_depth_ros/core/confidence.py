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


def edge_confidence(
    depth: np.ndarray, edge_sensitivity: float = 8.0, saturation_bounds: tuple[float, float] | None = None
) -> np.ndarray:
    """Confidence in [0, 1] for a batch (N,H,W) or single (H,W) depth map at model resolution."""
    d = np.asarray(depth, dtype=np.float32)
    log_d = np.log(np.maximum(d, 1e-6))
    grad = np.zeros_like(log_d)
    # Central differences in the interior; one-sided at the borders (np.gradient does both).
    gy = np.abs(np.gradient(log_d, axis=-2)) if d.shape[-2] > 1 else grad
    gx = np.abs(np.gradient(log_d, axis=-1)) if d.shape[-1] > 1 else grad
    np.maximum(gx, gy, out=grad)
    conf = np.exp(-edge_sensitivity * grad, dtype=np.float32)
    if saturation_bounds is not None:
        lo, hi = saturation_bounds
        # Within 1 % of either bound the sigmoid is saturated: the value says only "near"/"far".
        conf[(d <= lo * 1.01) | (d >= hi * 0.99)] = 0.0
    conf[~np.isfinite(d)] = 0.0
    return conf
