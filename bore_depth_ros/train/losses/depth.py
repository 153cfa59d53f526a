"""Depth losses against ground truth, sparse LiDAR or a teacher: SILog, SVR-style bin distillation and
view-relational matching, BoRe-Depth semantic distillation, Semi-SMD-style sparse depth and curvature.
Conventions: :mod:`bore_depth_ros.train.losses`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from .masks import as_mask, masked_mean

# --- semantic distillation (BoRe-Depth L_sem, form inferred) --------------------------------------


def semantic_distillation_loss(
    student_feats: Sequence[torch.Tensor],
    teacher_feats: Sequence[torch.Tensor],
    kind: str = "cosine",
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """L_sem = sum_l w_l D(F_s^l, sg(F_t^l)), w_l = 1/L by default, levels aligned one to one.

    D = mean_p (1 - cos(F_s(p), F_t(p))) over channel vectors ("cosine") or mean (F_s - F_t)^2
    ("l2"). The frozen semantic encoder has the depth encoder's widths and strides (spec 2.3), so
    no projection heads are used; the spec does not know the real form, this one is our choice.
    Each level [B,C_l,H_l,W_l]; teacher features are detached.
    """
    if len(student_feats) != len(teacher_feats) or not student_feats:
        raise ValueError(
            f"need the same number (>= 1) of student and teacher levels, got "
            f"{len(student_feats)} and {len(teacher_feats)}"
        )
    if weights is None:
        weights = [1.0 / len(student_feats)] * len(student_feats)
    if len(weights) != len(student_feats):
        raise ValueError(f"got {len(weights)} weights for {len(student_feats)} levels")
    total = student_feats[0].new_zeros(())
    for s, t, w in zip(student_feats, teacher_feats, weights):
        if s.shape != t.shape:
            raise ValueError(f"student level {list(s.shape)} and teacher level {list(t.shape)} differ")
        t = t.detach()
        if kind == "cosine":
            d = (1.0 - F.cosine_similarity(s, t, dim=1, eps=1e-8)).mean()
        elif kind == "l2":
            d = (s - t).square().mean()
        else:
            raise ValueError(f"kind must be 'cosine' or 'l2', got {kind!r}")
        total = total + w * d
    return total


# --- supervised / SVR-style distillation -----------------------------------------------------------


def silog_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor | None = None,
    lam: float = 0.85,
    scale: float = 1.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Scale-invariant log loss per image: scale * sqrt(mean_i D_i), g = log pred - log gt,
    D_i = mean_i(g^2) - lam * mean_i(g)^2 = var_i(g) + (1 - lam) * mean_i(g)^2.

    mean_i: over the valid pixels of image i (mask & gt > eps & finite gt); the outer mean is over
    the images with at least one valid pixel, each counting once whatever its number of pixels.
    Per image (as Eigen et al.), not pooled over the batch (AdaBins): with lam = 1 a prediction
    that is any per-image constant multiple of gt (2 gt in one image, 3 gt in the next) costs 0;
    pooling charged the spread of the scales between images. The variance is taken of g minus its
    image mean (no float32 cancellation of mean(g^2) - mean(g)^2). AdaBins uses scale = 10 (default
    here 1). pred is clamped to eps before the log; D below 1e-12 counts as 0 (gradient 0, not
    sqrt's infinite one). lam = 0 is the RMS log error. pred, gt [B,1,H,W] -> scalar.
    """
    valid = as_mask(mask, gt) & (gt > eps) & torch.isfinite(gt)
    g = torch.log(pred.clamp_min(eps)) - torch.log(torch.where(valid, gt, torch.ones_like(gt)))
    g = torch.where(valid, g, torch.zeros_like(g))
    count = valid.sum(dim=(1, 2, 3)).to(g.dtype)
    mean_g = g.sum(dim=(1, 2, 3)) / count.clamp_min(1)
    dev = torch.where(valid, g - mean_g[:, None, None, None], torch.zeros_like(g))
    per_image = dev.square().sum(dim=(1, 2, 3)) / count.clamp_min(1) + (1.0 - lam) * mean_g.square()
    has = count > 0
    d = torch.where(has, per_image, torch.zeros_like(per_image)).sum() / has.sum().clamp_min(1)
    pos = d > 1e-12
    # sqrt only where its gradient is finite; an empty mask gives a zero still attached to the graph
    return scale * torch.where(pos, torch.sqrt(torch.where(pos, d, torch.ones_like(d))), d * 0.0)


