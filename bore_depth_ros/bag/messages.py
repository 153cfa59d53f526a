"""Build and read the package's message types as ``rosbags`` (Jazzy typestore) objects.

These are the same wire types rclpy uses (the CDR is compatible both ways); building them here
keeps the bag tools independent of a running ROS 2.
"""
from __future__ import annotations

import numpy as np
from rosbags.typesys import Stores, get_typestore

from ..core.camera import Intrinsics
from ..core.pointcloud import PackedCloud
from ..core.transforms import Transform

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
T = TYPESTORE.types

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
CLOCK = "rosgraph_msgs/msg/Clock"

_ENCODINGS = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "mono8": (np.uint8, 1),
              "8UC1": (np.uint8, 1), "32FC1": (np.float32, 1), "16UC1": (np.uint16, 1),
              "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4)}


def ros_time(t_ns: int):
    return T["builtin_interfaces/msg/Time"](sec=int(t_ns // 1_000_000_000),
                                            nanosec=int(t_ns % 1_000_000_000))


def time_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header(t_ns: int, frame_id: str):
    return T["std_msgs/msg/Header"](stamp=ros_time(t_ns), frame_id=frame_id)


def image(t_ns: int, frame_id: str, array: np.ndarray, encoding: str):
    """Image message of an array (rgb8: HxWx3 uint8, 32FC1: HxW float32, 8UC1: HxW uint8...)."""
    dtype, channels = _ENCODINGS[encoding]
    a = np.ascontiguousarray(array, dtype=dtype)
    h, w = a.shape[:2]
    if (a.ndim == 2 and channels != 1) or (a.ndim == 3 and a.shape[2] != channels):
        raise ValueError(f"array of shape {a.shape} does not fit encoding {encoding}")
    step = w * channels * a.dtype.itemsize
    return T[IMAGE](header=header(t_ns, frame_id), height=h, width=w, encoding=encoding,
                    is_bigendian=0, step=step, data=a.reshape(-1).view(np.uint8))


def image_to_array(msg) -> np.ndarray:
    """(H, W) or (H, W, C) array view of an Image message with a supported encoding."""
    if msg.encoding not in _ENCODINGS:
        raise ValueError(f"unsupported encoding {msg.encoding}")
    dtype, channels = _ENCODINGS[msg.encoding]
    itemsize = np.dtype(dtype).itemsize
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    px = rows[:, :msg.width * channels * itemsize].view(np.dtype(dtype).newbyteorder(
        ">" if msg.is_bigendian else "<"))
    return px.reshape(msg.height, msg.width, channels) if channels > 1 else px


def camera_info(t_ns: int, frame_id: str, intr: Intrinsics):
    k = np.array([intr.fx, 0, intr.cx, 0, intr.fy, intr.cy, 0, 0, 1], np.float64)
    p = np.array([intr.fx, 0, intr.cx, 0, 0, intr.fy, intr.cy, 0, 0, 0, 1, 0], np.float64)
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                do_rectify=False)
    return T[CAMERA_INFO](header=header(t_ns, frame_id), height=intr.height, width=intr.width,
                          distortion_model="plumb_bob", d=np.zeros(5), k=k, r=np.eye(3).ravel(),
                          p=p, binning_x=0, binning_y=0, roi=roi)


def camera_info_to_intrinsics(msg) -> Intrinsics:
    return Intrinsics.from_camera_info(list(msg.k), list(msg.p), msg.width, msg.height)


def pointcloud(t_ns: int, frame_id: str, packed: PackedCloud):
    fields = [T["sensor_msgs/msg/PointField"](name=n, offset=o, datatype=d, count=c)
              for n, o, d, c in packed.fields]
    return T[POINTCLOUD2](header=header(t_ns, frame_id), height=packed.height, width=packed.width,
                          fields=fields, is_bigendian=False, point_step=packed.point_step,
                          row_step=packed.row_step, data=np.ascontiguousarray(packed.data).view(np.uint8),
                          is_dense=False)


def pointcloud_fields(msg, names=("x", "y", "z")) -> np.ndarray:
    """(N, len(names)) float32 of the named float32 fields of any PointCloud2 (row-major points)."""
    offsets = {f.name: f.offset for f in msg.fields}
    raw = np.frombuffer(msg.data, np.uint8).reshape(-1, msg.point_step)
    return np.stack([raw[:, offsets[n]:offsets[n] + 4].copy().view("<f4")[:, 0] for n in names], -1)


def transform_stamped(t_ns: int, parent: str, child: str, tf: Transform):
    x, y, z, w = tf.quat()
    tr = T["geometry_msgs/msg/Transform"](
        translation=T["geometry_msgs/msg/Vector3"](x=float(tf.translation[0]),
                                                   y=float(tf.translation[1]),
                                                   z=float(tf.translation[2])),
        rotation=T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))
    return T["geometry_msgs/msg/TransformStamped"](header=header(t_ns, parent), child_frame_id=child,
                                                   transform=tr)


def tf_message(transforms: list):
    """TFMessage of TransformStamped objects (see ``transform_stamped``)."""
    return T[TF_MESSAGE](transforms=list(transforms))


def transform_from_msg(ts) -> Transform:
    """(parent <- child) Transform of a TransformStamped (rosbags or rclpy object)."""
    t, q = ts.transform.translation, ts.transform.rotation
    return Transform.from_quat((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))


def clock(t_ns: int):
    return T[CLOCK](clock=ros_time(t_ns))
