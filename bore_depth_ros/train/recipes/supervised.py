"""The supervised recipes: views as independent images with ground-truth depth.

- ``supervised_relative``: scale-invariant log loss (SILog with lambda = 1, i.e. the spread of
  log(pred/gt)) plus optional edge-aware smoothness: for relative-depth models (BoRe-Depth),
  evaluated median-scaled.
- ``supervised_metric``: SILog (lambda 0.85) on metric depth, optional L1 of log depth (SVR-style
  student with ground truth).

Both (loss keys ``grad_match``, ``grad_match_scales``, default off): multi-scale gradient matching of
log depth against the ground truth (:mod:`..losses.gradient`, scale-invariant, so it suits the
relative recipe as well): sharper depth boundaries. SILog is per image (``losses.silog_loss``).
"""

from __future__ import annotations

import abc

import torch

from .. import losses as L
from ..batches import PER_VIEW_INPUTS, model_forward, sample_views
from ..losses.gradient import DEFAULT_GRAD_MATCH_SCALES, gradient_matching_loss
from .base import Recipe
from .tensors import as_tensor, gt_and_mask


class _Supervised(Recipe):
    per_view = True
    extra_term: str  # loss weight of the recipe's extra term ...
    extra_term_name: str  # ... and its name in the reported parts

    @classmethod
    def check_config(cls, cfg, info) -> None:
        # Loss keys are not checked and a configured teacher is ignored (as before the recipe classes).
        extra = set(info.input_names) - PER_VIEW_INPUTS
        if extra:
            raise ValueError(
                f"recipe '{cls.name}' trains views independently; model "
                f"{cfg.model} also needs {sorted(extra)} (a rig recipe)"
            )

    @classmethod
    def uses_teacher(cls, cfg) -> bool:
        return False

    def sample(self, data, rng, out_hw, aug):
        return sample_views(data, self.cfg.batch, rng, out_hw, self.info, aug)

    def loss(self, batch):
        depth, _ = model_forward(self.model, self.info, batch, torch)
        return self.depth_loss(depth, batch)

    def depth_loss(self, depth: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
        """The loss of a prediction ``depth`` [B,1,h,w] of ``batch`` (no model call): SILog plus extra
        terms."""
        gt, mask = gt_and_mask(self.cfg, as_tensor(batch["gt"]))
        parts = {"silog": L.silog_loss(depth, gt, mask, lam=float(self.w["lambda"]))}
        weight = float(self.w[self.extra_term])
        if weight:
            parts[self.extra_term_name] = self.extra(weight, depth, gt, mask, batch)
        grad = float(self.w.get("grad_match", 0.0))
        if grad:
            scales = int(self.w.get("grad_match_scales", DEFAULT_GRAD_MATCH_SCALES))
            parts["grad_match"] = grad * gradient_matching_loss(depth, gt, mask, scales)
        return self._finish(parts)

    @abc.abstractmethod
    def extra(self, weight: float, depth, gt, mask, batch) -> torch.Tensor:
        """The extra term times ``weight`` (``loss[extra_term]``; not called when 0)."""


class SupervisedRelative(_Supervised):
    name = "supervised_relative"
    loss_defaults = {"lambda": 1.0, "smoothness": 0.0, "grad_match": 0.0, "grad_match_scales": 4}
    extra_term, extra_term_name = "smoothness", "smooth"

    def extra(self, weight, depth, gt, mask, batch):
        return weight * L.edge_aware_smoothness(1.0 / depth, as_tensor(batch["image"]))


class SupervisedMetric(_Supervised):
    name = "supervised_metric"
    loss_defaults = {"lambda": 0.85, "l1_log": 0.0, "grad_match": 0.0, "grad_match_scales": 4}
    extra_term = extra_term_name = "l1_log"

    def extra(self, weight, depth, gt, mask, batch):
        diff = (torch.log(depth) - torch.log(gt)).abs()
        return weight * (diff * mask).sum() / mask.sum().clamp(min=1)


def supervised_loss(
    cfg, info, depth: torch.Tensor, batch: dict, torch_module=None
) -> tuple[torch.Tensor, dict]:
    """The loss of supervised recipe ``cfg.recipe`` for a prediction ``depth`` of ``batch``, without a model.

    ``torch_module`` is ignored; it keeps the call signature of the trainer's former ``recipe_loss``.
    """
    recipe = {r.name: r for r in (SupervisedRelative, SupervisedMetric)}[cfg.recipe]
    return recipe(cfg, info, None).depth_loss(depth, batch)
