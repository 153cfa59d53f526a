"""Ground truth for a camera frame: dense depth images, or LiDAR clouds projected through TF
(motion-compensated, occluded points removed), and which one each camera uses."""

from __future__ import annotations

import numpy as np

from ..bag.reader import CameraStreams, topics_of_type
from ..core.camera import Intrinsics
from ..core.messages import POINTCLOUD2
from ..core.pointcloud import transform_points
from ..core.tf_buffer import TfBuffer
from .config import LIDAR_DEFAULT_TOPIC, EvalConfig


def project_points(points: np.ndarray, intr: Intrinsics, min_z: float = 1e-3) -> np.ndarray:
    """Sparse (H, W) float32 depth of optical-frame points (nearest point per pixel), NaN elsewhere."""
    p = np.asarray(points, np.float64).reshape(-1, 3)
    p = p[np.isfinite(p).all(axis=1) & (p[:, 2] > min_z)]
    z = p[:, 2]
    col = np.rint(intr.fx * p[:, 0] / z + intr.cx)
    row = np.rint(intr.fy * p[:, 1] / z + intr.cy)
    inside = (col >= 0) & (col < intr.width) & (row >= 0) & (row < intr.height)
    flat = row[inside].astype(np.intp) * intr.width + col[inside].astype(np.intp)
    depth = np.full(intr.width * intr.height, np.inf)
    np.minimum.at(depth, flat, z[inside])
    depth[np.isinf(depth)] = np.nan
    return depth.reshape(intr.height, intr.width).astype(np.float32)


def _min_filter(a: np.ndarray, k: int) -> np.ndarray:
    """Minimum over a (2k+1) x (2k+1) window (separable; borders see the part inside the image)."""
    out = a.copy()
    for axis in (0, 1):
        src = out.copy()
        n = a.shape[axis]
        for d in range(1, min(k, n - 1) + 1):
            lo, hi = [slice(None)] * 2, [slice(None)] * 2
            lo[axis], hi[axis] = slice(0, n - d), slice(d, n)
            np.minimum(out[tuple(lo)], src[tuple(hi)], out=out[tuple(lo)])
            np.minimum(out[tuple(hi)], src[tuple(lo)], out=out[tuple(hi)])
    return out


def remove_occluded(depth: np.ndarray, window: int = 4, tolerance: float = 0.1) -> np.ndarray:
    """Sparse depth without points hidden from the camera: NaN where a point is more than
    ``tolerance`` (relative) farther than the nearest point within ``window`` pixels.

    A LiDAR sits elsewhere than the camera, so it sees background the camera cannot see past a
    nearer object; projected, those points land on the object's pixels. The sparse scan usually
    hits the object nearby, which is what this test relies on.
    """
    if window <= 0:
        return depth
    z = np.where(np.isfinite(depth), depth, np.inf)
    out = depth.copy()
    out[z > (1.0 + tolerance) * _min_filter(z, int(window))] = np.nan
    return out


def lidar_gt_depth(
    tf: TfBuffer,
    xyz: np.ndarray,
    cloud_frame: str,
    cloud_stamp_ns: int,
    camera_frame: str,
    stamp_ns: int,
    intr: Intrinsics,
    fixed_frame: str = "odom",
) -> tuple[np.ndarray, bool]:
    """(sparse GT depth image, motion compensated?) of LiDAR points seen by a camera at ``stamp_ns``.

    When the stamps differ and ``fixed_frame`` is known, the points go lidar(t_cloud) -> fixed ->
    camera(t_image), which removes the ego motion between the two stamps (static world).
    Raises TfLookupError when a transform is missing.
    """
    compensated = cloud_stamp_ns != stamp_ns and tf.has_frame(fixed_frame)
    if compensated:
        t = tf.lookup_full(camera_frame, stamp_ns, cloud_frame, cloud_stamp_ns, fixed_frame)
    else:
        t = tf.lookup_transform(camera_frame, cloud_frame, stamp_ns)
    cam_pts = transform_points(xyz, t.rotation, t.translation)
    return project_points(cam_pts, intr), compensated


def choose_ground_truth(
    config: EvalConfig, cams: list[CameraStreams], reader
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """(camera namespace -> (kind "depth" or "lidar", topic), the PointCloud2 topics used).

    A camera's own ground truth (``--gt-topic``: a depth image, or a PointCloud2 in any TF frame)
    comes first; else, by ``config.gt``, its depth_gt topic or the bag's LiDAR: ``--lidar-topic``,
    else /lidar/points, else the bag's only PointCloud2 topic. ValueError names what is missing
    and what the bag has."""
    clouds = topics_of_type(reader, POINTCLOUD2)
    lidar = config.lidar_topic or None
    if lidar is None:
        if LIDAR_DEFAULT_TOPIC in clouds:
            lidar = LIDAR_DEFAULT_TOPIC
        elif len(clouds) == 1:
            lidar = clouds[0]
    elif lidar not in clouds:
        raise ValueError(
            f"LiDAR topic {lidar} is not a PointCloud2 topic of the bag "
            f"(PointCloud2 topics: {', '.join(clouds) or 'none'})"
        )
    sources = {}
    for cam in cams:
        if cam.gt_cloud:
            if config.gt == "depth":
                raise ValueError(
                    f"camera {cam.namespace}: --gt depth, but its ground-truth topic {cam.gt_cloud} "
                    "is a PointCloud2 (use --gt auto or lidar)"
                )
            sources[cam.namespace] = ("lidar", cam.gt_cloud)
        elif config.gt == "depth" or (config.gt == "auto" and cam.depth_gt):
            if not cam.depth_gt:
                raise ValueError(
                    f"camera {cam.namespace} has no ground-truth depth topic (an Image "
                    f"topic under {cam.namespace}/ named *depth_gt*, 32FC1/16UC1, or its "
                    "compressedDepth); give one with --gt-topic or use --gt lidar"
                )
            sources[cam.namespace] = ("depth", cam.depth_gt)
        else:
            if lidar is None:
                why = (
                    "several PointCloud2 topics: "
                    + ", ".join(clouds)
                    + "; choose one with --gt-topic (or --lidar-topic)"
                    if clouds
                    else "no PointCloud2 topic in the bag"
                )
                raise ValueError(
                    f"no ground truth for camera {cam.namespace}: no depth_gt topic and no LiDAR ({why})"
                )
            sources[cam.namespace] = ("lidar", lidar)
    used = sorted({topic for kind, topic in sources.values() if kind == "lidar"})
    return sources, used