def normalised_log_depth(
    depth: torch.Tensor, mask: torch.Tensor | None = None, quantile: float = 0.0, eps: float = 1e-6
) -> torch.Tensor:
    """u = clamp((log d - log d_lo) / (log d_hi - log d_lo), 0, 1) per image, [B,1,H,W] -> [B,1,H,W].

    d_lo, d_hi: the `quantile` and 1 - `quantile` quantiles of d over the valid pixels of each
    image (min and max for 0). u is invariant to d -> s d^gamma (scale, and power for gamma > 0).
    """
    valid = as_mask(mask, depth) & (depth > eps) & torch.isfinite(depth)
    logd = torch.log(depth.clamp_min(eps))
    flat, vflat = logd.flatten(1), valid.flatten(1)
    if quantile > 0:
        nan = torch.full_like(flat, math.nan)
        lo = torch.nanquantile(torch.where(vflat, flat, nan), quantile, dim=1)
        hi = torch.nanquantile(torch.where(vflat, flat, nan), 1.0 - quantile, dim=1)
    else:
        lo = torch.where(vflat, flat, torch.full_like(flat, math.inf)).amin(dim=1)
        hi = torch.where(vflat, flat, torch.full_like(flat, -math.inf)).amax(dim=1)
    empty = ~vflat.any(dim=1)  # no valid pixel: u = 0 everywhere (masked out downstream)
    lo = torch.where(empty, torch.zeros_like(lo), lo)[:, None, None, None]
    hi = torch.where(empty, torch.zeros_like(hi), hi)[:, None, None, None]
    return ((logd - lo) / (hi - lo).clamp_min(eps)).clamp(0.0, 1.0)


def scale_invariant_bin_assignment(
    teacher_depth: torch.Tensor,
    num_bins: int,
    mask: torch.Tensor | None = None,
    sigma: float | None = None,
    quantile: float = 0.0,
) -> torch.Tensor:
    """Soft teacher bin probabilities p_k = softmax_k(-(u - c_k)^2 / (2 sigma^2)), c_k = (k + 1/2) / K.

    u = `normalised_log_depth`(teacher_depth) in [0, 1] per image (our choice: log-depth min/max
    normalisation, so the assignment ignores the teacher's unknown scale; K uniform normalised
    bins, Gaussian kernel, sigma = 1/K, one bin width, by default). Bin k corresponds to the
    student's k-th bin in depth order. The mask only selects the pixels that set d_lo and d_hi;
    probabilities are returned for every pixel. teacher_depth [B,1,H,W] (positive, depth not
    disparity) -> probs [B,K,H,W], no gradient.

    Not what the ``distill`` recipe uses: the normalised range [d_lo, d_hi] of each image never
    matches the student's metric edges (min_depth .. max_depth), so the first and last bins cannot
    agree; the recipe aligns the teacher to metric and uses `metric_bin_assignment`.
    """
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins}")
    sigma = 1.0 / num_bins if sigma is None else float(sigma)
    with torch.no_grad():
        u = normalised_log_depth(teacher_depth.detach(), mask, quantile)
        centres = (torch.arange(num_bins, device=u.device, dtype=u.dtype) + 0.5) / num_bins
        return torch.softmax(-(u - centres[None, :, None, None]).square() / (2.0 * sigma * sigma), dim=1)


