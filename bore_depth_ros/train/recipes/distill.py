"""``distill``: SVR-style distillation of a bin student from a frozen teacher (spec: surround-models.md
section B).

Augmentation: no flip (it would swap the border strips the view-relational term compares); zoom and
colour jitter per view. Teacher and student see the same augmented images.

Teacher targets (`teacher_bin_targets`): the relative teacher is made metric per image by a robust
affine fit of its inverse depth to the ground truth's (or, for the cross term, to the student's
depth), then assigned to the student's own metric bins, so both use the same bin edges and the
first and last bins can agree.

``grad_match`` (default 0): multi-scale gradient matching of the student's log depth against the
ground truth (:mod:`..losses.gradient`), over the pixels where the ground truth is valid: dense in
the simulated recordings; with sparse LiDAR only pairs of neighbouring returns count, so it does
little there.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ...core.preprocess import normalise_into
from .. import losses as L
from ..batches import stack_rigs, view_focal
from ..dataset import finite_or_nan, prepare_view
from ..labels import LabelView, view_window
from ..losses.alignment import DEFAULT_MIN_POINTS
from ..losses.gradient import DEFAULT_GRAD_MATCH_SCALES, gradient_matching_loss
from .base import Recipe
from .teacher import teacher_depth_features
from .tensors import as_tensor, gt_and_mask, resize_to, to_grid

ALIGN_FALLBACKS = ("mask", "student")


class TeacherTargets(NamedTuple):
    """The teacher's bin probabilities on the student's bins (`teacher_bin_targets`)."""

    kl_probs: torch.Tensor  # [B,K,h,w] teacher aligned to GT (or to the student: fallback)
    kl_mask: torch.Tensor  # [B,1,h,w] bool, pixels of the images whose kl_probs hold
    cross_probs: torch.Tensor | None  # [B,K,h,w] teacher aligned to the student's depth
    cross_ok: torch.Tensor | None  # [B] bool, the images whose cross_probs hold
    gt_aligned: torch.Tensor  # [B] bool, the images aligned to GT


def teacher_bin_targets(
    teacher_depth: torch.Tensor,
    gt: torch.Tensor,
    gt_mask: torch.Tensor,
    bin_centres: torch.Tensor,
    map_hw,
    min_depth: float,
    max_depth: float,
    min_points: int = DEFAULT_MIN_POINTS,
    fallback: str = "mask",
    student_depth: torch.Tensor | None = None,
    cross: bool = False,
) -> TeacherTargets:
    """The teacher's bin probabilities on the student's own bins: the same edges, so the first and
    last bins can agree.

    1. KL targets, metric where GT exists: a, b per image from `fit_inverse_depth_alignment` of the
       teacher (resized to the GT size) to the ground truth on its valid pixels (sparse LiDAR or
       dense): a / teacher + b = 1 / gt. Images with fewer than ``min_points`` valid GT pixels (or
       a failed fit): ``fallback`` "mask" leaves them out of the KL term; "student" aligns them
       to the student's own depth (step 2) instead, so they still teach the teacher's shape.
    2. Cross targets (``cross``): the teacher aligned to the student's depth (detached, every
       pixel at the map size): the teacher's shape at the student's scale. Aligned to GT instead,
       sum_k t_k c_k would be the GT-aligned teacher whatever the centres (the assignment below
       reproduces its depth), so the cross term could not see the centres.
    3. metric teacher = 1 / clamp(a / teacher + b, 1 / max_depth, 1 / min_depth) at ``map_hw``,
       assigned to ``bin_centres`` [B,K] (the student's, metres; K is the model's) by
       `metric_bin_assignment`. Teacher pixels that are not finite and positive (holes in stored
       labels) are fitted on by neither fit and left out of the KL mask.
    """
    if fallback not in ALIGN_FALLBACKS:
        raise ValueError(f"align_fallback must be one of {ALIGN_FALLBACKS}, got {fallback!r}")
    a, b, ok = L.fit_inverse_depth_alignment(resize_to(teacher_depth, gt.shape[-2:]), gt, gt_mask, min_points)
    small = resize_to(teacher_depth, map_hw)
    kl_ok = ok
    cross_probs = ok_s = None
    if cross or (fallback == "student" and not bool(ok.all())):
        if student_depth is None:
            raise ValueError("the cross term and align_fallback 'student' need the student's depth")
        a_s, b_s, ok_s = L.fit_inverse_depth_alignment(
            small, resize_to(student_depth.detach(), map_hw), None, min_points
        )
        if cross:
            cross_metric = L.apply_inverse_depth_alignment(small, a_s, b_s, min_depth, max_depth)
            cross_probs = L.metric_bin_assignment(cross_metric, bin_centres)
        if fallback == "student":
            a, b = torch.where(ok, a, a_s), torch.where(ok, b, b_s)
            kl_ok = ok | ok_s
    metric = L.apply_inverse_depth_alignment(small, a, b, min_depth, max_depth)
    probs = L.metric_bin_assignment(metric, bin_centres)
    kl_mask = kl_ok[:, None, None, None] & torch.isfinite(small) & (small > 0)  # label holes: left out
    return TeacherTargets(probs, kl_mask, cross_probs, ok_s if cross else None, ok)


class Distill(Recipe):
    """SVR-style distillation of a bin student (forward_train with log_probs, bin_centres, features).

    Batch: max(1, batch // N) random whole rigs. Teacher (frozen, inference mode) depth, aligned per
    image, gives bin probabilities on the student's own bins at the student's map size
    (`teacher_bin_targets`). Terms: ``silog`` (student depth vs GT, per image), ``kl`` (teacher
    aligned to GT || student probabilities), ``cross`` (the probabilities of the teacher aligned to
    the student's depth, with the student's centres, vs GT),
    ``relational`` (border-strip affinities of ring-adjacent views, student decoder features vs
    teacher features, both pooled to H/stride x W/stride).
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
        "align_min_points": DEFAULT_MIN_POINTS,  # valid GT pixels an image needs
        "align_fallback": "mask",  # images without enough GT: "mask" (no KL) or "student"
        "grad_match": 0.0,  # multi-scale log-depth gradient matching against the ground truth
        "grad_match_scales": DEFAULT_GRAD_MATCH_SCALES,
    }

    def __init__(self, cfg, info, model, teacher=None):
        super().__init__(cfg, info, model, teacher)
        if not hasattr(model, "forward_train"):
            raise ValueError(
                f"recipe 'distill' needs a bin student with forward_train (e.g. svr), not {cfg.model}"
            )

    @classmethod
    def check_config(cls, cfg, info) -> None:
        super().check_config(cfg, info)
        w = cls.loss_options(cfg)
        if w["align_fallback"] not in ALIGN_FALLBACKS:
            raise ValueError(
                f"recipe 'distill': align_fallback must be one of {ALIGN_FALLBACKS}, "
                f"got {w['align_fallback']!r}"
            )
        if int(w["align_min_points"]) < 2:
            raise ValueError(f"recipe 'distill': align_min_points must be >= 2, got {w['align_min_points']}")

    label_views = True  # sample() names each view's crop window: labels keep zoom augmentation

    def sample(self, data, rng, out_hw, aug):
        n = data.num_views
        rigs = []
        label_views = []  # (recording, topic, stamp, crop window) of each view, for teacher labels
        for _ in range(max(1, self.cfg.batch // n)):
            s = data[int(rng.integers(len(data)))]
            views = [
                prepare_view(s.images[v], s.intrinsics[v], s.depth_gt[v], out_hw, rng, aug, allow_flip=False)
                for v in range(n)
            ]
            if s.topics:
                label_views += [
                    LabelView(
                        s.source, s.topics[v], s.stamps[v], view_window(s.intrinsics[v], x[1], x[3]), x[3]
                    )
                    for v, x in enumerate(views)
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
        batch["pairs"] = getattr(data, "neighbour_pairs", None)  # views whose fields of view overlap
        if label_views:
            batch["label_views"] = label_views
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
        if float(w["grad_match"]):
            parts["grad_match"] = float(w["grad_match"]) * gradient_matching_loss(
                out["depth"], gt, mask, int(w["grad_match_scales"])
            )
        relational = float(w["relational"]) > 0
        t_depth, t_feat = teacher_depth_features(
            self.teacher, self.teacher_info, rgb, batch["fx"], relational
        )
        log_probs = out["log_probs"]
        cross = bool(float(w["cross"]))
        targets = teacher_bin_targets(
            t_depth,
            gt,
            mask,
            out["bin_centres"],
            log_probs.shape[-2:],
            cfg.min_depth,
            cfg.max_depth,
            int(w["align_min_points"]),
            str(w["align_fallback"]),
            out["depth"],
            cross,
        )
        if float(w["kl"]):
            parts["kl"] = float(w["kl"]) * L.kl_bin_loss(log_probs, targets.kl_probs, targets.kl_mask)
        if cross:
            cross_mask = mask & targets.cross_ok[:, None, None, None]
            parts["cross"] = float(w["cross"]) * L.cross_bin_loss(
                targets.cross_probs, out["bin_centres"], gt, cross_mask, lam=lam
            )
        if relational:
            if n < 2:
                raise ValueError("the relational term needs rigs of at least two cameras")
            h, wd = rgb.shape[-2:]
            stride = int(w["relational_stride"])
            grid = (max(1, h // stride), max(1, wd // stride))
            strip = max(1, min(grid[1], int(round(grid[1] * float(w["relational_strip"])))))
            pairs = batch.get("pairs")
            sa, sb = L.ring_neighbour_pairs(to_grid(out["features"], grid), n, pairs)
            ta, tb = L.ring_neighbour_pairs(to_grid(t_feat, grid), n, pairs)
            parts["relational"] = float(w["relational"]) * L.view_relational_loss(
                sa, sb, ta, tb, strip, kind=str(w["relational_kind"])
            )
        return self._finish(parts)
