"""``semi_smd``: Semi-SMD-style semi-supervision on whole rigs and their previous set (spec:
surround-models.md section B).

Augmentation: colour jitter only (no zoom, no flip: the rig geometry must stay as calibrated), with
the same jitter factors for every view of the rig and for the previous set, so the spatial and
temporal photometric terms compare like with like.

Ego motion of the temporal term (``TrainConfig.pose``): ``tf`` (default) the odometry from /tf;
``network`` a jointly trained :class:`~..posenet.RigPoseNet` (one rigid base_link motion per rig
from all views, their depths and the extrinsics; each camera's motion is E^-1 T E), optionally
pulled towards the odometry where the recording has it (``pose_tf``).

Confidence (our choice; the papers do not say how Semi-SMD's confidence is trained): the model's
confidence head is trained to predict how well its depth agrees with the data at each pixel,
by binary cross-entropy to a soft agreement target: exp(-|log(d / d_lidar)| / log 1.25) on the
sparse LiDAR rows (e^-1 at the 1.25 ratio of the delta-1 metric), elsewhere exp(-e / tau) of
the per-pixel photometric error e the spatial and temporal terms already compute (the smaller of
the two; temporal pixels removed by auto-masking and pixels no warp reaches do not count). By
default the head sees detached decoder features, so this term trains the confidence head only and
never the depth.

Gradient matching (``grad_match``, default 0): the recipe's only dense target is the teacher's
depth (the LiDAR rows are sparse and the dense ground truth is deliberately not used), so the term
matches the multi-scale log-depth gradients of the prediction to the teacher's
(:mod:`..losses.gradient`; scale-invariant, so a relative teacher serves); it needs ``teacher``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch.nn import functional as F

from .. import losses as L
from ..batches import rig_batch, stack_rigs
from ..losses.gradient import DEFAULT_GRAD_MATCH_SCALES, gradient_matching_loss
from ..posenet import RigPoseNet, pose_difference
from .base import Recipe
from .teacher import teacher_depth_features
from .tensors import as_tensor, gt_and_mask, resize_to

LOG_DELTA1 = math.log(1.25)


def confidence_target(
    depth: torch.Tensor,
    photometric_error: torch.Tensor | None,
    lidar: torch.Tensor | None,
    lidar_mask: torch.Tensor | None,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(target [B,1,H,W] in [0, 1], pixels that count [B,1,H,W] bool), detached.

    LiDAR pixels: exp(-|log(depth / lidar)| / log 1.25); other pixels with a finite
    ``photometric_error`` (inf where no warp counts): exp(-error / tau).
    """
    depth = depth.detach()
    target = torch.zeros_like(depth)
    used = torch.zeros_like(depth, dtype=torch.bool)
    if photometric_error is not None:
        e = photometric_error.detach()
        ok = torch.isfinite(e)
        target = torch.where(ok, torch.exp(-torch.where(ok, e, torch.zeros_like(e)) / tau), target)
        used = used | ok
    if lidar is not None and lidar_mask is not None:
        m = lidar_mask.bool()
        err = (torch.log(depth.clamp_min(1e-6)) - torch.log(lidar.clamp_min(1e-6))).abs()
        target = torch.where(m, torch.exp(-err / LOG_DELTA1), target)
        used = used | m
    return target, used