def metric_bin_assignment(depth: torch.Tensor, bin_centres: torch.Tensor) -> torch.Tensor:
    """Teacher probabilities on the student's own metric bins: linear interpolation ("two-hot").

    A depth d between consecutive centres c_k <= d <= c_{k+1} puts (c_{k+1} - d) / (c_{k+1} - c_k)
    on bin k and (d - c_k) / (c_{k+1} - c_k) on bin k+1, so sum_k p_k c_k = d (the student's
    depth formula gives back d) and d = c_k is exactly one-hot on bin k, the first and last bins
    included; d below c_0 (above c_{K-1}) is one-hot on the first (last) bin. With the teacher made
    metric first (`fit_inverse_depth_alignment`), student and teacher bins are the same bins, so
    the ends agree (a per-image normalised teacher range never matches the student's edges, which
    start at its min_depth and end at its max_depth).

    depth [B,1,h,w] metres (finite; NaN counts as beyond the last centre), bin_centres [B,K]
    increasing, metres for each view's camera (``bin_centres`` of `SVRStudent.forward_train`; K
    comes from it) -> probs [B,K,h,w], no gradient.
    """
    b, k = bin_centres.shape
    if k < 2 or depth.shape[0] != b or depth.shape[1] != 1:
        raise ValueError(
            f"need depth [B,1,h,w] and bin centres [B,K>=2] for the same B, got {list(depth.shape)} "
            f"and {list(bin_centres.shape)}"
        )
    with torch.no_grad():
        c = bin_centres.detach().to(depth.dtype).contiguous()
        d = torch.nan_to_num(depth.detach().flatten(1), nan=math.inf)
        d = torch.minimum(torch.maximum(d, c[:, :1]), c[:, -1:]).contiguous()
        hi = torch.searchsorted(c, d).clamp(1, k - 1)  # first centre >= d
        lo = hi - 1
        c_lo, c_hi = c.gather(1, lo), c.gather(1, hi)
        w_hi = ((d - c_lo) / (c_hi - c_lo).clamp_min(1e-12)).clamp(0.0, 1.0)
        probs = torch.zeros(b, k, d.shape[1], dtype=depth.dtype, device=depth.device)
        probs.scatter_(1, lo[:, None], (1.0 - w_hi)[:, None])
        probs.scatter_add_(1, hi[:, None], w_hi[:, None])
        return probs.reshape(b, k, *depth.shape[2:])


