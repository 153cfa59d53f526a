"""Camera rigs and the topic/frame layout of the project's recordings (ROS-free).

Layout of a recording (also what ``bore-depth eval`` auto-detects):
  /cameras/<name>/image              sensor_msgs/Image rgb8
  /cameras/<name>/camera_info        sensor_msgs/CameraInfo (rectified pinhole, no distortion)
  /cameras/<name>/depth_gt/image     sensor_msgs/Image 32FC1 metres along optical z (+inf: sky)
  /cameras/<name>/semantic/image     sensor_msgs/Image 8UC1 class ids (SEMANTIC_CLASSES)
  /lidar/points                      sensor_msgs/PointCloud2 x, y, z, intensity in lidar_link
  /tf_static                         base_link -> camera_<name>_optical_frame, base_link -> lidar_link
  /tf                                odom -> base_link (ego motion)
  /clock                             rosgraph_msgs/Clock
With the camera nodes in namespace /cameras/<name>, their relative topics image and camera_info
resolve to the recording's topics without remapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.camera import Intrinsics
from ..core.transforms import OPTICAL_IN_BODY, Transform, rotation_y, rotation_z

BASE_FRAME = "base_link"
ODOM_FRAME = "odom"
LIDAR_FRAME = "lidar_link"
LIDAR_TOPIC = "/lidar/points"
SEMANTIC_CLASSES = {0: "sky", 1: "ground", 2: "building", 3: "vehicle", 4: "pole", 5: "sphere"}


@dataclass(frozen=True)
class CameraSpec:
    name: str
    yaw_deg: float  # about base_link z, 0 = forward, positive = to the left
    hfov_deg: float = 70.0
    pitch_deg: float = 0.0  # positive looks down
    position: tuple[float, float, float] = (0.0, 0.0, 1.5)  # in base_link

    @property
    def optical_frame(self) -> str:
        return optical_frame(self.name)

    def intrinsics(self, width: int, height: int) -> Intrinsics:
        """Square pixels, principal point at the image centre (pixel-centre convention)."""
        f = (width / 2.0) / np.tan(np.deg2rad(self.hfov_deg) / 2.0)
        return Intrinsics(
            fx=float(f), fy=float(f), cx=(width - 1) / 2.0, cy=(height - 1) / 2.0, width=width, height=height
        )

    def base_from_optical(self) -> Transform:
        """Pose of the optical frame in base_link (maps optical points into base_link)."""
        r = rotation_z(np.deg2rad(self.yaw_deg)) @ rotation_y(np.deg2rad(self.pitch_deg)) @ OPTICAL_IN_BODY
        return Transform(r, np.asarray(self.position, np.float64))


def optical_frame(name: str) -> str:
    return f"camera_{name}_optical_frame"


def camera_topics(name: str) -> dict[str, str]:
    base = f"/cameras/{name}"
    return {
        "image": f"{base}/image",
        "camera_info": f"{base}/camera_info",
        "depth_gt": f"{base}/depth_gt/image",
        "semantic": f"{base}/semantic/image",
    }


# nuScenes / DDAD style six-camera ring (ring order front, front_left, back_left, back, back_right,
# front_right); neighbouring fields of view overlap by 15 to 20 degrees.
SURROUND_RIG: tuple[CameraSpec, ...] = (
    CameraSpec("front", 0.0, 70.0, position=(1.6, 0.0, 1.55)),
    CameraSpec("front_left", 55.0, 70.0, position=(1.5, 0.5, 1.55)),
    CameraSpec("front_right", -55.0, 70.0, position=(1.5, -0.5, 1.55)),
    CameraSpec("back_left", 110.0, 70.0, position=(1.0, 0.5, 1.55)),
    CameraSpec("back_right", -110.0, 70.0, position=(1.0, -0.5, 1.55)),
    CameraSpec("back", 180.0, 110.0, position=(0.0, 0.0, 1.55)),
)
RING_ORDER = ("front", "front_left", "back_left", "back", "back_right", "front_right")
MONO_RIG: tuple[CameraSpec, ...] = (CameraSpec("front", 0.0, 70.0, pitch_deg=5.0, position=(1.6, 0.0, 1.55)),)
LIDAR_POSITION = (1.0, 0.0, 1.9)


def rig_by_name(name: str) -> tuple[CameraSpec, ...]:
    rigs = {"surround": SURROUND_RIG, "mono": MONO_RIG}
    if name not in rigs:
        raise ValueError(f"unknown rig '{name}', known: {', '.join(rigs)}")
    return rigs[name]


def ring_ordered(cams: list) -> list:
    """Camera streams (objects with a ``namespace``, e.g. bag.reader.CameraStreams) in the rig's
    ring order when their names are this layout's; otherwise as given.

    Only the fallback when /tf_static lacks a camera: the ring order of any rig comes from where
    its cameras look (``core.ring.ring_order``, read from a bag by
    ``replay.ground_truth.ring_ordered_by_tf``), which gives this order for this layout."""
    by_name = {c.namespace.rstrip("/").split("/")[-1]: c for c in cams}
    if set(by_name) == set(RING_ORDER):
        return [by_name[n] for n in RING_ORDER]
    return cams
