"""Metric scale for depth maps: fixed, already metric, or from the ground plane and the camera height."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .camera import Intrinsics

# Below this many usable points a plane fit is not attempted.
MIN_PLANE_POINTS = 30


@dataclass
class ScaleResult:
    """Scale to multiply model depth by, and where it came from (fixed, metric, ground_plane, held,
    initial)."""

    scale: float
    source: str
    inlier_fraction: float = math.nan
    plane_distance: float = math.nan


class FixedScale:
    """A constant, configured scale."""

    def __init__(self, scale: float):
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be finite and > 0, got {scale}")
        self.scale = scale

    def update(self, depth_rel: np.ndarray, intr: Intrinsics) -> ScaleResult:
        return ScaleResult(self.scale, "fixed")

    def reset(self) -> None:
        pass


class MetricScale:
    """Scale 1 for models whose output is metric by construction."""

    def update(self, depth_rel: np.ndarray, intr: Intrinsics) -> ScaleResult:
        return ScaleResult(1.0, "metric")

    def reset(self) -> None:
        pass


def _orient(normals: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Flip normals (..., 3) to point along ``up``."""
    s = np.where(normals @ up < 0, -1.0, 1.0)
    return normals * s[..., None]


class GroundPlaneScale:
    """Scale from a RANSAC ground-plane fit in the lower image and the known camera height above the ground.

    The plane n.X + d = 0 (n unit, pointing up) found in model units lies |d| below the camera, so the
    metric scale is ``camera_height / |d|``. Successive estimates are smoothed in log space.
    """

    def __init__(
        self,
        camera_height: float,
        up_optical=(0.0, -1.0, 0.0),
        max_tilt_deg: float = 30.0,
        roi_top: float = 0.5,
        max_points: int = 3000,
        ransac_iterations: int = 100,
        inlier_threshold: float = 0.02,
        min_inlier_fraction: float = 0.2,
        smoothing: float = 0.3,
        initial_scale: float = 1.0,
        seed: int = 0,
    ):
        up = np.asarray(up_optical, dtype=np.float64).reshape(-1)
        checks = [
            (
                math.isfinite(camera_height) and camera_height > 0,
                f"camera_height must be > 0, got {camera_height}",
            ),
            (
                up.shape == (3,) and np.all(np.isfinite(up)) and np.linalg.norm(up) > 0,
                f"up_optical must be a non-zero 3-vector, got {up_optical}",
            ),
            (0 < max_tilt_deg < 90, f"max_tilt_deg must be in (0, 90), got {max_tilt_deg}"),
            (0 <= roi_top < 1, f"roi_top must be in [0, 1), got {roi_top}"),
            (max_points >= MIN_PLANE_POINTS, f"max_points must be >= {MIN_PLANE_POINTS}, got {max_points}"),
            (ransac_iterations >= 1, f"ransac_iterations must be >= 1, got {ransac_iterations}"),
            (inlier_threshold > 0, f"inlier_threshold must be > 0, got {inlier_threshold}"),
            (
                0 <= min_inlier_fraction <= 1,
                f"min_inlier_fraction must be in [0, 1], got {min_inlier_fraction}",
            ),
            (0 < smoothing <= 1, f"smoothing must be in (0, 1], got {smoothing}"),
            (
                math.isfinite(initial_scale) and initial_scale > 0,
                f"initial_scale must be > 0, got {initial_scale}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        self.camera_height = float(camera_height)
        self.up = up / np.linalg.norm(up)
        self.max_tilt_deg = float(max_tilt_deg)
        self.roi_top = float(roi_top)
        self.max_points = int(max_points)
        self.ransac_iterations = int(ransac_iterations)
        self.inlier_threshold = float(inlier_threshold)
        self.min_inlier_fraction = float(min_inlier_fraction)
        self.smoothing = float(smoothing)
        self.initial_scale = float(initial_scale)
        self.seed = seed
        self._cos_tilt = math.cos(math.radians(self.max_tilt_deg))
        self.reset()

    def reset(self) -> None:
        """Forget the scale history and reseed the RANSAC generator."""
        self._log_scale: float | None = None
        self._rng = np.random.default_rng(self.seed)

    def _sample_points(self, depth: np.ndarray, intr: Intrinsics) -> np.ndarray:
        """Up to max_points back-projected points with finite positive depth below roi_top, evenly spread."""
        h, w = depth.shape
        top = min(int(self.roi_top * h), h - 1)
        roi = depth[top:]
        # A coarse pixel stride first keeps the mask cheap; ~4x max_points candidates remain.
        step = max(1, int(math.sqrt(roi.size / (4 * self.max_points))))
        sub = roi[::step, ::step]
        z = sub.reshape(-1)
        idx = np.flatnonzero(np.isfinite(z) & (z > 0))
        if idx.size > self.max_points:
            idx = idx[np.linspace(0, idx.size - 1, self.max_points).astype(np.intp)]
        rows, cols = np.divmod(idx, sub.shape[1])
        zs = z[idx].astype(np.float64)
        u = cols * step
        v = rows * step + top
        return np.stack([(u - intr.cx) / intr.fx * zs, (v - intr.cy) / intr.fy * zs, zs], axis=1)

    def _fit(self, pts: np.ndarray):
        """(normal, d, inlier_fraction) of the best acceptable plane, or (None, nan, fraction) if none."""
        n_pts = pts.shape[0]
        thr = self.inlier_threshold * float(np.median(pts[:, 2]))
        tri = pts[self._rng.integers(0, n_pts, size=(self.ransac_iterations, 3))]
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norms = np.linalg.norm(normals, axis=1)
        valid = norms > 1e-12 * max(float(np.abs(pts).max()), 1.0) ** 2
        normals = _orient(normals / np.where(valid, norms, 1.0)[:, None], self.up)
        d = -np.einsum("ij,ij->i", normals, tri[:, 0])
        # camera above the plane (d > 0) and the normal close enough to up
        valid &= (normals @ self.up >= self._cos_tilt) & (d > 0)
        if not valid.any():
            return None, math.nan, math.nan
        # (hypotheses, points) distances; the (3, N) operand must be contiguous for matmul to use BLAS
        dist = normals[valid] @ np.ascontiguousarray(pts.T)
        dist += d[valid, None]
        np.abs(dist, out=dist)
        best = int(np.argmax(np.count_nonzero(dist < thr, axis=1)))
        inliers = pts[dist[best] < thr]
        if inliers.shape[0] < 3:
            return None, math.nan, inliers.shape[0] / n_pts
        centroid = inliers.mean(axis=0)
        normal = _orient(np.linalg.svd(inliers - centroid, full_matrices=False)[2][2], self.up)
        dd = -float(normal @ centroid)
        fraction = float(np.count_nonzero(np.abs(pts @ normal + dd) < thr)) / n_pts
        if normal @ self.up < self._cos_tilt or dd <= 0 or fraction < self.min_inlier_fraction:
            return None, math.nan, fraction
        return normal, dd, fraction

    def update(self, depth_rel: np.ndarray, intr: Intrinsics) -> ScaleResult:
        """Estimate the scale for one (H, W) relative depth map whose size ``intr`` describes."""
        if depth_rel.ndim != 2 or depth_rel.shape != (intr.height, intr.width):
            raise ValueError(
                f"depth of shape {depth_rel.shape} does not match intrinsics of size "
                f"{intr.width}x{intr.height}"
            )
        pts = self._sample_points(depth_rel, intr)
        fraction = math.nan
        if pts.shape[0] >= MIN_PLANE_POINTS:
            normal, d, fraction = self._fit(pts)
            if normal is not None:
                log_raw = math.log(self.camera_height / d)
                if self._log_scale is None:
                    self._log_scale = log_raw
                else:
                    self._log_scale += self.smoothing * (log_raw - self._log_scale)
                return ScaleResult(math.exp(self._log_scale), "ground_plane", fraction, d)
        if self._log_scale is None:
            return ScaleResult(self.initial_scale, "initial", fraction)
        return ScaleResult(math.exp(self._log_scale), "held", fraction)


_ESTIMATORS = {"fixed": FixedScale, "ground_plane": GroundPlaneScale, "metric": MetricScale}


def make_scale_estimator(mode: str, **params):
    """Build the scale estimator for ``mode`` ("fixed", "ground_plane" or "metric") with its parameters."""
    cls = _ESTIMATORS.get(mode)
    if cls is None:
        raise ValueError(f"unknown scale mode {mode!r}; valid modes: {', '.join(sorted(_ESTIMATORS))}")
    return cls(**params)