def kl_bin_loss(
    student_log_probs: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(teacher || student) = sum_k t_k (log t_k - log s_k), mean over valid pixels.

    student_log_probs, teacher_probs [B,K,H,W] at the same resolution (compute the teacher
    assignment from teacher depth resized to the student's map), mask [B,1,H,W] -> scalar.
    """
    if student_log_probs.shape != teacher_probs.shape:
        raise ValueError(
            f"student {list(student_log_probs.shape)} and teacher {list(teacher_probs.shape)} "
            f"distributions differ in shape"
        )
    t = teacher_probs.detach()
    kl = (torch.xlogy(t, t) - t * student_log_probs).sum(dim=1, keepdim=True)
    return masked_mean(kl, as_mask(mask, kl))


def _l1(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    valid = as_mask(mask, gt) & (gt > 0) & torch.isfinite(gt)
    return masked_mean((pred - torch.where(valid, gt, pred.detach())).abs(), valid)


def _depth_loss(pred, gt, mask, kind, lam):
    if kind == "silog":
        return silog_loss(pred, gt, mask, lam)
    if kind == "l1":
        return _l1(pred, gt, mask)
    raise ValueError(f"kind must be 'silog' or 'l1', got {kind!r}")


def cross_bin_loss(
    teacher_probs: torch.Tensor,
    student_bin_centres: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor | None = None,
    kind: str = "silog",
    lam: float = 0.85,
) -> torch.Tensor:
    """Cross-interaction term: D_x = sum_k t_k c_k (teacher probabilities, student metric centres), then
    SILog(D_x, gt) (default) or mean |D_x - gt| ("l1") over valid GT pixels.

    Only the student's centres get gradients: they learn metric scale from GT. teacher_probs
    [B,K,h,w]; student_bin_centres [B,K] in metres for each view's camera (`bin_centres` of
    `SVRStudent.forward_train`); gt [B,1,H,W] (D_x is bilinearly resized to H x W if h x w differs).
    """
    b, k, h, w = teacher_probs.shape
    depth = torch.matmul(student_bin_centres[:, None, :], teacher_probs.detach().flatten(2)).reshape(
        b, 1, h, w
    )
    if (h, w) != tuple(gt.shape[-2:]):
        depth = F.interpolate(depth, size=gt.shape[-2:], mode="bilinear", align_corners=False)
    return _depth_loss(depth, gt, mask, kind, lam)


def ring_neighbour_pairs(
    x: torch.Tensor, num_views: int, pairs: list[tuple[int, int]] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of neighbouring views (a, b) of each rig, a to the left of b, so that the right border
    of a overlaps the left border of b. ``pairs``: the (a, b) view indices whose fields of view
    overlap (``RigDataset.neighbour_pairs``, from the rig's extrinsics); default the ring-adjacent
    (v+1, v) for v = 0..N-1 (ring order: yaw increasing). x [B*N,...] -> (x_a, x_b), each
    [B*P,...] for P pairs.
    """
    if num_views < 2 or x.shape[0] % num_views:
        raise ValueError(
            f"batch of {x.shape[0]} views is not a whole number of {num_views}-view rigs (N >= 2)"
        )
    rigs = x.reshape(-1, num_views, *x.shape[1:])
    if pairs is None:
        return torch.roll(rigs, -1, dims=1).reshape(x.shape), x
    if not pairs:
        raise ValueError("no overlapping view pairs in this rig: the relational term needs one")
    a, b = (list(t) for t in zip(*pairs))
    return rigs[:, a].flatten(0, 1), rigs[:, b].flatten(0, 1)


def _strip_affinity(fa: torch.Tensor, fb: torch.Tensor, strip_width: int) -> torch.Tensor:
    """Cosine similarities [M, h*s, h*s] between the right strip of fa and the left strip of fb."""
    sa = F.normalize(fa[..., -strip_width:].flatten(2), dim=1, eps=1e-8)
    sb = F.normalize(fb[..., :strip_width].flatten(2), dim=1, eps=1e-8)
    return sa.transpose(1, 2) @ sb


def view_relational_loss(
    student_feats_a: torch.Tensor,
    student_feats_b: torch.Tensor,
    teacher_feats_a: torch.Tensor,
    teacher_feats_b: torch.Tensor,
    strip_width: int,
    kind: str = "mse",
    temperature: float = 0.1,
) -> torch.Tensor:
    """Match cross-view affinities of student and teacher over the overlapping border strips.

    A[m](i, j) = cos(f_a[m](i), f_b[m](j)) for tokens i of the right `strip_width` columns of view a
    and tokens j of the left `strip_width` columns of view b (our design of the paper's
    view-relational KD). L = mean (A_s - A_t)^2 ("mse"), or the row-wise
    KL(softmax(A_t / T) || softmax(A_s / T)) averaged over rows ("kl"). Student a, b [M,C_s,h,w],
    teacher a, b [M,C_t,h,w] (channel counts may differ, spatial sizes may not); pairs from
    `ring_neighbour_pairs`. Teacher features are detached.
    """
    shapes = [t.shape for t in (student_feats_a, student_feats_b, teacher_feats_a, teacher_feats_b)]
    if (
        shapes[0] != shapes[1]
        or shapes[2] != shapes[3]
        or shapes[0][0] != shapes[2][0]
        or shapes[0][-2:] != shapes[2][-2:]
    ):
        raise ValueError(
            f"student and teacher feature pairs must share batch and spatial size, got "
            f"{[list(s) for s in shapes]}"
        )
    if not 1 <= strip_width <= shapes[0][-1]:
        raise ValueError(f"strip_width must be in [1, {shapes[0][-1]}], got {strip_width}")
    a_s = _strip_affinity(student_feats_a, student_feats_b, strip_width)
    with torch.no_grad():
        a_t = _strip_affinity(teacher_feats_a.detach(), teacher_feats_b.detach(), strip_width)
    if kind == "mse":
        return (a_s - a_t).square().mean()
    if kind == "kl":
        log_s = torch.log_softmax(a_s / temperature, dim=-1)
        log_t = torch.log_softmax(a_t / temperature, dim=-1)
        return (log_t.exp() * (log_t - log_s)).sum(dim=-1).mean()
    raise ValueError(f"kind must be 'mse' or 'kl', got {kind!r}")


# --- Semi-SMD-style losses -------------------------------------------------------------------------


def sparse_depth_loss(
    pred: torch.Tensor,
    lidar_depth: torch.Tensor,
    mask: torch.Tensor | None = None,
    kind: str = "l1",
    lam: float = 0.85,
) -> torch.Tensor:
    """Sparse LiDAR supervision on pixels with a return (lidar > 0, finite, inside mask):
    mean |pred - lidar| ("l1", default, metres) or SILog(pred, lidar; lam) ("silog").

    pred, lidar_depth [B,1,H,W] (lidar 0 or inf where there is no return) -> scalar.
    """
    return _depth_loss(pred, lidar_depth, mask, kind, lam)


def _log_normalise(logd: torch.Tensor, valid: torch.Tensor, eps: float) -> torch.Tensor:
    """(l - median(l)) / mean|l - median(l)| per image over valid pixels."""
    flat = torch.where(valid, logd, torch.full_like(logd, math.nan)).flatten(1)
    med = torch.nanmedian(flat, dim=1).values
    med = torch.where(torch.isnan(med), torch.zeros_like(med), med)[:, None, None, None]
    centred = logd - med
    spread = _per_image_masked_mean(centred.abs(), valid)
    return centred / (spread + eps)


def _per_image_masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    total = torch.where(mask, x, torch.zeros_like(x)).sum(dim=(1, 2, 3), keepdim=True)
    return total / mask.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1).to(x.dtype)


