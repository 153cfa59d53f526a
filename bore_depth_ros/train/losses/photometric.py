"""Photometric losses (view synthesis through predicted depth and known or estimated motion).

BoRe-Depth / monodepth2 style: SSIM+L1 photometric error, min-reprojection with auto-masking,
edge-aware smoothness; Semi-SMD style: spatial (ring neighbours, known extrinsics) and temporal
(ego motion) photometric terms on whole rigs. Conventions: :mod:`bore_depth_ros.train.losses`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from ..geometry import DEFAULT_MIN_DEPTH, camera_motion, inverse_warp, relative_extrinsics
from .masks import as_mask, masked_mean

SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
DEFAULT_SSIM_WINDOW = 3  # monodepth2 / SurroundDepth; SC-Depth(V3) uses 7
SC_DEPTH_SSIM_WINDOW = 7


# --- photometric -----------------------------------------------------------------------------------


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    window: int = DEFAULT_SSIM_WINDOW,
    c1: float = SSIM_C1,
    c2: float = SSIM_C2,
) -> torch.Tensor:
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


def photometric_error(
    a: torch.Tensor,
    b: torch.Tensor,
    alpha: float = 0.85,
    window: int = DEFAULT_SSIM_WINDOW,
    clamp_l1: bool = False,
) -> torch.Tensor:
    """pe = alpha * mean_c (1 - SSIM) / 2 + (1 - alpha) * mean_c |a - b|; a, b [B,C,H,W] -> [B,1,H,W].

    ``clamp_l1`` clamps |a - b| to [0, 1] as SC-Depth does (no effect on images in [0, 1]).
    """
    l1 = (a - b).abs()
    if clamp_l1:
        l1 = l1.clamp(0.0, 1.0)
    return alpha * ssim(a, b, window).mean(dim=1, keepdim=True) + (1.0 - alpha) * l1.mean(dim=1, keepdim=True)


def min_reprojection_loss(
    target: torch.Tensor,
    warped_list: Sequence[torch.Tensor],
    valid_list: Sequence[torch.Tensor],
    sources_unwarped: Sequence[torch.Tensor] | None = None,
    automask: bool = True,
    mask: torch.Tensor | None = None,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    alpha: float = 0.85,
    window: int = DEFAULT_SSIM_WINDOW,
    erode_valid: bool = True,
) -> tuple[torch.Tensor, dict]:
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
        raise ValueError(
            f"need as many valid masks as warped images (>= 1), got {len(warped_list)} and {len(valid_list)}"
        )
    errors = torch.stack([photometric_error(target, w, alpha, window) for w in warped_list])  # [S,B,1,H,W]
    valid = torch.stack([as_mask(v, target) for v in valid_list])
    if erode_valid and window > 1 and alpha > 0:
        # an SSIM window that reaches a zero-padded (invalid) sample gives a large spurious error
        invalid = (~valid).flatten(0, 1).float()
        invalid = F.max_pool2d(invalid, window, stride=1, padding=window // 2)
        valid = (invalid < 0.5).reshape(valid.shape)
    errors = torch.where(valid, errors, torch.full_like(errors, math.inf))
    error, selected = errors.min(dim=0)
    used = valid.any(dim=0) & as_mask(mask, target)
    keep = identity = None
    if automask and sources_unwarped is not None and len(sources_unwarped) > 0:
        with torch.no_grad():
            identity = (
                torch.stack([photometric_error(target, s, alpha, window) for s in sources_unwarped])
                .min(dim=0)
                .values
            )
            if noise > 0:
                identity = identity + noise * torch.randn(
                    identity.shape, generator=generator, device=identity.device, dtype=identity.dtype
                )
            keep = error.detach() <= identity
        used = used & keep
    loss = masked_mean(error, used)
    return loss, {
        "error": error,
        "selected": selected,
        "mask": used,
        "automask": keep,
        "identity_error": identity,
    }


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


# --- Semi-SMD-style spatial and temporal photometric losses ------------------------------------------


def _per_view(x: torch.Tensor, total: int, num_views: int, name: str) -> torch.Tensor:
    """[N,...] (tiled over rigs), [...] (one for all) or [B*N,...] -> [B*N,...]."""
    if x.dim() == 2:
        return x.expand(total, *x.shape)
    if x.shape[0] == total:
        return x
    if x.shape[0] == num_views:
        return x.repeat(total // num_views, *([1] * (x.dim() - 1)))
    raise ValueError(
        f"{name} has {x.shape[0]} entries, expected {num_views} (one per camera) or {total} (per view)"
    )


def ring_neighbours(num_views: int) -> list[list[int]]:
    """Ring adjacency [[v-1, v+1] mod N for each v]."""
    return [[(v - 1) % num_views, (v + 1) % num_views] for v in range(num_views)]


def spatial_photometric_loss(
    images: torch.Tensor,
    depths: torch.Tensor,
    K: torch.Tensor,
    extrinsics: torch.Tensor,
    neighbours: Sequence[Sequence[int]] | None = None,
    num_views: int | None = None,
    mask: torch.Tensor | None = None,
    alpha: float = 0.85,
    window: int = DEFAULT_SSIM_WINDOW,
    min_depth: float = DEFAULT_MIN_DEPTH,
) -> tuple[torch.Tensor, dict]:
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
        local = torch.tensor(
            [x[slot] if slot < len(x) else v for v, x in enumerate(nbrs)], device=images.device
        )
        has = torch.tensor([slot < len(x) for x in nbrs], device=images.device)
        src = (rig_start + local[None]).reshape(-1)
        T = relative_extrinsics(ext[src], ext)
        w, ok = inverse_warp(images[src], depths, T, kk, kk[src], min_depth)
        warped.append(w)
        valid.append(ok & has.repeat(total // n)[:, None, None, None])
    return min_reprojection_loss(
        images, warped, valid, None, automask=False, mask=mask, alpha=alpha, window=window
    )


def temporal_photometric_loss(
    target_images: torch.Tensor,
    source_images: Sequence[torch.Tensor],
    depths: torch.Tensor,
    K: torch.Tensor,
    ego_motions: Sequence[torch.Tensor],
    extrinsics: torch.Tensor | None = None,
    num_views: int | None = None,
    automask: bool = True,
    mask: torch.Tensor | None = None,
    alpha: float = 0.85,
    window: int = DEFAULT_SSIM_WINDOW,
    min_depth: float = DEFAULT_MIN_DEPTH,
) -> tuple[torch.Tensor, dict]:
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
        raise ValueError(
            f"need one ego-motion per source frame (>= 1), got {len(ego_motions)} and {len(source_images)}"
        )
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
    return min_reprojection_loss(
        target_images,
        warped,
        valid,
        source_images if automask else None,
        automask=automask,
        mask=mask,
        alpha=alpha,
        window=window,
    )
