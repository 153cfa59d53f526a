"""``distill``: SVR-style distillation of a bin student from a frozen teacher (spec: surround-models.md
section B).

Augmentation: no flip (it would swap the border strips the view-relational term compares); zoom and
colour jitter per view. Teacher and student see the same augmented images.
"""

from __future__ import annotations

import numpy as np

from ...core.preprocess import normalise_into
from .. import losses as L
from ..batches import stack_rigs, view_focal
from ..dataset import finite_or_nan, prepare_view
from .base import Recipe
from .teacher import teacher_depth_features
from .tensors import as_tensor, gt_and_mask, resize_to, to_grid


class Distill(Recipe):
    """SVR-style distillation of a bin student (forward_train with log_probs, bin_centres, features).

    Batch: max(1, batch // N) random whole rigs. Teacher (frozen, inference mode) depth gives the
    scale-invariant bin assignment at the student's map size. Terms: ``silog`` (student depth vs GT),
    ``kl`` (teacher assignment || student probabilities), ``cross`` (teacher probabilities with
    student centres vs GT), ``relational`` (border-strip affinities of ring-adjacent views, student
    decoder features vs teacher features, both pooled to H/stride x W/stride).
    """

    name = "distill"
    per_view = True
    requires_teacher = True
    loss_defaults = {
        "silog": 1.0,
        "kl": 1.0,
        "cross": 1.0,
        "relational": 1.0,
        "lambda": 0.85,  # SILog lambda of the silog and cross terms
        "relational_stride": 8,  # features pooled to (H/stride, W/stride) before the affinities
        "relational_strip": 0.125,  # border strip width, fraction of the pooled width
        "relational_kind": "mse",
    }

    def __init__(self, cfg, info, model, teacher=None):
        super().__init__(cfg, info, model, teacher)
        if not hasattr(model, "forward_train"):
            raise ValueError(
                f"recipe 'distill' needs a bin student with forward_train (e.g. svr), not {cfg.model}"
            )

    def sample(self, data, rng, out_hw, aug):
        n = data.num_views
        rigs = []
        for _ in range(max(1, self.cfg.batch // n)):
            s = data[int(rng.integers(len(data)))]
            views = [
                prepare_view(s.images[v], s.intrinsics[v], s.depth_gt[v], out_hw, rng, aug, allow_flip=False)
                for v in range(n)
            ]
            rigs.append(
                {
                    "rgb": np.stack([x[0] for x in views]).transpose(0, 3, 1, 2).astype(np.float32),
                    "image": np.stack([normalise_into(x[0], self.info.mean, self.info.std) for x in views]),
                    "focal": np.asarray([[view_focal(x[1], self.info)] for x in views], np.float32),
                    "fx": np.asarray([x[1].fx for x in views]),
                    "gt": np.stack([finite_or_nan(x[2], out_hw) for x in views])[:, None],
                }
            )
        batch = stack_rigs(rigs)
        batch["image"] = batch["image"].astype(np.float32)
        batch["num_views"] = n
        return batch

    def loss(self, batch):
        w, cfg, n = self.w, self.cfg, int(batch["num_views"])
        rgb = as_tensor(batch["rgb"])
        out = self.model.forward_train(as_tensor(batch["image"]), as_tensor(batch["focal"]))
        gt, mask = gt_and_mask(cfg, as_tensor(batch["gt"]))
        lam = float(w["lambda"])
        parts = {}
        if float(w["silog"]):
            parts["silog"] = float(w["silog"]) * L.silog_loss(out["depth"], gt, mask, lam=lam)
        relational = float(w["relational"]) > 0
        t_depth, t_feat = teacher_depth_features(
            self.teacher, self.teacher_info, rgb, batch["fx"], relational
        )
        log_probs = out["log_probs"]
        t_probs = L.scale_invariant_bin_assignment(
            resize_to(t_depth, log_probs.shape[-2:]), log_probs.shape[1]
        )
        if float(w["kl"]):
            parts["kl"] = float(w["kl"]) * L.kl_bin_loss(log_probs, t_probs)
        if float(w["cross"]):
            parts["cross"] = float(w["cross"]) * L.cross_bin_loss(
                t_probs, out["bin_centres"], gt, mask, lam=lam
            )
        if relational:
            if n < 2:
                raise ValueError("the relational term needs rigs of at least two cameras")
            h, wd = rgb.shape[-2:]
            stride = int(w["relational_stride"])
            grid = (max(1, h // stride), max(1, wd // stride))
            strip = max(1, min(grid[1], int(round(grid[1] * float(w["relational_strip"])))))
            sa, sb = L.ring_neighbour_pairs(to_grid(out["features"], grid), n)
            ta, tb = L.ring_neighbour_pairs(to_grid(t_feat, grid), n)
            parts["relational"] = float(w["relational"]) * L.view_relational_loss(
                sa, sb, ta, tb, strip, kind=str(w["relational_kind"])
            )
        return self._finish(parts)
