"""Message <-> array conversions: one implementation used by every node (and the bag tools)."""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from ..core.camera import Intrinsics, fit_intrinsics_to_image, scale_camera_info_arrays
from ..core.errors import CAMERA_INFO_INVALID, InputRejected
from ..core.images import image_to_rgb
from ..core.pointcloud import PackedCloud


def message_class(msgtype: str):
    """The rclpy class of ``pkg/msg/Type`` (for example ``sensor_msgs/msg/Image``)."""
    import importlib

    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def from_cdr(data, msgtype: str):
    """An rclpy message from CDR bytes (e.g. a rosbags-serialized message)."""
    from rclpy.serialization import deserialize_message

    return deserialize_message(bytes(data), message_class(msgtype))


def _byte_array(buffer) -> array.array:
    """One copy of a contiguous buffer into the array.array('B') that message fields keep."""
    out = array.array("B")
    out.frombytes(memoryview(buffer).cast("B"))
    return out


def image_msg_to_rgb(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB view of ``msg.data`` (zero copy); raises InputRejected on bad input."""
    return image_to_rgb(msg.data, msg.width, msg.height, msg.step, msg.encoding, msg.is_bigendian)


def rgb_image_msg(header, rgb: np.ndarray) -> Image:
    """An rgb8 image message of a (H, W, 3) uint8 array."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    msg = Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3)
    msg.data = _byte_array(rgb)
    return msg


def camera_info_msg(header, intr: Intrinsics, distortion_model: str = "plumb_bob") -> CameraInfo:
    """A camera_info for rectified images with the given pinhole intrinsics (no distortion)."""
    k = [intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
    p = [intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return CameraInfo(header=header, width=intr.width, height=intr.height,
                      distortion_model=distortion_model, d=[0.0] * 5, k=k,
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], p=p)


def camera_info_to_intrinsics(info: CameraInfo, width: int, height: int) -> Intrinsics:
    """Intrinsics of ``info`` fitted to an image of ``width`` x ``height`` (raises InputRejected)."""
    if info.width == 0 or info.height == 0:
        raise InputRejected(CAMERA_INFO_INVALID,
                            f"camera_info size is {info.width}x{info.height} (frame '{info.header.frame_id}')")
    intr = Intrinsics.from_camera_info(list(info.k), list(info.p), info.width, info.height)
    return fit_intrinsics_to_image(intr, width, height)


def depth_image_msg(header, depth: np.ndarray) -> Image:
    """REP 118 depth image: 32FC1 metres, little-endian, the given header copied unchanged."""
    return float_image_msg(header, depth)


def float_image_msg(header, values: np.ndarray) -> Image:
    """A 32FC1 image of a (H, W) float32 array."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    h, w = values.shape
    msg = Image(header=header, height=h, width=w, encoding="32FC1", is_bigendian=0, step=w * 4)
    msg.data = _byte_array(values)
    return msg


def scaled_camera_info_msg(header, info: CameraInfo, intr_in: Intrinsics, width: int,
                           height: int) -> CameraInfo:
    """``info`` rescaled to ``width`` x ``height`` with ``header`` (the depth image's header).

    ``intr_in`` is the camera_info fitted to the input image; K and P are rescaled from the input
    image size with the same half-pixel convention as the depth resize.
    """
    k, p = scale_camera_info_arrays(list(info.k), list(info.p), info.width, info.height, width,
                                    height)
    out = CameraInfo(header=header, height=height, width=width,
                     distortion_model=info.distortion_model, d=list(info.d), k=k, r=list(info.r),
                     p=p, binning_x=info.binning_x, binning_y=info.binning_y, roi=info.roi)
    return out


def pointcloud_msg(header, packed: PackedCloud) -> PointCloud2:
    """Organized PointCloud2 from a packed cloud (NaN for invalid points, is_dense false)."""
    fields = [PointField(name=n, offset=o, datatype=t, count=c) for n, o, t, c in packed.fields]
    msg = PointCloud2(header=header, height=packed.height, width=packed.width, fields=fields,
                      is_bigendian=False, point_step=packed.point_step, row_step=packed.row_step,
                      is_dense=False)
    msg.data = _byte_array(packed.data)
    return msg


def pointcloud_msg_to_xyz(msg: PointCloud2) -> np.ndarray:
    """(height, width, 3) float32 x, y, z of a PointCloud2 with float32 x/y/z fields."""
    offsets = {f.name: f.offset for f in msg.fields}
    raw = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, msg.point_step)
    return np.stack([raw[..., offsets[c]:offsets[c] + 4].copy().view(np.float32)[..., 0]
                     for c in "xyz"], axis=-1)


def image_msg_to_array(msg: Image) -> np.ndarray:
    """A 32FC1 image as a (H, W) float32 array (view)."""
    if msg.encoding != "32FC1":
        raise ValueError(f"expected 32FC1, got {msg.encoding}")
    row = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    return row[:, :msg.width * 4].view("<f4")
