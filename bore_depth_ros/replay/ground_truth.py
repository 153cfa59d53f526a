"""Ground truth for a camera frame: dense depth images, or LiDAR clouds projected through TF
(motion-compensated, occluded points removed), and which one each camera uses; the rig's ring
order from TF.

Shared by ``bore-depth eval`` and training (``train.dataset``), so both compare with, and learn
from, the same LiDAR depth: :func:`lidar_camera_transform` (camera at the image stamp <- LiDAR at
the cloud stamp, through the fixed frame) then :func:`project_cloud` / :func:`sparse_lidar_depth`.
"""

from __future__ import annotations

import numpy as np

from ..bag.reader import TF_STATIC_TOPIC, CameraStreams, add_tf_message, first_message, topics_of_type
from ..core.camera import Intrinsics
from ..core.messages import POINTCLOUD2, TF_MESSAGE
from ..core.pointcloud import transform_points
from ..core.ring import ring_order
from ..core.tf_buffer import TfBuffer
from ..core.transforms import Transform
from .config import LIDAR_DEFAULT_TOPIC, EvalConfig

# eval's defaults, used by training's LiDAR targets too
LIDAR_MAX_DT_S = EvalConfig.lidar_max_dt
OCCLUSION_WINDOW = EvalConfig.lidar_occlusion_window
OCCLUSION_TOLERANCE = EvalConfig.lidar_occlusion_tolerance


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
    t, compensated = lidar_camera_transform(
        tf, cloud_frame, cloud_stamp_ns, camera_frame, stamp_ns, fixed_frame
    )
    return project_cloud(xyz, t, intr), compensated


def lidar_camera_transform(
    tf: TfBuffer,
    cloud_frame: str,
    cloud_stamp_ns: int,
    camera_frame: str,
    stamp_ns: int,
    fixed_frame: str = "odom",
) -> tuple[Transform, bool]:
    """(camera at ``stamp_ns`` <- cloud frame at ``cloud_stamp_ns``, motion compensated?): through
    ``fixed_frame`` when the stamps differ and it is known (see :func:`lidar_gt_depth`).
    Raises TfLookupError when a transform is missing."""
    compensated = cloud_stamp_ns != stamp_ns and tf.has_frame(fixed_frame)
    if compensated:
        t = tf.lookup_full(camera_frame, stamp_ns, cloud_frame, cloud_stamp_ns, fixed_frame)
    else:
        t = tf.lookup_transform(camera_frame, cloud_frame, stamp_ns)
    return t, compensated


def project_cloud(xyz: np.ndarray, camera_from_cloud: Transform, intr: Intrinsics) -> np.ndarray:
    """Sparse (H, W) depth of cloud points ``xyz`` (cloud frame) seen by a camera (no occlusion test)."""
    return project_points(
        transform_points(xyz, camera_from_cloud.rotation, camera_from_cloud.translation), intr
    )


def sparse_lidar_depth(
    xyz: np.ndarray,
    camera_from_cloud: Transform,
    intr: Intrinsics,
    occlusion_window: int = OCCLUSION_WINDOW,
    occlusion_tolerance: float = OCCLUSION_TOLERANCE,
) -> np.ndarray:
    """What eval scores against: the projected cloud without the points hidden from the camera
    (:func:`project_cloud`, then :func:`remove_occluded` with eval's default settings)."""
    return remove_occluded(project_cloud(xyz, camera_from_cloud, intr), occlusion_window, occlusion_tolerance)


def find_lidar_topic(reader, lidar_topic: str = "") -> str | None:
    """The LiDAR PointCloud2 topic: ``lidar_topic`` (ValueError when the bag has no such
    PointCloud2 topic), else /lidar/points, else the bag's only PointCloud2 topic, else None."""
    clouds = topics_of_type(reader, POINTCLOUD2)
    if lidar_topic:
        if lidar_topic not in clouds:
            raise ValueError(
                f"LiDAR topic {lidar_topic} is not a PointCloud2 topic of the bag "
                f"(PointCloud2 topics: {', '.join(clouds) or 'none'})"
            )
        return lidar_topic
    if LIDAR_DEFAULT_TOPIC in clouds:
        return LIDAR_DEFAULT_TOPIC
    return clouds[0] if len(clouds) == 1 else None


def static_extrinsics(
    reader, cams: list[CameraStreams], base_frame: str = "base_link"
) -> list[Transform | None]:
    """Per camera, ``base_frame`` <- its optical frame (the first image's header.frame_id) from
    /tf_static; None where /tf_static does not connect them."""
    tf = TfBuffer(cache_time_ns=None)
    conns = [c for c in reader.connections if c.topic == TF_STATIC_TOPIC and c.msgtype == TF_MESSAGE]
    for conn, _, raw in reader.messages(connections=conns) if conns else ():  # none given reads all
        add_tf_message(tf, reader.deserialize(raw, conn.msgtype), static=True)
    out = []
    for cam in cams:
        msg = first_message(reader, cam.image)
        out.append(None if msg is None else tf.lookup(base_frame, msg.header.frame_id, 0))
    return out


def ring_ordered_by_tf(
    reader, cams: list[CameraStreams], base_frame: str = "base_link"
) -> tuple[list[CameraStreams], list[Transform | None]]:
    """(cameras in ring order, their extrinsics): by the azimuth of each optical axis in
    ``base_frame`` (:func:`core.ring.ring_order`: most forward first, counter-clockwise), so
    eval, training and a node configured in that order agree on any rig; when /tf_static lacks
    a camera, the project's layout by name (``sim.rig.ring_ordered``), else as given."""
    from ..sim.rig import ring_ordered

    extrinsics = static_extrinsics(reader, cams, base_frame)
    if cams and all(t is not None for t in extrinsics):
        order = ring_order(extrinsics)  # type: ignore[arg-type]
    else:
        named = ring_ordered(cams)
        order = [cams.index(c) for c in named]
    return [cams[i] for i in order], [extrinsics[i] for i in order]


def choose_ground_truth(
    config: EvalConfig, cams: list[CameraStreams], reader
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """(camera namespace -> (kind "depth" or "lidar", topic), the PointCloud2 topics used).

    A camera's own ground truth (``--gt-topic``: a depth image, or a PointCloud2 in any TF frame)
    comes first; else, by ``config.gt``, its depth_gt topic or the bag's LiDAR: ``--lidar-topic``,
    else /lidar/points, else the bag's only PointCloud2 topic. ValueError names what is missing
    and what the bag has."""
    clouds = topics_of_type(reader, POINTCLOUD2)
    lidar = find_lidar_topic(reader, config.lidar_topic)
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
