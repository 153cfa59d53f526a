"""Temporal stability of predicted depth: how much it changes between consecutive frames of a
static scene (ROS-free, numpy only).

Two measures, per camera:

* ``tf_warp`` (when the camera's pose in a fixed frame is known at both stamps, from TF): the
  previous prediction is back-projected with its intrinsics, moved by the ego motion
  ``T_cur<-prev`` and projected into the current image (z-buffered: the nearest point per pixel);
  per pair, the median over pixels valid in both of ``|z_warped - d_cur| / d_cur``, ``d_cur``
  sampled bilinearly at the exact projection. With dense ground truth the pixels whose ground
  truth does not warp onto itself (moving objects, disocclusions, the sky) are left out; with
  sparse (LiDAR) ground truth they cannot be told apart and add to the figure.
* ``scale_change`` (always; the figure of a camera without TF ego motion): the relative change
  ``|s_t / s_{t-1} - 1|`` of the per-frame median-scaling factor ``s = median(gt) /
  median(prediction)``.

A perfectly stable prediction of a static world scores 0 in both.
"""

from __future__ import annotations

import collections
import math

import numpy as np

from ..core.camera import Intrinsics
from ..core.pointcloud import backproject, transform_points
from ..core.transforms import Transform

STATIC_TOLERANCE = 0.05  # ground truth warped onto itself within this relative error = static
MIN_PIXELS = 20  # fewer compared pixels: the pair is not scored
TF_WARP = "tf_warp"
SCALE_CHANGE = "scale_change"

# reasons a pair of consecutive frames is not scored
NO_POSE = "no_pose"  # the camera's pose in the fixed frame is unknown at one of the stamps
TOO_FEW_PIXELS = "too_few_pixels"
NO_SCALE = "no_median_scale"  # no valid ground truth in one of the frames


