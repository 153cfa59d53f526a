"""Training losses for the BoRe-Depth and surround depth models (batched torch, differentiable, any device).

Specs: /work/shared/specs/bore-depth.md sections 2.3 and 4 (self-supervised photometric loss,
semantic distillation) and /work/shared/specs/surround-models.md sections A3, B1 and B2 (SVR-style
distillation, Semi-SMD-style spatial/temporal photometric, sparse LiDAR and curvature losses).
Where the papers leave a loss unspecified, the form here is our choice and says so.

Shapes: images [B,C,H,W] in [0, 1]; depth, disparity [B,1,H,W]; masks [B,1,H,W], bool or 0/1
float (None = every pixel). Surround batches hold whole rigs [B*N,...] in ring order
(`bore_depth_ros.sim.rig.RING_ORDER`: yaw increasing, so view v+1 is to the left of view v).
A loss whose mask selects no pixel returns a zero that is still attached to the graph.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch.nn import functional as F

from .geometry import DEFAULT_MIN_DEPTH, camera_motion, inverse_warp, relative_extrinsics

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
DEFAULT_SSIM_WINDOW = 3      # monodepth2 / SurroundDepth; SC-Depth(V3) uses 7
SC_DEPTH_SSIM_WINDOW = 7


# --- helpers ---------------------------------------------------------------------------------------

def _as_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Bool mask [B,1,H,W] (all True when None; floats are thresholded at 0.5)."""
    if mask is None:
        return torch.ones((like.shape[0], 1, *like.shape[2:]), dtype=torch.bool, device=like.device)
    if mask.dtype != torch.bool:
        mask = mask > 0.5
    if mask.shape[-2:] != like.shape[-2:] or mask.shape[0] != like.shape[0]:
        raise ValueError(f"mask of shape {list(mask.shape)} does not fit a map of shape {list(like.shape)}")
    return mask


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the pixels where mask (broadcast over channels) is True; attached 0 when empty."""
    mask = mask.expand_as(x)
    count = mask.sum()
    # where() rather than x * mask: x may hold inf/NaN at masked-out pixels.
    total = torch.where(mask, x, torch.zeros_like(x)).sum()
    return total / count.clamp_min(1).to(x.dtype)


# --- photometric -----------------------------------------------------------------------------------

def ssim(x: torch.Tensor, y: torch.Tensor, window: int = DEFAULT_SSIM_WINDOW, c1: float = SSIM_C1,
         c2: float = SSIM_C2) -> torch.Tensor:
    """SSIM dissimilarity map clamp((1 - SSIM) / 2, 0, 1), per channel.

    SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)), with the
    means and (co)variances from a `window` x `window` average pool over the reflection-padded images.
    x, y [B,C,H,W] -> [B,C,H,W].
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"SSIM window must be odd and positive, got {window}")
    pad = window // 2
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        y = F.pad(y, (pad, pad, pad, pad), mode="reflect")

    def pool(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, window, stride=1)

    # (co)variances from inputs centred on their per-channel means: the same values, without the
    # float32 cancellation of E[x^2] - E[x]^2 on bright flat regions (errors ~1e-4 otherwise)
    mx = x.mean(dim=(2, 3), keepdim=True).detach()
    my = y.mean(dim=(2, 3), keepdim=True).detach()
    xc, yc = x - mx, y - my
    mu_xc, mu_yc = pool(xc), pool(yc)
    mu_x, mu_y = mu_xc + mx, mu_yc + my
    var_x = pool(xc * xc) - mu_xc * mu_xc
    var_y = pool(yc * yc) - mu_yc * mu_yc
    cov = pool(xc * yc) - mu_xc * mu_yc
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return torch.clamp((1.0 - num / den) / 2.0, 0.0, 1.0)