def confidence_loss(logit: torch.Tensor, target: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(``logit``) to the soft ``target``, mean over ``used`` pixels
    (a zero still attached to the graph when none is used)."""
    bce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    m = used.to(bce.dtype)
    return (bce * m).sum() / m.sum().clamp_min(1.0)


def _counted_error(info: dict) -> torch.Tensor:
    """A photometric loss's per-pixel error where it counted (inf elsewhere)."""
    e = info["error"]
    return torch.where(info["mask"], e, torch.full_like(e, math.inf))


class SemiSMD(Recipe):
    """Semi-SMD-style semi-supervision on whole rigs and their previous set.

    Batch: max(1, batch // N) random sets that have a previous set; model inputs from the
    (colour-jittered) images, `core.rays.rig_inputs` of the intrinsics and ``base_from_cam``. Terms:
    ``spatial`` (ring neighbours at the same instant, known extrinsics: metric scale),
    ``temporal`` (previous set, ego motion from odometry or the rig pose network, per-camera
    E^-1 T E, auto-masked), ``lidar`` (sparse depth loss on every k-th ground-truth row, random
    phase per step: scan lines of a LiDAR), ``curvature`` (against a per-view teacher's depth,
    when configured), ``smoothness``, ``confidence`` (the model's confidence head, see the module
    docstring; models without ``confidence_from_features`` skip it), ``pose_tf`` (with
    ``pose: network``: distance of the network's motion to the odometry where /tf has it).
    """

    name = "semi_smd"
    teacher_weight = "curvature"
    loss_defaults = {
        "spatial": 1.0,
        "temporal": 1.0,
        "lidar": 0.5,
        "curvature": 0.1,
        "smoothness": 1e-3,
        "confidence": 0.1,  # BCE of the confidence head to the per-pixel agreement target
        "pose_tf": 0.0,  # pose: network only: |t - t_odom|_1 + |R - R_odom|_F where /tf has odometry
        "lidar_row_step": 4,  # every k-th image row of the ground truth acts as a LiDAR scan line
        "lidar_kind": "silog",
        "lambda": 0.85,
        "curvature_match_spread": False,
        "automask": True,
        "ssim_window": L.DEFAULT_SSIM_WINDOW,
        "confidence_tau": 0.1,  # photometric error at which the agreement target is e^-1
        "confidence_detach": True,  # the confidence term trains the confidence head only
        "pose_width": 32,  # channels of the rig pose network's first layer
        "grad_match": 0.0,  # log-depth gradient matching against the teacher's (dense) depth
        "grad_match_scales": DEFAULT_GRAD_MATCH_SCALES,
    }

    def __init__(self, cfg, info, model, teacher=None):
        super().__init__(cfg, info, model, teacher)
        self.pose_net = None
        if getattr(cfg, "pose", "tf") == "network":
            self.pose_net = RigPoseNet(width=int(self.w["pose_width"]))
            self.modules = {"rig_pose_net": self.pose_net}

    @classmethod
    def check_config(cls, cfg, info) -> None:
        super().check_config(cfg, info)
        w = cls.loss_options(cfg)
        network = getattr(cfg, "pose", "tf") == "network"
        if network and not float(w["temporal"]):
            raise ValueError("pose: network trains the pose network through the temporal term; temporal is 0")
        if float(w["pose_tf"]) and not network:
            raise ValueError("loss pose_tf supervises the pose network: it needs pose: network")
        if not float(w["confidence_tau"]) > 0:
            raise ValueError(f"loss confidence_tau must be > 0, got {w['confidence_tau']}")
        if int(w["pose_width"]) < 1:
            raise ValueError(f"loss pose_width must be >= 1, got {w['pose_width']}")
        if float(w["grad_match"]) and not cfg.teacher:
            raise ValueError(
                "loss grad_match in semi_smd matches the teacher's dense depth (the LiDAR rows are "
                "sparse): set teacher (and teacher_weights or labels)"
            )

    @classmethod
    def uses_teacher(cls, cfg) -> bool:
        w = cls.loss_options(cfg)
        return bool(cfg.teacher) and (float(w["curvature"]) > 0 or float(w["grad_match"]) > 0)

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

    def _forward(self, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(depth, decoder features or None) of the model on ``batch``."""
        args = [as_tensor(batch[name]) for name in self.info.input_names]
        if hasattr(self.model, "forward_train"):
            out = self.model.forward_train(*args)
            return out["depth"], out.get("features")
        out = self.model(*args)
        return (out[0] if isinstance(out, (tuple, list)) else out), None

    def ego_motion(self, batch, depth: torch.Tensor) -> torch.Tensor:
        """base_prev_from_base_cur [B,4,4] of every rig: the rig pose network's, or the odometry's."""
        if self.pose_net is not None:
            if "E" not in batch:
                raise ValueError("the rig pose network needs every camera's extrinsics (/tf_static)")
            return self.pose_net(
                as_tensor(batch["image"]),
                as_tensor(batch["prev_image"]),
                depth,
                as_tensor(batch["E"]),
                int(batch["num_views"]),
            )["base"]
        if "ego" not in batch:
            raise ValueError(
                "the temporal term needs odometry (/tf odom -> base_link) and extrinsics, or pose: network"
            )
        return as_tensor(batch["ego"])

    def loss(self, batch):
        w, cfg, n = self.w, self.cfg, int(batch["num_views"])
        depth, features = self._forward(batch)
        rgb = as_tensor(batch["rgb"])
        window = int(w["ssim_window"])
        parts = {}
        errors = []
        if float(w["spatial"]):
            if "E" not in batch:
                raise ValueError("the spatial term needs every camera's extrinsics (/tf_static)")
            loss, info = L.spatial_photometric_loss(
                rgb, depth, as_tensor(batch["K"]), as_tensor(batch["E"]), num_views=n, window=window
            )
            parts["spatial"] = float(w["spatial"]) * loss
            errors.append(_counted_error(info))
        if float(w["temporal"]):
            if "E" not in batch:
                raise ValueError("the temporal term needs every camera's extrinsics (/tf_static)")
            ego = self.ego_motion(batch, depth)
            loss, info = L.temporal_photometric_loss(
                rgb,
                [as_tensor(batch["prev_rgb"])],
                depth,
                as_tensor(batch["K"]),
                [ego],
                as_tensor(batch["E"]),
                num_views=n,
                automask=bool(w["automask"]),
                window=window,
            )
            parts["temporal"] = float(w["temporal"]) * loss
            errors.append(_counted_error(info))
            if self.pose_net is not None and float(w["pose_tf"]) and "ego" in batch:
                parts["pose_tf"] = float(w["pose_tf"]) * pose_difference(ego, as_tensor(batch["ego"]))
        lidar, lidar_mask = gt_and_mask(cfg, as_tensor(batch["lidar"]))
        if float(w["lidar"]):
            parts["lidar"] = float(w["lidar"]) * L.sparse_depth_loss(
                depth, lidar, lidar_mask, kind=str(w["lidar_kind"]), lam=float(w["lambda"])
            )
        if self.teacher is not None and (float(w["curvature"]) or float(w["grad_match"])):
            t_depth, _ = teacher_depth_features(self.teacher, self.teacher_info, rgb, batch["fx"], False)
            t_depth = resize_to(t_depth, depth.shape[-2:])
            if float(w["curvature"]):
                parts["curvature"] = float(w["curvature"]) * L.curvature_loss(
                    depth, t_depth, match_spread=bool(w["curvature_match_spread"])
                )
            if float(w["grad_match"]):
                parts["grad_match"] = float(w["grad_match"]) * gradient_matching_loss(
                    depth, t_depth, None, int(w["grad_match_scales"])
                )
        if float(w["smoothness"]):
            parts["smooth"] = float(w["smoothness"]) * L.edge_aware_smoothness(1.0 / depth, rgb)
        head = getattr(self.model, "confidence_from_features", None)
        if float(w["confidence"]) and head is not None and features is not None:
            photometric = torch.stack(errors).min(dim=0).values if errors else None
            target, used = confidence_target(
                depth, photometric, lidar, lidar_mask, float(w["confidence_tau"])
            )
            _, logit = head(features.detach() if bool(w["confidence_detach"]) else features)
            parts["confidence"] = float(w["confidence"]) * confidence_loss(logit, target, used)
        return self._finish(parts)
