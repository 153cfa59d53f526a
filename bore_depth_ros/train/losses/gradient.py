"""Multi-scale gradient matching in log depth (MiDaS-style, scale-invariant): sharp depth boundaries.

r = log pred - log target, minus its mean over each image's valid pixels (the unknown scale of a
relative prediction or target is a constant in log space); at K scales (each 2x coarser than the
previous, r and its mask average-pooled over the valid pixels of each 2x2 block),
L = sum_s [ mean |r(x+1, y) - r(x, y)| + mean |r(x, y+1) - r(x, y)| ], each mean over the pixel
pairs whose two pixels are valid. A prediction c * target (any c > 0, per image) costs 0; a
boundary in the wrong place costs at both its positions. Conventions:
:mod:`bore_depth_ros.train.losses`.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .masks import as_mask, masked_mean

DEFAULT_GRAD_MATCH_SCALES = 4


def _coarser(r: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """r averaged over the valid pixels of each 2x2 block, and whether the block has one."""
    v = valid.to(r.dtype)
    total = F.avg_pool2d(torch.where(valid, r, torch.zeros_like(r)), 2)
    count = F.avg_pool2d(v, 2)
    ok = count > 0
    return torch.where(ok, total / count.clamp_min(1e-6), torch.zeros_like(total)), ok


def gradient_matching_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    scales: int = DEFAULT_GRAD_MATCH_SCALES,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Scale-invariant multi-scale gradient matching of log depth (module docstring).

    pred, target [B,1,H,W] positive depth (target pixels that are not finite or not above ``eps``
    are invalid, as are those outside ``mask``); pred is clamped to ``eps`` before the log; the
    target is detached. Scales stop early where the next map would be narrower than 2 pixels. An
    empty mask gives a zero still attached to the graph.
    """
    if scales < 1:
        raise ValueError(f"scales must be >= 1, got {scales}")
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 1:
        raise ValueError(
            "need pred and target of the same shape [B,1,H,W], got "
            f"{list(pred.shape)} and {list(target.shape)}"
        )
    target = target.detach()
    valid = as_mask(mask, target) & torch.isfinite(target) & (target > eps)
    r = torch.log(pred.clamp_min(eps)) - torch.log(torch.where(valid, target, torch.ones_like(target)))
    count = valid.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1).to(r.dtype)
    mean = torch.where(valid, r, torch.zeros_like(r)).sum(dim=(1, 2, 3), keepdim=True) / count
    r = torch.where(valid, r - mean, torch.zeros_like(r))
    total = pred.sum() * 0.0  # attached zero
    for s in range(scales):
        if s:
            if min(r.shape[-2:]) < 4:
                break
            r, valid = _coarser(r, valid)
        vx = valid[..., 1:] & valid[..., :-1]
        vy = valid[..., 1:, :] & valid[..., :-1, :]
        total = total + masked_mean((r[..., 1:] - r[..., :-1]).abs(), vx)
        total = total + masked_mean((r[..., 1:, :] - r[..., :-1, :]).abs(), vy)
    return total
