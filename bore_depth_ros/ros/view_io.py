"""Per-camera input handling and per-view outputs, shared by the mono and surround nodes."""

from __future__ import annotations

from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from ..core.frame import view_outputs
from ..core.messages import VIEW_CONFIDENCE
from .conversions import RCLPY, message_class

OUTPUT_QOS = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST, depth=5, reliability=QoSReliabilityPolicy.RELIABLE
)


def input_qos(depth: int) -> QoSProfile:
    """Sensor-data QoS (best effort, volatile) with the given queue depth."""
    return QoSProfile(
        history=qos_profile_sensor_data.history,
        depth=depth,
        reliability=qos_profile_sensor_data.reliability,
        durability=qos_profile_sensor_data.durability,
    )


def image_input(node, relative: str) -> tuple[type, str]:
    """(message type, absolute topic) of an image input, named as image_transport names it: the
    base topic is resolved first (so ``-r image:=/cam/image_raw`` applies), and with the node's
    ``image_transport`` parameter at ``compressed`` the input is ``<base>/compressed``
    (sensor_msgs/CompressedImage)."""
    base = node.resolve_topic_name(relative)
    if node.get_parameter("image_transport").value == "compressed":
        return CompressedImage, f"{base}/compressed"
    return Image, base


def geometry_change(old: tuple | None, intr) -> tuple[tuple, str | None]:
    """(geometry key of ``intr``, description of the change from ``old`` or None).

    The key is the size and intrinsics rounded to 1e-3 px; the description names the resolution
    change, else the intrinsics change, for one log line per change."""
    geo = (
        intr.width,
        intr.height,
        round(intr.fx, 3),
        round(intr.fy, 3),
        round(intr.cx, 3),
        round(intr.cy, 3),
    )
    if old is None or geo == old:
        return geo, None
    if old[:2] != geo[:2]:
        return geo, f"resolution {old[0]}x{old[1]} -> {geo[0]}x{geo[1]}"
    return geo, f"intrinsics fx,fy,cx,cy {old[2:]} -> {geo[2:]}"


class ViewOutputs:
    """The five per-view outputs under ``prefix`` (``""`` for a mono node, ``"<camera>/"`` for a rig)."""

    def __init__(self, node, prefix: str = ""):
        overrides = QoSOverridingOptions.with_default_policies()
        types = {
            "depth/image": Image,
            "depth/camera_info": CameraInfo,
            "confidence/image": Image,
            "points": PointCloud2,
            "view_confidence": message_class(VIEW_CONFIDENCE),
        }
        self.publishers = {
            suffix: node.create_publisher(
                t,
                f"{prefix}{suffix}",
                OUTPUT_QOS,
                qos_overriding_options=None if suffix == "view_confidence" else overrides,
            )
            for suffix, t in types.items()
        }

    def publish(
        self,
        header,
        info,
        intr_out,
        rgb,
        res,
        infer_ms: float,
        model: str,
        backend: str,
        decimation: int,
        with_points: bool,
        with_rgb: bool,
    ):
        """Publish the view's messages (:func:`~bore_depth_ros.core.frame.view_outputs`), all
        with the input image's ``header``; return the ViewConfidence summary."""
        msgs = view_outputs(
            RCLPY,
            header,
            info,
            intr_out,
            rgb,
            res,
            infer_ms,
            model,
            backend,
            decimation,
            with_points,
            with_rgb,
        )
        for suffix, msg in msgs:
            self.publishers[suffix].publish(msg)
        return msgs[-1][1]
