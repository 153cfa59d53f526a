"""Multi-view geometry for a camera rig: fused point cloud and cross-view consistency (ROS-free)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import Intrinsics
from .pointcloud import backproject, rgb_to_float
from .transforms import Transform


@dataclass
class FusedCloud:
    xyz: np.ndarray                 # (N, 3) float32 in the target frame, all finite
    rgb: np.ndarray | None          # (N,) float32 packed rgb, or None
    points_per_view: list[int]


def fuse_views(depths: list[np.ndarray], intrinsics: list[Intrinsics],
               target_from_optical: list[Transform], stride: int = 4,
               min_range: float = 0.0, max_range: float = float("inf"),
               colors: list[np.ndarray] | None = None) -> FusedCloud:
    """All views' valid points in one frame (unorganized): back-project with ``stride``, transform,
    keep points whose distance from the target origin lies in [min_range, max_range]."""
    parts, cparts, counts = [], [], []
    for i, (depth, intr, tf) in enumerate(zip(depths, intrinsics, target_from_optical)):
        pts = backproject(depth, intr, stride).reshape(-1, 3)
        keep = np.isfinite(pts[:, 2])
        pts = tf.apply(pts[keep])
        if min_range > 0 or np.isfinite(max_range):
            r2 = np.einsum("ij,ij->i", pts, pts)
            inside = (r2 >= min_range * min_range) & (r2 <= max_range * max_range)
            pts = pts[inside]
            keep_idx = np.flatnonzero(keep)[inside]
        else:
            keep_idx = np.flatnonzero(keep)
        parts.append(pts.astype(np.float32, copy=False))
        counts.append(len(pts))
        if colors is not None:
            c = rgb_to_float(np.ascontiguousarray(colors[i][::stride, ::stride])).reshape(-1)
            cparts.append(c[keep_idx])
    xyz = np.concatenate(parts) if parts else np.zeros((0, 3), np.float32)
    rgb = np.concatenate(cparts) if cparts else None
    return FusedCloud(xyz, rgb, counts)


def pack_unorganized(cloud: FusedCloud):
    """(fields, point_step, data) of an unorganized cloud, ready for a PointCloud2 (height 1)."""
    from .pointcloud import FLOAT32

    n = len(cloud.xyz)
    if cloud.rgb is None:
        fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1)]
        buf = np.ascontiguousarray(cloud.xyz, dtype="<f4")
        step = 12
    else:
        fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1),
                  ("rgb", 12, FLOAT32, 1)]
        buf = np.empty((n, 4), "<f4")
        buf[:, :3] = cloud.xyz
        buf[:, 3] = cloud.rgb
        step = 16
    return fields, step, buf.reshape(-1).view(np.uint8)


@dataclass
class Overlap:
    n_points: int
    overlap_fraction: float
    median_rel_diff: float


def view_consistency(depth_a: np.ndarray, intr_a: Intrinsics, depth_b: np.ndarray,
                     intr_b: Intrinsics, b_from_a: Transform, stride: int = 4) -> Overlap:
    """How well view A's depth agrees with view B's where A's points land in B's image."""
    pts = backproject(depth_a, intr_a, stride).reshape(-1, 3)
    pts = pts[np.isfinite(pts[:, 2])]
    n_a = len(pts)
    if n_a == 0:
        return Overlap(0, 0.0, float("nan"))
    p = b_from_a.apply(pts)
    front = p[:, 2] > 1e-3
    p = p[front]
    # bilinear lookup of B's depth (nearest-pixel rounding alone is a few % at grazing angles)
    uf = intr_b.fx * p[:, 0] / p[:, 2] + intr_b.cx
    vf = intr_b.fy * p[:, 1] / p[:, 2] + intr_b.cy
    inside = (uf >= 0) & (uf <= intr_b.width - 1) & (vf >= 0) & (vf <= intr_b.height - 1)
    uf, vf, z_a = uf[inside], vf[inside], p[inside, 2]
    u0 = np.clip(uf.astype(np.int64), 0, max(intr_b.width - 2, 0))
    v0 = np.clip(vf.astype(np.int64), 0, max(intr_b.height - 2, 0))
    du, dv = uf - u0, vf - v0
    u1, v1 = np.minimum(u0 + 1, intr_b.width - 1), np.minimum(v0 + 1, intr_b.height - 1)
    z_b = ((depth_b[v0, u0] * (1 - du) + depth_b[v0, u1] * du) * (1 - dv)
           + (depth_b[v1, u0] * (1 - du) + depth_b[v1, u1] * du) * dv)
    # a NaN/inf neighbour (invalid or sky) makes the sample invalid
    ok = np.isfinite(z_b) & (z_b > 0)
    if not ok.any():
        return Overlap(0, 0.0, float("nan"))
    rel = np.abs(z_a[ok] - z_b[ok]) / z_b[ok]
    return Overlap(int(ok.sum()), float(ok.sum() / n_a), float(np.median(rel)))
