"""Mask helpers of the losses: a loss whose mask selects no pixel returns a zero still attached to
the graph."""

from __future__ import annotations

import torch


def as_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Bool mask [B,1,H,W] (all True when None; floats are thresholded at 0.5)."""
    if mask is None:
        return torch.ones((like.shape[0], 1, *like.shape[2:]), dtype=torch.bool, device=like.device)
    if mask.dtype != torch.bool:
        mask = mask > 0.5
    if mask.shape[-2:] != like.shape[-2:] or mask.shape[0] != like.shape[0]:
        raise ValueError(f"mask of shape {list(mask.shape)} does not fit a map of shape {list(like.shape)}")
    return mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the pixels where mask (broadcast over channels) is True; attached 0 when empty."""
    mask = mask.expand_as(x)
    count = mask.sum()
    # where() rather than x * mask: x may hold inf/NaN at masked-out pixels.
    total = torch.where(mask, x, torch.zeros_like(x)).sum()
    return total / count.clamp_min(1).to(x.dtype)
