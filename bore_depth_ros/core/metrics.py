"""Standard monocular depth metrics (KITTI/DDAD conventions), one implementation for all users.

``depth_metrics(pred, gt, min_depth, max_depth, median_scaling)``: valid pixels are those where the
ground truth is finite and inside (min_depth, max_depth) and the prediction is finite. With median
scaling the prediction is multiplied by median(gt)/median(pred) over the valid pixels (per image);
the prediction is then clamped to [min_depth, max_depth] as in the BoRe-Depth protocol.
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def depth_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    median_scaling: bool = False,
    mask: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics over valid pixels; also returns ``n_valid`` and ``scale`` (1.0 unless median-scaled).

    All metrics are NaN when no pixel is valid.
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth) & np.isfinite(pred) & (pred > 0)
    if mask is not None:
        valid &= mask
    p, g = pred[valid], gt[valid]
    out = {"n_valid": int(valid.sum()), "scale": 1.0}
    if p.size == 0:
        out.update({k: float("nan") for k in METRIC_NAMES})
        return out
    if median_scaling:
        out["scale"] = float(np.median(g) / np.median(p))
        p = p * out["scale"]
    p = np.clip(p, min_depth, max_depth)
    thresh = np.maximum(g / p, p / g)
    out.update(
        abs_rel=float(np.mean(np.abs(g - p) / g)),
        sq_rel=float(np.mean((g - p) ** 2 / g)),
        rmse=float(np.sqrt(np.mean((g - p) ** 2))),
        rmse_log=float(np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2))),
        a1=float(np.mean(thresh < 1.25)),
        a2=float(np.mean(thresh < 1.25**2)),
        a3=float(np.mean(thresh < 1.25**3)),
    )
    return out


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of per-image metrics (images without valid pixels are skipped)."""
    keep = [r for r in rows if r.get("n_valid", 0) > 0]
    if not keep:
        return {k: float("nan") for k in METRIC_NAMES}
    return {k: float(np.mean([r[k] for r in keep])) for k in METRIC_NAMES}