def photometric_error(a: torch.Tensor, b: torch.Tensor, alpha: float = 0.85,
                      window: int = DEFAULT_SSIM_WINDOW, clamp_l1: bool = False) -> torch.Tensor:
    """pe = alpha * mean_c (1 - SSIM) / 2 + (1 - alpha) * mean_c |a - b|; a, b [B,C,H,W] -> [B,1,H,W].

    ``clamp_l1`` clamps |a - b| to [0, 1] as SC-Depth does (no effect on images in [0, 1]).
    """
    l1 = (a - b).abs()
    if clamp_l1:
        l1 = l1.clamp(0.0, 1.0)
    return (alpha * ssim(a, b, window).mean(dim=1, keepdim=True)
            + (1.0 - alpha) * l1.mean(dim=1, keepdim=True))


def min_reprojection_loss(target: torch.Tensor, warped_list: Sequence[torch.Tensor],
                          valid_list: Sequence[torch.Tensor], sources_unwarped: Sequence[torch.Tensor] | None = None,
                          automask: bool = True, mask: torch.Tensor | None = None, noise: float = 0.0,
                          generator: torch.Generator | None = None, alpha: float = 0.85,
                          window: int = DEFAULT_SSIM_WINDOW, erode_valid: bool = True) -> tuple[torch.Tensor, dict]:
    """Per-pixel minimum photometric error over the warped sources (monodepth2), masked mean.

    e(p) = min_s { pe(I_t, I_s->t)(p) : valid_s(p) }; the loss is the mean of e over the pixels
    with at least one valid source, inside ``mask``, and (auto-masking, when ``automask`` and
    ``sources_unwarped`` are given) with e(p) <= min_s pe(I_t, I_s)(p): a pixel whose unwarped
    source matches strictly better (static camera, object moving with the camera, textureless
    region) is ignored. With ``erode_valid`` (our addition; only when alpha > 0) each valid_s is
    eroded by the SSIM window radius, so no counted pixel's SSIM window reaches a zero-padded
    sample. ``noise`` > 0 adds noise * N(0, 1) to the identity error to break ties (monodepth2
    uses 1e-5); off by default so the loss is deterministic.

    target [B,C,H,W]; warped_list S x [B,C,H,W]; valid_list S x [B,1,H,W]; sources_unwarped S' x
    [B,C,H,W] -> (scalar loss, info) with info = {"error": e [B,1,H,W] (inf where no source is
    valid), "selected": argmin source index [B,1,H,W], "mask": pixels used [B,1,H,W] bool,
    "automask": kept by auto-masking [B,1,H,W] bool or None, "identity_error": [B,1,H,W] or None}.
    """
    if len(warped_list) == 0 or len(warped_list) != len(valid_list):
        raise ValueError(f"need as many valid masks as warped images (>= 1), got {len(warped_list)} and "
                         f"{len(valid_list)}")
    errors = torch.stack([photometric_error(target, w, alpha, window) for w in warped_list])    # [S,B,1,H,W]
    valid = torch.stack([_as_mask(v, target) for v in valid_list])
    if erode_valid and window > 1 and alpha > 0:
        # an SSIM window that reaches a zero-padded (invalid) sample gives a large spurious error
        invalid = (~valid).flatten(0, 1).float()
        invalid = F.max_pool2d(invalid, window, stride=1, padding=window // 2)
        valid = (invalid < 0.5).reshape(valid.shape)
    errors = torch.where(valid, errors, torch.full_like(errors, math.inf))
    error, selected = errors.min(dim=0)
    used = valid.any(dim=0) & _as_mask(mask, target)
    keep = identity = None
    if automask and sources_unwarped is not None and len(sources_unwarped) > 0:
        with torch.no_grad():
            identity = torch.stack([photometric_error(target, s, alpha, window)
                                    for s in sources_unwarped]).min(dim=0).values
            if noise > 0:
                identity = identity + noise * torch.randn(identity.shape, generator=generator,
                                                          device=identity.device, dtype=identity.dtype)
            keep = error.detach() <= identity
        used = used & keep
    loss = _masked_mean(error, used)
    return loss, {"error": error, "selected": selected, "mask": used, "automask": keep,
                  "identity_error": identity}


def edge_aware_smoothness(disp: torch.Tensor, img: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """L = mean(|dx d*| e^{-mean_c |dx I|}) + mean(|dy d*| e^{-mean_c |dy I|}), d* = d / mean_HW(d).

    Forward differences; disp [B,1,H,W], img [B,C,H,W] -> scalar.
    """
    d = disp / (disp.mean(dim=(2, 3), keepdim=True) + eps)
    dx = (d[..., :, 1:] - d[..., :, :-1]).abs()
    dy = (d[..., 1:, :] - d[..., :-1, :]).abs()
    wx = torch.exp(-(img[..., :, 1:] - img[..., :, :-1]).abs().mean(dim=1, keepdim=True))
    wy = torch.exp(-(img[..., 1:, :] - img[..., :-1, :]).abs().mean(dim=1, keepdim=True))
    return (dx * wx).mean() + (dy * wy).mean()


# --- semantic distillation (BoRe-Depth L_sem, form inferred) --------------------------------------

def semantic_distillation_loss(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor],
                               kind: str = "cosine", weights: Sequence[float] | None = None) -> torch.Tensor:
    """L_sem = sum_l w_l D(F_s^l, sg(F_t^l)), w_l = 1/L by default, levels aligned one to one.

    D = mean_p (1 - cos(F_s(p), F_t(p))) over channel vectors ("cosine") or mean (F_s - F_t)^2
    ("l2"). The frozen semantic encoder has the depth encoder's widths and strides (spec 2.3), so
    no projection heads are used; the spec does not know the real form, this one is our choice.
    Each level [B,C_l,H_l,W_l]; teacher features are detached.
    """
    if len(student_feats) != len(teacher_feats) or not student_feats:
        raise ValueError(f"need the same number (>= 1) of student and teacher levels, got "
                         f"{len(student_feats)} and {len(teacher_feats)}")
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

def silog_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None, lam: float = 0.85,
               scale: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    """Scale-invariant log loss: scale * sqrt(mean(g^2) - lam * mean(g)^2), g = log pred - log gt.

    Means over all valid pixels of the batch (mask & gt > eps & finite gt), pooled as in AdaBins;
    AdaBins also uses scale = 10 (default here 1). pred is clamped to eps before the log.
    lam = 1 is fully scale invariant, lam = 0 is the RMS log error. pred, gt [B,1,H,W] -> scalar.
    """
    valid = _as_mask(mask, gt) & (gt > eps) & torch.isfinite(gt)
    g = torch.log(pred.clamp_min(eps)) - torch.log(torch.where(valid, gt, torch.ones_like(gt)))
    mean_g = _masked_mean(g, valid)
    mean_g2 = _masked_mean(g * g, valid)
    # the floor keeps sqrt's gradient finite when pred is an exact multiple of gt and lam = 1
    return scale * torch.sqrt((mean_g2 - lam * mean_g * mean_g).clamp_min(1e-12))


def normalised_log_depth(depth: torch.Tensor, mask: torch.Tensor | None = None, quantile: float = 0.0,
                         eps: float = 1e-6) -> torch.Tensor:
    """u = clamp((log d - log d_lo) / (log d_hi - log d_lo), 0, 1) per image, [B,1,H,W] -> [B,1,H,W].

    d_lo, d_hi: the `quantile` and 1 - `quantile` quantiles of d over the valid pixels of each
    image (min and max for 0). u is invariant to d -> s d^gamma (scale, and power for gamma > 0).
    """
    valid = _as_mask(mask, depth) & (depth > eps) & torch.isfinite(depth)
    logd = torch.log(depth.clamp_min(eps))
    flat, vflat = logd.flatten(1), valid.flatten(1)
    if quantile > 0:
        nan = torch.full_like(flat, math.nan)
        lo = torch.nanquantile(torch.where(vflat, flat, nan), quantile, dim=1)
        hi = torch.nanquantile(torch.where(vflat, flat, nan), 1.0 - quantile, dim=1)
    else:
        lo = torch.where(vflat, flat, torch.full_like(flat, math.inf)).amin(dim=1)
        hi = torch.where(vflat, flat, torch.full_like(flat, -math.inf)).amax(dim=1)
    empty = ~vflat.any(dim=1)          # no valid pixel: u = 0 everywhere (masked out downstream)
    lo = torch.where(empty, torch.zeros_like(lo), lo)[:, None, None, None]
    hi = torch.where(empty, torch.zeros_like(hi), hi)[:, None, None, None]
    return ((logd - lo) / (hi - lo).clamp_min(eps)).clamp(0.0, 1.0)


def scale_invariant_bin_assignment(teacher_depth: torch.Tensor, num_bins: int, mask: torch.Tensor | None = None,
                                   sigma: float | None = None, quantile: float = 0.0) -> torch.Tensor:
    """Soft teacher bin probabilities p_k = softmax_k(-(u - c_k)^2 / (2 sigma^2)), c_k = (k + 1/2) / K.

    u = `normalised_log_depth`(teacher_depth) in [0, 1] per image (our choice: log-depth min/max
    normalisation, so the assignment ignores the teacher's unknown scale; K uniform normalised
    bins, Gaussian kernel, sigma = 1/K, one bin width, by default). Bin k corresponds to the
    student's k-th bin in depth order. The mask only selects the pixels that set d_lo and d_hi;
    probabilities are returned for every pixel. teacher_depth [B,1,H,W] (positive, depth not
    disparity) -> probs [B,K,H,W], no gradient.
    """
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins}")
    sigma = 1.0 / num_bins if sigma is None else float(sigma)
    with torch.no_grad():
        u = normalised_log_depth(teacher_depth.detach(), mask, quantile)
        centres = (torch.arange(num_bins, device=u.device, dtype=u.dtype) + 0.5) / num_bins
        return torch.softmax(-(u - centres[None, :, None, None]).square() / (2.0 * sigma * sigma), dim=1)