def _in_range(z: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(z) & (z > min_depth) & (z < max_depth)


def _warp_points(
    depth_prev: np.ndarray,
    intr_prev: Intrinsics,
    cur_from_prev: Transform,
    intr_cur: Intrinsics,
    keep: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(source pixel index, u, v, z) of the previous frame's points ``keep`` (flat bool over its
    pixels) in the current camera, for those in front of it whose projection rounds to a pixel."""
    pts = backproject(depth_prev, intr_prev).reshape(-1, 3)
    src = np.flatnonzero(keep)
    q = transform_points(pts[src], cur_from_prev.rotation, cur_from_prev.translation)
    z = q[:, 2]
    front = z > 1e-6
    src, q, z = src[front], q[front], z[front]
    u = intr_cur.fx * q[:, 0] / z + intr_cur.cx
    v = intr_cur.fy * q[:, 1] / z + intr_cur.cy
    inside = (u > -0.5) & (u < intr_cur.width - 0.5) & (v > -0.5) & (v < intr_cur.height - 0.5)
    return src[inside], u[inside], v[inside], z[inside]


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``img`` at sub-pixel (u, v) (pixel centres at integers); NaN where a neighbour is invalid."""
    h, w = img.shape
    u0 = np.clip(np.floor(u).astype(np.intp), 0, max(w - 2, 0))
    v0 = np.clip(np.floor(v).astype(np.intp), 0, max(h - 2, 0))
    u1 = np.minimum(u0 + 1, w - 1)
    v1 = np.minimum(v0 + 1, h - 1)
    a = np.clip(u - u0, 0.0, 1.0)
    b = np.clip(v - v0, 0.0, 1.0)
    f = img.astype(np.float64, copy=False)
    top = f[v0, u0] * (1 - a) + f[v0, u1] * a
    bottom = f[v1, u0] * (1 - a) + f[v1, u1] * a
    return top * (1 - b) + bottom * b


def _nearest_per_pixel(pixel: np.ndarray, z: np.ndarray, n_pixels: int) -> np.ndarray:
    """Indices of the nearest points (smallest z; ties all kept) among those landing on each pixel."""
    zbuf = np.full(n_pixels, np.inf)
    np.minimum.at(zbuf, pixel, z)
    return np.flatnonzero(z <= zbuf[pixel])


def warp_change(
    depth_prev: np.ndarray,
    depth_cur: np.ndarray,
    intr_prev: Intrinsics,
    intr_cur: Intrinsics,
    cur_from_prev: Transform,
    *,
    min_depth: float = 0.1,
    max_depth: float = 80.0,
    mask_prev: np.ndarray | None = None,
    zbuffer: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(previous-frame pixel index, ``|z_warped - d_cur| / d_cur``) of every previous point that
    lands in the current image where the current depth is valid.

    Depths in metres, NaN/inf invalid; only depths in (min_depth, max_depth) count. ``mask_prev``
    (bool, the previous image's shape) limits the source pixels. ``zbuffer``: keep only the
    nearest point per current pixel (what the current camera sees)."""
    keep = _in_range(depth_prev, min_depth, max_depth).reshape(-1)
    if mask_prev is not None:
        keep &= np.asarray(mask_prev, bool).reshape(-1)
    src, u, v, z = _warp_points(depth_prev, intr_prev, cur_from_prev, intr_cur, keep)
    if zbuffer:
        pixel = np.rint(v).astype(np.intp) * intr_cur.width + np.rint(u).astype(np.intp)
        sel = _nearest_per_pixel(pixel, z, intr_cur.width * intr_cur.height)
        src, u, v, z = src[sel], u[sel], v[sel], z[sel]
    cur = np.where(_in_range(depth_cur, min_depth, max_depth), depth_cur, np.nan)
    d = _bilinear(cur, u, v)
    ok = np.isfinite(d)
    return src[ok], np.abs(z[ok] - d[ok]) / d[ok]


def static_mask(
    gt_prev: np.ndarray,
    gt_cur: np.ndarray,
    intr_prev: Intrinsics,
    intr_cur: Intrinsics,
    cur_from_prev: Transform,
    *,
    tolerance: float = STATIC_TOLERANCE,
    min_depth: float = 0.1,
    max_depth: float = 80.0,
) -> np.ndarray:
    """Pixels of the previous frame (bool, its shape) whose dense ground truth, moved by the ego
    motion, lands on the current ground truth within ``tolerance``: static surfaces seen in both
    frames. Moving objects, surfaces hidden in the current frame, the sky and pixels leaving the
    image are False."""
    src, rel = warp_change(
        gt_prev,
        gt_cur,
        intr_prev,
        intr_cur,
        cur_from_prev,
        min_depth=min_depth,
        max_depth=max_depth,
        zbuffer=False,  # a hidden point disagrees with the current ground truth anyway
    )
    mask = np.zeros(gt_prev.size, bool)
    mask[src[rel < tolerance]] = True
    return mask.reshape(gt_prev.shape)


def frame_change(
    depth_prev: np.ndarray,
    depth_cur: np.ndarray,
    intr_prev: Intrinsics,
    intr_cur: Intrinsics,
    cur_from_prev: Transform,
    *,
    min_depth: float = 0.1,
    max_depth: float = 80.0,
    mask_prev: np.ndarray | None = None,
) -> tuple[float, int]:
    """(median ``|z_warped - d_cur| / d_cur``, pixels compared) of one pair of frames; NaN when
    no pixel is valid in both."""
    _, rel = warp_change(
        depth_prev,
        depth_cur,
        intr_prev,
        intr_cur,
        cur_from_prev,
        min_depth=min_depth,
        max_depth=max_depth,
        mask_prev=mask_prev,
    )
    return (float(np.median(rel)) if rel.size else math.nan), int(rel.size)


def scale_change(scale_prev: float, scale_cur: float) -> float:
    """``|s_cur / s_prev - 1|`` of two median-scaling factors; NaN unless both are finite and > 0."""
    if not (math.isfinite(scale_prev) and math.isfinite(scale_cur) and scale_prev > 0 and scale_cur > 0):
        return math.nan
    return abs(scale_cur / scale_prev - 1.0)


def _stats(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    if not v.size:
        return {"median": math.nan, "p90": math.nan, "mean": math.nan, "max": math.nan, "pairs": 0}
    return {
        "median": float(np.median(v)),
        "p90": float(np.percentile(v, 90)),
        "mean": float(v.mean()),
        "max": float(v.max()),
        "pairs": int(v.size),
    }


class StabilityTracker:
    """The temporal stability of one camera over a replay: feed every evaluated frame in stamp
    order with :meth:`add`; :meth:`summary` gives the figures and the per-pair series."""

    def __init__(
        self,
        min_depth: float = 0.1,
        max_depth: float = 80.0,
        tolerance: float = STATIC_TOLERANCE,
        fixed_frame: str = "odom",
    ):
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.tolerance = float(tolerance)
        self.fixed_frame = fixed_frame
        self._prev: tuple | None = None
        self.warp: list[tuple[float, float, int]] = []  # (stamp s, change, pixels)
        self.scale: list[tuple[float, float]] = []  # (stamp s, change)
        self.skipped: collections.Counter[str] = collections.Counter()
        self.masked_pairs = 0  # tf_warp pairs with moving/occluded pixels removed by ground truth
        self.poses = 0  # frames whose camera pose in the fixed frame was known

    def reset(self) -> None:
        """Forget the previous frame (time jumped back: the next frame starts a new run)."""
        self._prev = None

    def add(
        self,
        stamp_ns: int,
        depth: np.ndarray,
        intr: Intrinsics,
        pose: Transform | None,
        scale: float = math.nan,
        gt: np.ndarray | None = None,
        dense_gt: bool = False,
    ) -> None:
        """One frame: published ``depth`` (metres, NaN invalid) at ``intr``; ``pose`` the camera's
        pose in the fixed frame (fixed <- optical) or None when TF does not know it; ``scale``
        the frame's median-scaling factor; ``gt`` its ground truth at the same size (``dense_gt``:
        a depth image, used to leave moving objects out)."""
        self.poses += pose is not None
        prev, self._prev = self._prev, (int(stamp_ns), depth, intr, pose, float(scale), gt, dense_gt)
        if prev is None or stamp_ns <= prev[0]:  # the first frame, or a restart: no pair
            return
        _, d_prev, i_prev, p_prev, s_prev, g_prev, dense_prev = prev
        t_s = stamp_ns * 1e-9
        change = scale_change(s_prev, scale)
        if math.isfinite(change):
            self.scale.append((t_s, change))
        else:
            self.skipped[f"{SCALE_CHANGE}:{NO_SCALE}"] += 1
        if pose is None or p_prev is None:
            self.skipped[f"{TF_WARP}:{NO_POSE}"] += 1
            return
        cur_from_prev = pose.inverse() @ p_prev
        mask = None
        if dense_gt and dense_prev and gt is not None and g_prev is not None:
            mask = static_mask(
                g_prev,
                gt,
                i_prev,
                intr,
                cur_from_prev,
                tolerance=self.tolerance,
                min_depth=self.min_depth,
                max_depth=self.max_depth,
            )
        value, n = frame_change(
            d_prev,
            depth,
            i_prev,
            intr,
            cur_from_prev,
            min_depth=self.min_depth,
            max_depth=self.max_depth,
            mask_prev=mask,
        )
        if n < MIN_PIXELS:
            self.skipped[f"{TF_WARP}:{TOO_FEW_PIXELS}"] += 1
            return
        self.masked_pairs += mask is not None
        self.warp.append((t_s, value, n))

    def summary(self) -> dict:
        """``method`` (tf_warp when any pair had TF ego motion, else scale_change), its median,
        p90, mean and max over pairs, the number of pairs, the series ``t`` (image stamps,
        seconds) and ``value``, pairs not scored by reason, and the scale-change figures."""
        warp = bool(self.warp)
        series = [(t, v) for t, v, _ in self.warp] if warp else self.scale
        out = {
            "method": TF_WARP if warp else SCALE_CHANGE,
            **_stats([v for _, v in series]),
            "fixed_frame": self.fixed_frame,
            "moving_excluded": "ground_truth" if warp and self.masked_pairs == len(self.warp) else "none",
            "pixels_per_pair": float(np.mean([n for *_, n in self.warp])) if warp else math.nan,
            "skipped": dict(sorted(self.skipped.items())),
            "t": [t for t, _ in series],
            "value": [v for _, v in series],
            "scale_change": _stats([v for _, v in self.scale]),
        }
        if warp and 0 < self.masked_pairs < len(self.warp):
            out["moving_excluded"] = "partly"
        return out
