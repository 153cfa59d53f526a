"""Per-view post-processing shared by the nodes, replay and training evaluation (no ROS, no
torch): confidence, metric scale, resize to the published resolution, REP 117 invalid marking
(NaN), summary statistics.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .camera import Intrinsics
from .confidence import edge_confidence
from .resize import resize_bilinear
from .scale import ScaleResult, make_scale_estimator


@dataclass
class ViewConfig:
    """Per-view post-processing parameters (may change at run time)."""

    confidence_threshold: float = 0.0  # depth below this confidence becomes NaN
    min_depth: float = 0.0  # metres; outside [min_depth, max_depth] becomes NaN
    max_depth: float = math.inf
    edge_sensitivity: float = 8.0
    scale_mode: str = "fixed"  # fixed | ground_plane | metric
    depth_scale: float = 1.0  # for scale_mode fixed
    camera_height: float = 0.0  # metres above the ground, for scale_mode ground_plane
    scale_smoothing: float = 0.3  # ground_plane: weight of each new frame's scale (1 = none)


@dataclass
class ViewResult:
    depth: np.ndarray  # (H, W) float32 metres, NaN invalid
    confidence: np.ndarray  # (H, W) float32 in [0, 1]
    scale: ScaleResult
    valid_fraction: float
    mean_confidence: float
    min_depth: float
    median_depth: float
    max_depth: float
    stats_ms: dict[str, float] = field(default_factory=dict)


def make_view_scale(config: ViewConfig, model_is_metric: bool):
    """The scale estimator a view uses, from its config and the model's nature."""
    if model_is_metric and config.scale_mode != "fixed":
        return make_scale_estimator("metric")
    if config.scale_mode == "fixed":
        return make_scale_estimator("fixed", scale=config.depth_scale)
    if config.scale_mode == "ground_plane":
        if not config.camera_height > 0:
            raise ValueError(
                "scale_mode 'ground_plane' needs camera_height > 0 (metres above the "
                f"ground), got {config.camera_height}"
            )
        return make_scale_estimator(
            "ground_plane", camera_height=config.camera_height, smoothing=config.scale_smoothing
        )
    return make_scale_estimator(config.scale_mode)


class ViewProcessor:
    """Turns one view's model output into published depth and confidence."""

    def __init__(
        self, config: ViewConfig, model_is_metric: bool, saturation_bounds: tuple[float, float] | None = None
    ):
        self.model_is_metric = model_is_metric
        self.saturation_bounds = saturation_bounds
        self._pending_lock = threading.Lock()
        self._pending = None
        self._reset_pending = False
        self.config = config
        self.scale_estimator = make_view_scale(config, model_is_metric)

    def configure(self, config: ViewConfig) -> None:
        """Validate ``config`` now (ValueError); it takes effect at the next ``process`` call,
        so a node may reconfigure from its executor thread while a worker thread processes."""
        estimator = make_view_scale(config, self.model_is_metric)
        with self._pending_lock:
            self._pending = (config, estimator)

    def reset(self) -> None:
        """Forget temporal state (scale smoothing), e.g. when a bag restarts; like ``configure``
        it takes effect at the next ``process`` call."""
        self._reset_pending = True

    def _apply_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.config, self.scale_estimator = pending
        if self._reset_pending:
            self._reset_pending = False
            reset = getattr(self.scale_estimator, "reset", None)
            if reset is not None:
                reset()

    def process(
        self, depth_model: np.ndarray, conf_model: np.ndarray | None, out_intr: Intrinsics
    ) -> ViewResult:
        self._apply_pending()
        cfg = self.config
        t0 = time.perf_counter()
        h, w = depth_model.shape
        if conf_model is None:
            conf_model = edge_confidence(depth_model, cfg.edge_sensitivity, self.saturation_bounds)
        scale = self.scale_estimator.update(depth_model, out_intr.scaled_to(w, h))
        t1 = time.perf_counter()
        H, W = out_intr.height, out_intr.width
        if (H, W) != (h, w):
            depth = resize_bilinear(depth_model, H, W)
            conf = resize_bilinear(conf_model, H, W)
        else:
            depth = depth_model.astype(np.float32, copy=True)
            conf = conf_model.astype(np.float32, copy=True)
        np.clip(conf, 0.0, 1.0, out=conf)
        depth *= np.float32(scale.scale)
        invalid = ~np.isfinite(depth)
        invalid |= conf < cfg.confidence_threshold
        if cfg.min_depth > 0:
            invalid |= depth < cfg.min_depth
        if math.isfinite(cfg.max_depth):
            invalid |= depth > cfg.max_depth
        depth[invalid] = np.nan
        t2 = time.perf_counter()
        valid = depth[~invalid]
        n = depth.size
        if valid.size:
            dmin, dmed, dmax = (float(valid.min()), float(np.median(valid)), float(valid.max()))
        else:
            dmin = dmed = dmax = float("nan")
        t3 = time.perf_counter()
        return ViewResult(
            depth,
            conf,
            scale,
            valid.size / n,
            float(conf.mean()),
            dmin,
            dmed,
            dmax,
            {"scale_ms": (t1 - t0) * 1e3, "resize_mask_ms": (t2 - t1) * 1e3, "summary_ms": (t3 - t2) * 1e3},
        )