def kl_bin_loss(student_log_probs: torch.Tensor, teacher_probs: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(teacher || student) = sum_k t_k (log t_k - log s_k), mean over valid pixels.

    student_log_probs, teacher_probs [B,K,H,W] at the same resolution (compute the teacher
    assignment from teacher depth resized to the student's map), mask [B,1,H,W] -> scalar.
    """
    if student_log_probs.shape != teacher_probs.shape:
        raise ValueError(f"student {list(student_log_probs.shape)} and teacher {list(teacher_probs.shape)} "
                         f"distributions differ in shape")
    t = teacher_probs.detach()
    kl = (torch.xlogy(t, t) - t * student_log_probs).sum(dim=1, keepdim=True)
    return _masked_mean(kl, _as_mask(mask, kl))


def _l1(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    valid = _as_mask(mask, gt) & (gt > 0) & torch.isfinite(gt)
    return _masked_mean((pred - torch.where(valid, gt, pred.detach())).abs(), valid)


def _depth_loss(pred, gt, mask, kind, lam):
    if kind == "silog":
        return silog_loss(pred, gt, mask, lam)
    if kind == "l1":
        return _l1(pred, gt, mask)
    raise ValueError(f"kind must be 'silog' or 'l1', got {kind!r}")


def cross_bin_loss(teacher_probs: torch.Tensor, student_bin_centres: torch.Tensor, gt: torch.Tensor,
                   mask: torch.Tensor | None = None, kind: str = "silog", lam: float = 0.85) -> torch.Tensor:
    """Cross-interaction term: D_x = sum_k t_k c_k (teacher probabilities, student metric centres), then
    SILog(D_x, gt) (default) or mean |D_x - gt| ("l1") over valid GT pixels.

    Only the student's centres get gradients: they learn metric scale from GT. teacher_probs
    [B,K,h,w]; student_bin_centres [B,K] in metres for each view's camera (`bin_centres` of
    `SVRStudent.forward_train`); gt [B,1,H,W] (D_x is bilinearly resized to H x W if h x w differs).
    """
    b, k, h, w = teacher_probs.shape
    depth = torch.matmul(student_bin_centres[:, None, :], teacher_probs.detach().flatten(2)).reshape(b, 1, h, w)
    if (h, w) != tuple(gt.shape[-2:]):
        depth = F.interpolate(depth, size=gt.shape[-2:], mode="bilinear", align_corners=False)
    return _depth_loss(depth, gt, mask, kind, lam)


def ring_neighbour_pairs(x: torch.Tensor, num_views: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of ring-adjacent views (a, b) = (view v+1, view v) of each rig, for v = 0..N-1.

    With the ring order's yaw increasing (view v+1 left of view v), the right border of a overlaps
    the left border of b. x [B*N,...] -> (x_a, x_b), each [B*N,...].
    """
    if num_views < 2 or x.shape[0] % num_views:
        raise ValueError(f"batch of {x.shape[0]} views is not a whole number of {num_views}-view rigs (N >= 2)")
    rigs = x.reshape(-1, num_views, *x.shape[1:])
    return torch.roll(rigs, -1, dims=1).reshape(x.shape), x


def _strip_affinity(fa: torch.Tensor, fb: torch.Tensor, strip_width: int) -> torch.Tensor:
    """Cosine similarities [M, h*s, h*s] between the right strip of fa and the left strip of fb."""
    sa = F.normalize(fa[..., -strip_width:].flatten(2), dim=1, eps=1e-8)
    sb = F.normalize(fb[..., :strip_width].flatten(2), dim=1, eps=1e-8)
    return sa.transpose(1, 2) @ sb


def view_relational_loss(student_feats_a: torch.Tensor, student_feats_b: torch.Tensor,
                         teacher_feats_a: torch.Tensor, teacher_feats_b: torch.Tensor, strip_width: int,
                         kind: str = "mse", temperature: float = 0.1) -> torch.Tensor:
    """Match cross-view affinities of student and teacher over the overlapping border strips.

    A[m](i, j) = cos(f_a[m](i), f_b[m](j)) for tokens i of the right `strip_width` columns of view a
    and tokens j of the left `strip_width` columns of view b (our design of the paper's
    view-relational KD). L = mean (A_s - A_t)^2 ("mse"), or the row-wise
    KL(softmax(A_t / T) || softmax(A_s / T)) averaged over rows ("kl"). Student a, b [M,C_s,h,w],
    teacher a, b [M,C_t,h,w] (channel counts may differ, spatial sizes may not); pairs from
    `ring_neighbour_pairs`. Teacher features are detached.
    """
    shapes = [t.shape for t in (student_feats_a, student_feats_b, teacher_feats_a, teacher_feats_b)]
    if shapes[0] != shapes[1] or shapes[2] != shapes[3] or shapes[0][0] != shapes[2][0] \
            or shapes[0][-2:] != shapes[2][-2:]:
        raise ValueError(f"student and teacher feature pairs must share batch and spatial size, got "
                         f"{[list(s) for s in shapes]}")
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

def sparse_depth_loss(pred: torch.Tensor, lidar_depth: torch.Tensor, mask: torch.Tensor | None = None,
                      kind: str = "l1", lam: float = 0.85) -> torch.Tensor:
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


def curvature_loss(pred: torch.Tensor, teacher_depth: torch.Tensor, mask: torch.Tensor | None = None,
                   match_spread: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """L = mean |dxx n(pred) - dxx n(T)| + mean |dyy n(pred) - dyy n(T)|, central second differences
    dxx n = n(x+1) - 2 n(x) + n(x-1), means over pixels whose 3-pixel stencil is valid.

    n(d) = log d - median(log d) per image: the teacher's unknown scale is a shift in log space, which
    second derivatives ignore. ``match_spread`` also divides by mean |log d - median| per image
    (aligning teachers whose depth is a power of the true one). pred, teacher_depth [B,1,H,W]
    (positive depth) -> scalar; teacher detached.
    """
    valid = _as_mask(mask, teacher_depth) & (teacher_depth > eps) & torch.isfinite(teacher_depth)
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
    return _masked_mean((dxx(lp) - dxx(lt)).abs(), vx) + _masked_mean((dyy(lp) - dyy(lt)).abs(), vy)


def _per_view(x: torch.Tensor, total: int, num_views: int, name: str) -> torch.Tensor:
    """[N,...] (tiled over rigs), [...] (one for all) or [B*N,...] -> [B*N,...]."""
    if x.dim() == 2:
        return x.expand(total, *x.shape)
    if x.shape[0] == total:
        return x
    if x.shape[0] == num_views:
        return x.repeat(total // num_views, *([1] * (x.dim() - 1)))
    raise ValueError(f"{name} has {x.shape[0]} entries, expected {num_views} (one per camera) or {total} (per view)")


def ring_neighbours(num_views: int) -> list[list[int]]:
    """Ring adjacency [[v-1, v+1] mod N for each v]."""
    return [[(v - 1) % num_views, (v + 1) % num_views] for v in range(num_views)]


def spatial_photometric_loss(images: torch.Tensor, depths: torch.Tensor, K: torch.Tensor, extrinsics: torch.Tensor,
                             neighbours: Sequence[Sequence[int]] | None = None, num_views: int | None = None,
                             mask: torch.Tensor | None = None, alpha: float = 0.85, window: int = DEFAULT_SSIM_WINDOW,
                             min_depth: float = DEFAULT_MIN_DEPTH) -> tuple[torch.Tensor, dict]:
    """Same-instant photometric loss between adjacent cameras (gives metric scale: the baselines are known).

    For view v of a rig and each neighbour u: I_u->v = inverse_warp(I_u, D_v, E_u^-1 E_v, K_v, K_u);
    then `min_reprojection_loss` (no auto-masking: an unwarped other camera is no identity
    reference) over the pixels that land inside some neighbour's image.

    images [B*N,3,H,W], depths [B*N,1,H,W] metric, K [N,3,3] or [B*N,3,3], extrinsics
    base_from_cam [N,4,4] or [B*N,4,4] (then pass num_views); neighbours: per view of a rig, the
    indices of its neighbours in the rig (default ring: v-1, v+1); mask [B*N,1,H,W] target pixels
    to use (e.g. not the ego vehicle). -> (scalar loss, info of `min_reprojection_loss`).
    """
    total = images.shape[0]
    n = int(num_views if num_views is not None else extrinsics.shape[0])
    if n < 2 or total % n:
        raise ValueError(f"batch of {total} views is not a whole number of {n}-view rigs (N >= 2)")
    nbrs = ring_neighbours(n) if neighbours is None else [list(x) for x in neighbours]
    if len(nbrs) != n or any(not 0 <= u < n for x in nbrs for u in x):
        raise ValueError(f"neighbours must list, for each of the {n} views, indices in [0, {n})")
    ext = _per_view(extrinsics, total, n, "extrinsics").to(depths.dtype)
    kk = _per_view(K, total, n, "K").to(depths.dtype)
    rig_start = torch.arange(0, total, n, device=images.device)[:, None]
    warped, valid = [], []
    for slot in range(max(len(x) for x in nbrs)):
        # views with fewer neighbours warp themselves in this slot and are marked invalid
        local = torch.tensor([x[slot] if slot < len(x) else v for v, x in enumerate(nbrs)], device=images.device)
        has = torch.tensor([slot < len(x) for x in nbrs], device=images.device)
        src = (rig_start + local[None]).reshape(-1)
        T = relative_extrinsics(ext[src], ext)
        w, ok = inverse_warp(images[src], depths, T, kk, kk[src], min_depth)
        warped.append(w)
        valid.append(ok & has.repeat(total // n)[:, None, None, None])
    return min_reprojection_loss(images, warped, valid, None, automask=False, mask=mask, alpha=alpha,
                                 window=window)


def temporal_photometric_loss(target_images: torch.Tensor, source_images: Sequence[torch.Tensor],
                              depths: torch.Tensor, K: torch.Tensor, ego_motions: Sequence[torch.Tensor],
                              extrinsics: torch.Tensor | None = None, num_views: int | None = None,
                              automask: bool = True, mask: torch.Tensor | None = None, alpha: float = 0.85,
                              window: int = DEFAULT_SSIM_WINDOW,
                              min_depth: float = DEFAULT_MIN_DEPTH) -> tuple[torch.Tensor, dict]:
    """Photometric loss to adjacent frames of the same camera with one vehicle motion per rig.

    For source frame s with ego-motion T_s (base_src_from_base_tgt) and camera i: the camera motion
    is the canonical E_i^-1 T_s E_i; I_s->t = inverse_warp(I_s, D_t, E_i^-1 T_s E_i, K_i, K_i);
    then `min_reprojection_loss` with auto-masking against the unwarped sources.
    Without extrinsics the base frame is the camera frame (monocular: N = 1, T_s = the PoseNet's
    T_src_from_tgt).

    target_images [B*N,3,H,W]; source_images S x [B*N,3,H,W]; depths [B*N,1,H,W]; K [N,3,3] or
    [B*N,3,3]; ego_motions S x [B,4,4] (or [4,4]); extrinsics base_from_cam [N,4,4] or [B*N,4,4]
    (then pass num_views). -> (scalar loss, info of `min_reprojection_loss`).
    """
    total = target_images.shape[0]
    n = 1 if extrinsics is None else int(num_views if num_views is not None else extrinsics.shape[0])
    if total % n:
        raise ValueError(f"batch of {total} views is not a whole number of {n}-view rigs")
    if len(source_images) != len(ego_motions) or not source_images:
        raise ValueError(f"need one ego-motion per source frame (>= 1), got {len(ego_motions)} and "
                         f"{len(source_images)}")
    kk = _per_view(K, total, n, "K").to(depths.dtype)
    ext = None if extrinsics is None else _per_view(extrinsics, total, n, "extrinsics").to(depths.dtype)
    warped, valid = [], []
    for src, motion in zip(source_images, ego_motions):
        motion = motion.to(depths.dtype)
        if motion.dim() == 2:
            motion = motion.expand(total // n, 4, 4)
        if motion.shape[0] != total // n:
            raise ValueError(f"ego-motion has {motion.shape[0]} entries, expected one per rig ({total // n})")
        motion = motion.repeat_interleave(n, dim=0)
        T = motion if ext is None else camera_motion(motion, ext)
        w, ok = inverse_warp(src, depths, T, kk, kk, min_depth)
        warped.append(w)
        valid.append(ok)
    return min_reprojection_loss(target_images, warped, valid, source_images if automask else None,
                                 automask=automask, mask=mask, alpha=alpha, window=window)


__all__ = [
    "ssim", "photometric_error", "min_reprojection_loss", "edge_aware_smoothness", "semantic_distillation_loss",
    "silog_loss", "normalised_log_depth", "scale_invariant_bin_assignment", "kl_bin_loss", "cross_bin_loss",
    "ring_neighbour_pairs", "view_relational_loss", "sparse_depth_loss", "curvature_loss", "ring_neighbours",
    "spatial_photometric_loss", "temporal_photometric_loss", "SSIM_C1", "SSIM_C2", "DEFAULT_SSIM_WINDOW",
    "SC_DEPTH_SSIM_WINDOW",
]
