"""Training losses for the BoRe-Depth and surround depth models (batched torch, differentiable, any device).

Specs: /work/shared/specs/bore-depth.md sections 2.3 and 4 (self-supervised photometric loss,
semantic distillation) and /work/shared/specs/surround-models.md sections A3, B1 and B2 (SVR-style
distillation, Semi-SMD-style spatial/temporal photometric, sparse LiDAR and curvature losses).
Where the papers leave a loss unspecified, the form here is our choice and says so.

Shapes: images [B,C,H,W] in [0, 1]; depth, disparity [B,1,H,W]; masks [B,1,H,W], bool or 0/1
float (None = every pixel). Surround batches hold whole rigs [B*N,...] in ring order
(`bore_depth_ros.sim.rig.RING_ORDER`: yaw increasing, so view v+1 is to the left of view v).
A loss whose mask selects no pixel returns a zero that is still attached to the graph.

The losses live in :mod:`.photometric` (view synthesis) and :mod:`.depth` (ground truth, LiDAR,
teachers), the robust per-image alignment of a relative teacher to metric depth in
:mod:`.alignment`; this package is their one namespace (``from bore_depth_ros.train import losses as L``).
"""

from __future__ import annotations

from .alignment import apply_inverse_depth_alignment, fit_inverse_depth_alignment
from .depth import (
    cross_bin_loss,
    curvature_loss,
    kl_bin_loss,
    metric_bin_assignment,
    normalised_log_depth,
    ring_neighbour_pairs,
    scale_invariant_bin_assignment,
    semantic_distillation_loss,
    silog_loss,
    sparse_depth_loss,
    view_relational_loss,
)
from .photometric import (
    DEFAULT_SSIM_WINDOW,
    SC_DEPTH_SSIM_WINDOW,
    SSIM_C1,
    SSIM_C2,
    edge_aware_smoothness,
    min_reprojection_loss,
    photometric_error,
    ring_neighbours,
    spatial_photometric_loss,
    ssim,
    temporal_photometric_loss,
)

__all__ = [
    "DEFAULT_SSIM_WINDOW",
    "SC_DEPTH_SSIM_WINDOW",
    "SSIM_C1",
    "SSIM_C2",
    "apply_inverse_depth_alignment",
    "cross_bin_loss",
    "curvature_loss",
    "edge_aware_smoothness",
    "fit_inverse_depth_alignment",
    "kl_bin_loss",
    "metric_bin_assignment",
    "min_reprojection_loss",
    "normalised_log_depth",
    "photometric_error",
    "ring_neighbour_pairs",
    "ring_neighbours",
    "scale_invariant_bin_assignment",
    "semantic_distillation_loss",
    "silog_loss",
    "sparse_depth_loss",
    "spatial_photometric_loss",
    "ssim",
    "temporal_photometric_loss",
    "view_relational_loss",
]
