"""``semi_smd``: Semi-SMD-style semi-supervision on whole rigs and their previous set (spec:
surround-models.md section B).

Augmentation: colour jitter only (no zoom, no flip: the rig geometry must stay as calibrated), with
the same jitter factors for every view of the rig and for the previous set, so the spatial and
temporal photometric terms compare like with like.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .. import losses as L
from ..batches import model_forward, rig_batch, stack_rigs
from .base import Recipe
from .teacher import teacher_depth_features
from .tensors import as_tensor, gt_and_mask, resize_to


class SemiSMD(Recipe):
    """Semi-SMD-style semi-supervision on whole rigs and their previous set.

    Batch: max(1, batch // N) random sets that have a previous set; model inputs from the
    (colour-jittered) images, `core.rays.rig_inputs` of the intrinsics and ``base_from_cam``. Terms:
    ``spatial`` (ring neighbours at the same instant, known extrinsics: metric scale),
    ``temporal`` (previous set, ego motion from odometry, per-camera E^-1 T E, auto-masked),
    ``lidar`` (sparse depth loss on every k-th ground-truth row, random phase per step: scan
    lines of a LiDAR), ``curvature`` (against a per-view teacher's depth, when configured),
    ``smoothness``.
    """

    name = "semi_smd"
    teacher_weight = "curvature"
    loss_defaults = {
        "spatial": 1.0,
        "temporal": 1.0,
        "lidar": 0.5,
        "curvature": 0.1,
        "smoothness": 1e-3,
        "lidar_row_step": 4,  # every k-th image row of the ground truth acts as a LiDAR scan line
        "lidar_kind": "silog",
        "lambda": 0.85,
        "curvature_match_spread": False,
        "automask": True,
        "ssim_window": L.DEFAULT_SSIM_WINDOW,
    }

    def sample(self, data, rng, out_hw, aug):
        with_prev = [i for i, s in enumerate(data.samples) if s.prev is not None]
        if not with_prev:
            raise ValueError("semi_smd needs recordings with at least two synchronized sets")
        aug = None if aug is None else dataclasses.replace(aug, flip=0.0, zoom=(1.0, 1.0))
        rigs = []
        for _ in range(max(1, self.cfg.batch // data.num_views)):
            s = data[with_prev[int(rng.integers(len(with_prev)))]]
            rigs.append(rig_batch(self.info, s, data[s.prev], out_hw, int(rng.integers(2**63)), aug))
        batch = stack_rigs(rigs)
        step = max(1, int(self.w["lidar_row_step"]))
        lidar = np.full_like(batch["gt"], np.nan)
        phase = int(rng.integers(step))
        lidar[:, :, phase::step] = batch["gt"][:, :, phase::step]
        batch["lidar"] = lidar
        batch["num_views"] = data.num_views
        return batch

    def loss(self, batch):
        w, cfg, n = self.w, self.cfg, int(batch["num_views"])
        depth, _ = model_forward(self.model, self.info, batch, torch)
        rgb = as_tensor(batch["rgb"])
        window = int(w["ssim_window"])
        parts = {}
        if float(w["spatial"]):
            if "E" not in batch:
                raise ValueError("the spatial term needs every camera's extrinsics (/tf_static)")
            loss, _ = L.spatial_photometric_loss(
                rgb, depth, as_tensor(batch["K"]), as_tensor(batch["E"]), num_views=n, window=window
            )
            parts["spatial"] = float(w["spatial"]) * loss
        if float(w["temporal"]):
            if "ego" not in batch or "E" not in batch:
                raise ValueError("the temporal term needs odometry (/tf odom -> base_link) and extrinsics")
            loss, _ = L.temporal_photometric_loss(
                rgb,
                [as_tensor(batch["prev_rgb"])],
                depth,
                as_tensor(batch["K"]),
                [as_tensor(batch["ego"])],
                as_tensor(batch["E"]),
                num_views=n,
                automask=bool(w["automask"]),
                window=window,
            )
            parts["temporal"] = float(w["temporal"]) * loss
        if float(w["lidar"]):
            lidar, mask = gt_and_mask(cfg, as_tensor(batch["lidar"]))
            parts["lidar"] = float(w["lidar"]) * L.sparse_depth_loss(
                depth, lidar, mask, kind=str(w["lidar_kind"]), lam=float(w["lambda"])
            )
        if self.teacher is not None and float(w["curvature"]):
            t_depth, _ = teacher_depth_features(self.teacher, self.teacher_info, rgb, batch["fx"], False)
            parts["curvature"] = float(w["curvature"]) * L.curvature_loss(
                depth, resize_to(t_depth, depth.shape[-2:]), match_spread=bool(w["curvature_match_spread"])
            )
        if float(w["smoothness"]):
            parts["smooth"] = float(w["smoothness"]) * L.edge_aware_smoothness(1.0 / depth, rgb)
        return self._finish(parts)
