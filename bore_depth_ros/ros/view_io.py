"""Per-camera input handling and per-view outputs, shared by the mono and surround nodes."""
from __future__ import annotations

import collections

from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ..core.errors import IMAGE_TOO_LARGE, INVALID_FRAME_ID, InputRejected
from ..core.pointcloud import backproject, pack_points
from ..core.resize import resize_nearest
from bore_depth_ros_msgs.msg import ViewConfidence
from . import conversions as conv

OUTPUT_QOS = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=5,
                        reliability=QoSReliabilityPolicy.RELIABLE)


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def input_qos(depth: int) -> QoSProfile:
    """Sensor-data QoS (best effort, volatile) with the given queue depth."""
    return QoSProfile(history=qos_profile_sensor_data.history, depth=depth,
                      reliability=qos_profile_sensor_data.reliability,
                      durability=qos_profile_sensor_data.durability)


def validate_image(msg: Image, max_pixels: int):
    """(H, W, 3) RGB view of a usable image message; InputRejected names the first problem."""
    if not msg.header.frame_id.strip():
        raise InputRejected(INVALID_FRAME_ID, "header.frame_id is empty: outputs would have no "
                            "frame for TF or rviz (REP 103)")
    if max_pixels > 0 and int(msg.width) * int(msg.height) > max_pixels:
        raise InputRejected(IMAGE_TOO_LARGE, f"image is {msg.width}x{msg.height} = "
                            f"{int(msg.width) * int(msg.height)} pixels > max_input_pixels "
                            f"{max_pixels}")
    return conv.image_msg_to_rgb(msg)


def geometry_change(old: tuple | None, intr) -> tuple[tuple, str | None]:
    """(geometry key of ``intr``, description of the change from ``old`` or None).

    The key is the size and intrinsics rounded to 1e-3 px; the description names the resolution
    change, else the intrinsics change, for one log line per change."""
    geo = (intr.width, intr.height, round(intr.fx, 3), round(intr.fy, 3), round(intr.cx, 3),
           round(intr.cy, 3))
    if old is None or geo == old:
        return geo, None
    if old[:2] != geo[:2]:
        return geo, f"resolution {old[0]}x{old[1]} -> {geo[0]}x{geo[1]}"
    return geo, f"intrinsics fx,fy,cx,cy {old[2:]} -> {geo[2:]}"


class CameraInfoCache:
    """Recent camera_info messages by stamp; the exact stamp wins, else the latest one."""

    def __init__(self, size: int = 50):
        self._infos: collections.OrderedDict[int, CameraInfo] = collections.OrderedDict()
        self._size = size

    def add(self, info: CameraInfo) -> None:
        self._infos[stamp_ns(info.header)] = info
        self._infos.move_to_end(stamp_ns(info.header))
        while len(self._infos) > self._size:
            self._infos.popitem(last=False)

    def for_stamp(self, t_ns: int) -> CameraInfo | None:
        info = self._infos.get(t_ns)
        if info is None and self._infos:
            info = next(reversed(self._infos.values()))  # intrinsics rarely change: use the latest
        return info

    def __len__(self) -> int:
        return len(self._infos)

    def clear(self) -> None:
        self._infos.clear()


class ViewOutputs:
    """The five per-view outputs under ``prefix`` (``""`` for a mono node, ``"<camera>/"`` for a rig)."""

    def __init__(self, node, prefix: str = ""):
        overrides = QoSOverridingOptions.with_default_policies()
        self.node = node
        self.depth = node.create_publisher(Image, f"{prefix}depth/image", OUTPUT_QOS,
                                           qos_overriding_options=overrides)
        self.depth_info = node.create_publisher(CameraInfo, f"{prefix}depth/camera_info",
                                                OUTPUT_QOS, qos_overriding_options=overrides)
        self.conf = node.create_publisher(Image, f"{prefix}confidence/image", OUTPUT_QOS,
                                          qos_overriding_options=overrides)
        self.points = node.create_publisher(PointCloud2, f"{prefix}points", OUTPUT_QOS,
                                            qos_overriding_options=overrides)
        self.summary = node.create_publisher(ViewConfidence, f"{prefix}view_confidence", OUTPUT_QOS)

    def publish(self, msg: Image, info: CameraInfo, intr_in, intr_out, rgb, res, infer_ms: float,
                model: str, backend: str, decimation: int, with_points: bool,
                with_rgb: bool) -> ViewConfidence:
        """Publish depth, its camera_info, confidence, points and the summary; all with ``msg``'s header."""
        header = msg.header
        out_w, out_h = intr_out.width, intr_out.height
        self.depth.publish(conv.depth_image_msg(header, res.depth))
        self.depth_info.publish(conv.scaled_camera_info_msg(header, info, intr_in, out_w, out_h))
        self.conf.publish(conv.float_image_msg(header, res.confidence))
        if with_points:
            xyz = backproject(res.depth, intr_out, stride=decimation)
            colors = None
            if with_rgb:
                same = (out_w, out_h) == (msg.width, msg.height)
                colors = (rgb if same else resize_nearest(rgb, out_h, out_w))[::decimation, ::decimation]
            self.points.publish(conv.pointcloud_msg(header, pack_points(xyz, colors)))
        summary = view_summary(header, res, infer_ms, model, backend)
        self.summary.publish(summary)
        return summary


def view_summary(header, res, infer_ms: float, model: str, backend: str) -> ViewConfidence:
    return ViewConfidence(
        header=header, camera_frame=header.frame_id, model=model, backend=backend,
        mean_confidence=res.mean_confidence, valid_fraction=res.valid_fraction,
        depth_scale=float(res.scale.scale), scale_source=res.scale.source,
        min_depth=res.min_depth, median_depth=res.median_depth, max_depth=res.max_depth,
        inference_time_ms=float(infer_ms))
