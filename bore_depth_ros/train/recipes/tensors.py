"""Small tensor helpers shared by the recipes' losses."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def as_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def gt_and_mask(cfg, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gt with invalid pixels set to 1, valid mask): finite and inside (cfg.min_depth, cfg.max_depth)."""
    mask = torch.isfinite(gt) & (gt > cfg.min_depth) & (gt < cfg.max_depth)
    return torch.where(mask, gt, torch.ones_like(gt)), mask


def normalise_tensor(rgb: torch.Tensor, info) -> torch.Tensor:
    """[0, 1] RGB [B,3,H,W] normalised with the model's mean and std."""
    mean = torch.tensor(info.mean, dtype=rgb.dtype).reshape(1, 3, 1, 1)
    std = torch.tensor(info.std, dtype=rgb.dtype).reshape(1, 3, 1, 1)
    return (rgb - mean) / std


def resize_to(x: torch.Tensor, hw) -> torch.Tensor:
    """Bilinear resize of [B,C,h,w] to ``hw`` (a no-op at that size)."""
    return (
        x
        if tuple(x.shape[-2:]) == tuple(hw)
        else F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False)
    )


def to_grid(x: torch.Tensor, hw) -> torch.Tensor:
    """Average-pool larger maps, bilinearly upsample smaller ones, to ``hw``."""
    if x.shape[-2] >= hw[0] and x.shape[-1] >= hw[1]:
        return F.adaptive_avg_pool2d(x, hw)
    return resize_to(x, hw)
