"""Per-image robust scale-and-shift alignment of a relative depth prediction to metric ground truth.

A relative teacher (BoRe-Depth, a depth foundation model) predicts inverse depth up to an unknown
affine map per image. Wherever ground truth exists (sparse LiDAR returns or dense depth), the map is
recovered per image by fitting a * x + b = y with x = 1 / teacher depth, y = 1 / ground-truth depth
on the valid pixels, robustly (a least-median-of-squares start, then Tukey-weighted iteratively
reweighted least squares), and the teacher becomes metric: depth = 1 / (a / teacher + b). Batched
over images in torch (no Python loop over the batch), no gradient. Conventions:
:mod:`bore_depth_ros.train.losses`.
"""

from __future__ import annotations

import math

import torch

from .masks import as_mask

TUKEY_C = 4.685  # Tukey's biweight constant: 95 % efficiency at Gaussian residuals
MAD_TO_SIGMA = 1.4826  # median |r| of Gaussian residuals times this is their standard deviation
DEFAULT_MIN_POINTS = 32
# R2 low-discrepancy sequence (1 / g, 1 / g^2, g the plastic number): fixed, well spread pairs of
# sample positions, the same on every device and run (no random generator to carry)
_R2 = (0.7548776662466927, 0.5698402909980532)


def _nanmedian(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Median of each row of x [B,P] over its valid entries; NaN for a row without any."""
    return torch.nanmedian(torch.where(valid, x, torch.full_like(x, math.nan)), dim=1).values


def _valid_points(x, y, v, max_points: int):
    """The valid entries of each row, first, in raster order, at most ``max_points`` of them
    (evenly spread over the valid ones when there are more) -> x, y, valid [B,S], S = min(P, cap).

    Without a sort: a valid entry's rank is the running count of valid entries before it."""
    b, p = x.shape
    n = v.sum(dim=1, keepdim=True)
    rank = torch.where(v, torch.cumsum(v, dim=1) - 1, p)  # invalid entries go to a spare column
    order = torch.zeros(b, p + 1, dtype=torch.long, device=x.device)
    order.scatter_(1, rank, torch.arange(p, device=x.device).expand(b, p))
    k = min(p, int(max_points))
    slot = torch.arange(k, device=x.device)[None]
    pos = torch.where(n > k, slot * n // k, slot).clamp_max(p - 1)
    idx = order.gather(1, pos)
    return x.gather(1, idx), y.gather(1, idx), slot < n


def _least_median_start(x, y, v, candidates: int, score_points: int):
    """Least-median-of-squares start (Rousseeuw): of ``candidates`` lines through two valid points
    each, the one with the smallest median |residual| over ``score_points`` valid points; lines
    with a <= 0 or through two points of (nearly) the same x are not candidates. Right while
    fewer than half the points are outliers. x, y, v [B,S] with the valid entries first ->
    (a, b) [B] (NaN where there is no candidate)."""
    n = v.sum(dim=1, keepdim=True).clamp_min(1).to(x.dtype)
    m = torch.arange(candidates, device=x.device, dtype=x.dtype)

    def pick(frac):  # fractions in [0, 1) of the valid entries -> their x, y
        idx = (frac * n).long().clamp_max(x.shape[1] - 1)
        return x.gather(1, idx), y.gather(1, idx)

    xi, yi = pick(torch.frac(0.5 + m * _R2[0])[None])
    xj, yj = pick(torch.frac(0.5 + m * _R2[1])[None])
    dx = xj - xi
    a = (yj - yi) / torch.where(dx == 0, torch.ones_like(dx), dx)
    b = yi - a * xi
    usable = (dx.abs() > 1e-6 * (xi.abs() + xj.abs())) & (a > 0) & torch.isfinite(a) & torch.isfinite(b)
    xs, ys = pick((torch.arange(score_points, device=x.device, dtype=x.dtype)[None] + 0.5) / score_points)
    score = (a[:, :, None] * xs[:, None, :] + b[:, :, None] - ys[:, None, :]).abs().median(dim=2).values
    score = torch.where(usable, score, torch.full_like(score, math.inf))
    best = score.argmin(dim=1, keepdim=True)
    found = usable.gather(1, best)[:, 0]
    nan = torch.full_like(found, math.nan, dtype=x.dtype)
    return torch.where(found, a.gather(1, best)[:, 0], nan), torch.where(found, b.gather(1, best)[:, 0], nan)


def _weighted_line(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor):
    """Weighted least squares y = a x + b for each row of [B,P] -> (a, b, solvable) each [B].

    Centred sums (x and y minus their weighted means), so float32 keeps its precision when x holds
    large values of little spread. A row is not solvable without weight or without spread in x.
    """
    sw = w.sum(dim=1)
    xm = (w * x).sum(dim=1) / sw.clamp_min(1e-30)
    ym = (w * y).sum(dim=1) / sw.clamp_min(1e-30)
    dx, dy = x - xm[:, None], y - ym[:, None]
    sxx = (w * dx * dx).sum(dim=1)
    a = (w * dx * dy).sum(dim=1) / sxx.clamp_min(1e-30)
    b = ym - a * xm
    # spread of x below 1e-6 of its mean (relative): a is not determined
    solvable = (sw > 0) & (sxx > sw * (1e-6 * xm.abs()).square()) & (sxx > 0)
    return a, b, solvable


def fit_inverse_depth_alignment(
    depth: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor | None = None,
    min_points: int = DEFAULT_MIN_POINTS,
    iters: int = 5,
    max_points: int = 4096,
    candidates: int = 64,
    score_points: int = 256,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image a, b of a * (1 / depth) + b = 1 / gt, fitted robustly on the valid pixels.

    Valid: inside ``mask``, gt and depth finite and > eps. Each image separately, x = 1 / depth,
    y = 1 / gt, on its valid pixels (at most ``max_points`` of them, evenly spread in raster order:
    dense GT needs no more for two parameters):
    1. start: least median of squares over ``candidates`` two-point lines with a > 0, scored on
       ``score_points`` valid points (`_least_median_start`; survives up to half the points being
       outliers, e.g. LiDAR returns through glass or across an occlusion edge);
    2. ``iters`` iteratively reweighted least-squares steps with Tukey's biweight: residuals
       r = a x + b - y, scale s = 1.4826 median |r| (floored at 1e-6 (MAD(y) + |median(y)|)),
       w = (1 - (r / 4.685 s)^2)^2 inside 4.685 s, 0 outside (gross outliers get no weight).
    ``ok`` [B] is False for an image with fewer than ``min_points`` valid pixels (the fit would be
    noise), without spread in the teacher's inverse depth, or whose fit has a <= 0 (the teacher's
    depth order is reversed) or is not finite; there a = 1, b = 0 (teacher unchanged): callers
    leave such images out or align them otherwise.

    depth [B,1,H,W] (the relative prediction, positive depth, not disparity), gt [B,1,H,W], mask
    [B,1,H,W] -> (a [B], b [B], ok [B] bool); no gradient.
    """
    with torch.no_grad():
        valid = as_mask(mask, gt) & torch.isfinite(gt) & (gt > eps) & torch.isfinite(depth) & (depth > eps)
        dtype = torch.promote_types(depth.dtype, torch.float32)
        count = valid.flatten(1).sum(dim=1)
        x = torch.where(valid, 1.0 / depth.detach().clamp_min(eps), 0.0).flatten(1).to(dtype)
        y = torch.where(valid, 1.0 / gt.detach().clamp_min(eps), 0.0).flatten(1).to(dtype)
        x, y, v = _valid_points(x, y, valid.flatten(1), max_points)
        my = _nanmedian(y, v)
        floor = (1e-6 * (_nanmedian((y - my[:, None]).abs(), v) + my.abs())).nan_to_num(1.0).clamp_min(1e-12)
        a, b = _least_median_start(x, y, v, candidates, score_points)
        for _ in range(iters):
            r = torch.where(v, a[:, None] * x + b[:, None] - y, 0.0)
            s = torch.maximum((MAD_TO_SIGMA * _nanmedian(r.abs(), v)).nan_to_num(0.0), floor)
            u = r / (TUKEY_C * s[:, None])
            w = (1.0 - u * u).clamp_min(0.0).square()
            w = torch.where(v & torch.isfinite(w), w, 0.0)
            a_new, b_new, solvable = _weighted_line(x, y, w)
            a = torch.where(solvable, a_new, a)
            b = torch.where(solvable, b_new, b)
        _, _, spread = _weighted_line(x, y, v.to(dtype))
        ok = (count >= max(2, int(min_points))) & spread
        ok = ok & torch.isfinite(a) & torch.isfinite(b) & (a > 0)
        return torch.where(ok, a, 1.0).to(depth.dtype), torch.where(ok, b, 0.0).to(depth.dtype), ok


def apply_inverse_depth_alignment(
    depth: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    min_depth: float,
    max_depth: float,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Metric depth 1 / clamp(a / depth + b, 1 / max_depth, 1 / min_depth) per image.

    The clamp keeps pixels the fit extrapolates past zero inverse depth (sky, far background: a
    negative b) at ``max_depth``, and non-finite values become ``max_depth``. depth [B,1,H,W]
    (any size: a, b do not depend on the resolution they were fitted at), a, b [B] -> [B,1,H,W],
    no gradient.
    """
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
    with torch.no_grad():
        inv = a.reshape(-1, 1, 1, 1) / depth.detach().clamp_min(eps) + b.reshape(-1, 1, 1, 1)
        inv = torch.nan_to_num(inv, nan=0.0).clamp(1.0 / max_depth, 1.0 / min_depth)
        return 1.0 / inv
