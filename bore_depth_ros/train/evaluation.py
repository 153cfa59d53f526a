"""Held-out metrics of a model under training (the weights card): every view with ground truth,
predicted at the model input size and upsampled to the ground truth's resolution; metric and
median-scaled means, with the same metric code as ``bore-depth eval``.

Per-view models see one view at a time; rig models (inputs beyond image/focal) see each set as one
batch with its previous set (the set itself when it has none). No augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..core.metrics import depth_metrics, mean_metrics
from ..core.preprocess import normalise_into
from ..core.resize import resize_bilinear
from .batches import PER_VIEW_INPUTS, model_forward, rig_batch, view_focal
from .dataset import RigDataset, prepare_view


def _view_predictions(model, info, dataset: RigDataset, out_hw) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for s in dataset.samples:
        for v in range(len(s.images)):
            if s.depth_gt[v] is None:
                continue
            img, k, _, _ = prepare_view(s.images[v], s.intrinsics[v], None, out_hw, None, None)
            batch = {
                "image": normalise_into(img, info.mean, info.std)[None].astype(np.float32),
                "focal": np.asarray([[view_focal(k, info)]], np.float32),
            }
            depth, _ = model_forward(model, info, batch, torch)
            yield depth[0, 0].numpy(), s.depth_gt[v]


def _rig_predictions(model, info, dataset: RigDataset, out_hw) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for s in dataset.samples:
        if all(d is None for d in s.depth_gt):
            continue
        prev = s if s.prev is None else dataset[s.prev]
        depth, _ = model_forward(model, info, rig_batch(info, s, prev, out_hw, None, None), torch)
        for v, gt in enumerate(s.depth_gt):
            if gt is not None:
                yield depth[v, 0].numpy(), gt


def evaluate(model, info, dataset: RigDataset, cfg) -> dict:
    """``{"views", "metric", "median_scaled"}`` of ``model`` on ``dataset`` (depth range from ``cfg``)."""
    rig_model = bool(set(info.input_names) - PER_VIEW_INPUTS)
    predictions = _rig_predictions if rig_model else _view_predictions
    rows_metric, rows_median = [], []
    model.eval()
    with torch.inference_mode():
        for depth, gt in predictions(model, info, dataset, (cfg.input_height, cfg.input_width)):
            pred = resize_bilinear(depth, gt.shape[0], gt.shape[1])
            rows_metric.append(depth_metrics(pred, gt, cfg.min_depth, cfg.max_depth))
            rows_median.append(depth_metrics(pred, gt, cfg.min_depth, cfg.max_depth, median_scaling=True))
    model.train()
    return {
        "views": len(rows_metric),
        "metric": mean_metrics(rows_metric),
        "median_scaled": mean_metrics(rows_median),
    }