def curvature_loss(
    pred: torch.Tensor,
    teacher_depth: torch.Tensor,
    mask: torch.Tensor | None = None,
    match_spread: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """L = mean |dxx n(pred) - dxx n(T)| + mean |dyy n(pred) - dyy n(T)|, central second differences
    dxx n = n(x+1) - 2 n(x) + n(x-1), means over pixels whose 3-pixel stencil is valid.

    n(d) = log d - median(log d) per image: the teacher's unknown scale is a shift in log space, which
    second derivatives ignore. ``match_spread`` also divides by mean |log d - median| per image
    (aligning teachers whose depth is a power of the true one). pred, teacher_depth [B,1,H,W]
    (positive depth) -> scalar; teacher detached.
    """
    valid = as_mask(mask, teacher_depth) & (teacher_depth > eps) & torch.isfinite(teacher_depth)
    lp = torch.log(pred.clamp_min(eps))
    lt = torch.log(torch.where(valid, teacher_depth, torch.ones_like(teacher_depth))).detach()
    if match_spread:
        lp, lt = _log_normalise(lp, valid, eps), _log_normalise(lt, valid, eps)
    # the median shift itself is skipped otherwise: it cancels in second differences

    def dxx(t):
        return t[..., 2:] - 2.0 * t[..., 1:-1] + t[..., :-2]

    def dyy(t):
        return t[..., 2:, :] - 2.0 * t[..., 1:-1, :] + t[..., :-2, :]

    vx = valid[..., 2:] & valid[..., 1:-1] & valid[..., :-2]
    vy = valid[..., 2:, :] & valid[..., 1:-1, :] & valid[..., :-2, :]
    return masked_mean((dxx(lp) - dxx(lt)).abs(), vx) + masked_mean((dyy(lp) - dyy(lt)).abs(), vy)
