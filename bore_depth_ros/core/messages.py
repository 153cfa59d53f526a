"""The one message layer: decoding and encoding of Image, CameraInfo, PointCloud2 and TF messages.

rclpy messages and ``rosbags`` messages have the same field names, so every decoder here reads
either kind (duck typing; nothing here imports ROS). Encoders go through a
:class:`MessageFactory`, which knows how to construct messages of one kind: ``ros.conversions.RCLPY``
builds rclpy messages for the nodes, ``bag.messages.BAG`` builds rosbags messages for bags. The
nodes, replay, training, the simulator and the tests all use these functions, so a 16UC1 depth
image or a camera_info of another resolution means the same thing everywhere.

Decoders that see live input raise :class:`~bore_depth_ros.core.errors.InputRejected` with a
stable reason (counted in diagnostics and replay reports alike).
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable, Sequence

import numpy as np

from .camera import Intrinsics, fit_intrinsics_to_image, scale_camera_info_arrays
from .compressed import compressed_depth_metres, compressed_rgb, encode_compressed, encode_compressed_depth
from .errors import (
    CAMERA_INFO_INVALID,
    IMAGE_TOO_LARGE,
    INVALID_FRAME_ID,
    INVALID_TRANSFORM,
    UNKNOWN_ENCODING,
    InputRejected,
)
from .images import check_layout, image_to_rgb
from .pointcloud import FLOAT32, PackedCloud
from .transforms import Transform

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
POINT_FIELD = "sensor_msgs/msg/PointField"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
CLOCK = "rosgraph_msgs/msg/Clock"
VIEW_CONFIDENCE = "bore_depth_ros_msgs/msg/ViewConfidence"

# encoding -> (sample dtype, channels): every encoding the package reads or writes as an array
ARRAY_ENCODINGS = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "8UC1": (np.uint8, 1),
    "16UC1": (np.uint16, 1),
    "mono16": (np.uint16, 1),
    "32FC1": (np.float32, 1),
}
DEPTH_ENCODINGS = ("32FC1", "16UC1")  # REP 118 metres; millimetres (0 = invalid)


# ------------------------------------------------------------------------------ time
def stamp_ns(header) -> int:
    """header.stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# ------------------------------------------------------------------------------ decoding
def image_array(msg) -> np.ndarray:
    """(H, W) or (H, W, C) read-only view of an Image in one of ``ARRAY_ENCODINGS``; rows may be
    padded; big-endian data is read in its byte order. Raises InputRejected."""
    layout = ARRAY_ENCODINGS.get(msg.encoding)
    if layout is None:
        raise InputRejected(
            UNKNOWN_ENCODING, f"encoding {msg.encoding!r} is not one of {', '.join(ARRAY_ENCODINGS)}"
        )
    dtype, channels = layout
    itemsize = np.dtype(dtype).itemsize
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    check_layout(msg.data, width, height, step, channels * itemsize, msg.encoding)
    rows = np.frombuffer(msg.data, np.uint8).reshape(height, step)
    order = ">" if msg.is_bigendian and itemsize > 1 else "<"
    px = rows[:, : width * channels * itemsize].view(np.dtype(dtype).newbyteorder(order))
    return px.reshape(height, width, channels) if channels > 1 else px


def image_rgb(msg, max_pixels: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a colour or mono Image (a zero-copy view) or CompressedImage (JPEG
    or PNG after image_transport's conventions, :mod:`.compressed`); raises InputRejected."""
    if is_compressed(msg):
        return compressed_rgb(msg, max_pixels)
    return image_to_rgb(msg.data, msg.width, msg.height, msg.step, msg.encoding, msg.is_bigendian)


def is_compressed(msg) -> bool:
    """True for a sensor_msgs/CompressedImage (it has ``format`` where Image has ``encoding``)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def depth_metres(msg) -> np.ndarray:
    """(H, W) float32 metres (a new array) of a depth Image: 32FC1 metres, or 16UC1
    millimetres with 0 = invalid (NaN), as depth_image_proc reads them; or of a CompressedImage in
    compressed_depth_image_transport's format. Raises InputRejected."""
    if is_compressed(msg):
        return compressed_depth_metres(msg)
    if msg.encoding not in DEPTH_ENCODINGS:
        raise InputRejected(
            UNKNOWN_ENCODING, f"depth must be {' or '.join(DEPTH_ENCODINGS)}, got {msg.encoding!r}"
        )
    a = image_array(msg)
    if msg.encoding == "16UC1":
        d = a.astype(np.float32) * np.float32(1e-3)
        d[a == 0] = np.nan
        return d
    return np.array(a, dtype=np.float32)


def _region(info) -> tuple[int, int, int, int, int, int]:
    """(x_offset, y_offset, width, height) of the camera_info's ROI in calibrated (full
    resolution) pixels, the whole image when the ROI is unset (all zero), and the binning
    (0 and 1 both mean none), as REP 104 defines them. InputRejected for a ROI outside the image."""
    full_w, full_h = int(info.width), int(info.height)
    bx, by = max(int(info.binning_x), 1), max(int(info.binning_y), 1)
    roi = info.roi
    x0, y0, rw, rh = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if (x0, y0, rw, rh) == (0, 0, 0, 0):
        x0, y0, rw, rh = 0, 0, full_w, full_h
    if rw <= 0 or rh <= 0 or x0 + rw > full_w or y0 + rh > full_h:
        raise InputRejected(
            CAMERA_INFO_INVALID,
            f"roi x {x0} y {y0} {rw}x{rh} is not inside the calibrated {full_w}x{full_h} image",
        )
    if rw // bx == 0 or rh // by == 0:
        raise InputRejected(CAMERA_INFO_INVALID, f"binning {bx}x{by} leaves no pixel of the {rw}x{rh} roi")
    return x0, y0, rw, rh, bx, by


def intrinsics(info, width: int | None = None, height: int | None = None) -> Intrinsics:
    """Pinhole intrinsics (P for rectified images, K if P is unset) of the images a camera_info
    describes: its ROI cut from the calibrated image, then binned (REP 104; pixel centres at
    integers, as every resize here); fitted to an image of ``width`` x ``height`` when given
    (rescaled for a pure resolution change, InputRejected when the aspect ratio differs)."""
    if int(info.width) == 0 or int(info.height) == 0:
        raise InputRejected(
            CAMERA_INFO_INVALID,
            f"camera_info size is {info.width}x{info.height} (frame '{info.header.frame_id}')",
        )
    full = Intrinsics.from_camera_info(list(info.k), list(info.p), info.width, info.height)
    x0, y0, rw, rh, bx, by = _region(info)
    intr = full
    if (x0, y0, rw, rh, bx, by) != (0, 0, full.width, full.height, 1, 1):
        intr = Intrinsics(
            full.fx / bx,
            full.fy / by,
            (full.cx - x0 + 0.5) / bx - 0.5,
            (full.cy - y0 + 0.5) / by - 0.5,
            rw // bx,
            rh // by,
        )
    if width is None or height is None:
        return intr
    return fit_intrinsics_to_image(intr, width, height)


def transform(ts) -> Transform:
    """(parent <- child) Transform of a geometry_msgs/TransformStamped; InputRejected
    (invalid_transform) when any component is not finite or the quaternion has no length."""
    t, q = ts.transform.translation, ts.transform.rotation
    trans, quat = (t.x, t.y, t.z), (q.x, q.y, q.z, q.w)
    edge = f"{ts.header.frame_id} -> {ts.child_frame_id}"
    if not all(math.isfinite(v) for v in (*trans, *quat)):
        raise InputRejected(INVALID_TRANSFORM, f"{edge}: non-finite translation {trans} or rotation {quat}")
    try:
        return Transform.from_quat(trans, quat)
    except ValueError as e:
        raise InputRejected(INVALID_TRANSFORM, f"{edge}: {e}") from None


def cloud_fields(msg, names: Sequence[str] = ("x", "y", "z")) -> np.ndarray:
    """(height * width, len(names)) float32 of named float32 fields of a PointCloud2 (points in
    row-major order, rows may be padded). Raises ValueError for a missing or non-float32 field."""
    fields = {f.name: f for f in msg.fields}
    for n in names:
        f = fields.get(n)
        if f is None or f.datatype != FLOAT32:
            raise ValueError(
                f"PointCloud2 needs a float32 field '{n}' (has "
                f"{ {k: v.datatype for k, v in fields.items()} })"
            )
    h, w, ps = int(msg.height), int(msg.width), int(msg.point_step)
    rows = np.frombuffer(msg.data, np.uint8).reshape(h, int(msg.row_step))[:, : w * ps]
    pts = rows.reshape(h * w, ps)
    dt = np.dtype(">f4" if msg.is_bigendian else "<f4")
    return np.stack(
        [pts[:, fields[n].offset : fields[n].offset + 4].copy().view(dt)[:, 0] for n in names], axis=-1
    ).astype(np.float32, copy=False)


def validate_image(msg, max_pixels: int = 0) -> np.ndarray:
    """The nodes' input check, used by replay too: (H, W, 3) RGB view of a usable image message;
    InputRejected names the first problem (frame id, size limit, encoding, layout)."""
    if not msg.header.frame_id.strip():
        raise InputRejected(
            INVALID_FRAME_ID, "header.frame_id is empty: outputs would have no frame for TF or rviz (REP 103)"
        )
    if is_compressed(msg):
        return compressed_rgb(msg, max_pixels)  # the size limit is checked from its header
    if max_pixels > 0 and int(msg.width) * int(msg.height) > max_pixels:
        raise InputRejected(
            IMAGE_TOO_LARGE,
            f"image is {msg.width}x{msg.height} = "
            f"{int(msg.width) * int(msg.height)} pixels > max_input_pixels "
            f"{max_pixels}",
        )
    return image_rgb(msg)


# ------------------------------------------------------------------------------ encoding
def byte_array(buffer) -> array.array:
    """One copy of a contiguous buffer into the array.array('B') rclpy keeps for uint8[] fields
    (assigning a numpy array there is ~60x slower)."""
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(buffer)).cast("B"))
    return out


class MessageFactory:
    """Builds messages of one kind (rclpy or rosbags) from arrays; every field is given, since
    rosbags classes have no defaults. ``resolve`` maps ``pkg/msg/Type`` to a class, ``uint8`` and
    ``float64`` turn arrays into the field values that kind expects."""

    def __init__(self, resolve: Callable[[str], type], uint8: Callable, float64: Callable):
        self.resolve = resolve
        self.uint8 = uint8
        self.float64 = float64

    def new(self, msgtype: str, **fields):
        return self.resolve(msgtype)(**fields)

    def time(self, t_ns: int):
        return self.new(
            "builtin_interfaces/msg/Time", sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000)
        )

    def header(self, t_ns: int, frame_id: str):
        return self.new("std_msgs/msg/Header", stamp=self.time(t_ns), frame_id=frame_id)

    def image(self, header, values: np.ndarray, encoding: str):
        """Image of an array (rgb8: (H, W, 3) uint8; 32FC1: (H, W) float32; 16UC1: uint16...),
        little-endian, unpadded rows, ``header`` used as given."""
        dtype, channels = ARRAY_ENCODINGS[encoding]
        a = np.ascontiguousarray(values, dtype=dtype)
        if (
            (a.ndim == 2 and channels != 1)
            or (a.ndim == 3 and a.shape[2] != channels)
            or a.ndim not in (2, 3)
        ):
            raise ValueError(f"array of shape {a.shape} does not fit encoding {encoding}")
        h, w = a.shape[:2]
        return self.new(
            IMAGE,
            header=header,
            height=h,
            width=w,
            encoding=encoding,
            is_bigendian=0,
            step=w * channels * a.dtype.itemsize,
            data=self.uint8(a.reshape(-1).view(np.uint8)),
        )

    def compressed_image(self, header, rgb: np.ndarray, codec: str = "jpeg", quality: int = 90):
        """CompressedImage of an (H, W, 3) uint8 RGB image as image_transport's compressed plugin
        writes it (format ``"rgb8; jpeg compressed bgr8"`` or the png one)."""
        data, fmt = encode_compressed(rgb, codec, quality)
        return self.new(
            COMPRESSED_IMAGE, header=header, format=fmt, data=self.uint8(np.frombuffer(data, np.uint8))
        )

    def compressed_depth(self, header, depth: np.ndarray, encoding: str = "16UC1"):
        """CompressedImage of metric depth in compressed_depth_image_transport's PNG format."""
        data, fmt = encode_compressed_depth(depth, encoding)
        return self.new(
            COMPRESSED_IMAGE, header=header, format=fmt, data=self.uint8(np.frombuffer(data, np.uint8))
        )

    def camera_info(self, header, intr: Intrinsics, distortion_model: str = "plumb_bob"):
        """camera_info of rectified images with pinhole intrinsics ``intr`` (no distortion)."""
        k = [intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
        p = [intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        eye = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
        return self._camera_info(header, intr.width, intr.height, distortion_model, [0.0] * 5, k, eye, p)

    def scaled_camera_info(self, header, info, width: int, height: int):
        """The camera_info of a ``width`` x ``height`` image made from the images ``info``
        describes (its ROI and binning applied, then resized with the half-pixel convention of
        the depth resize), with ``header`` (the depth image's). It describes that image exactly:
        K and P for it, no binning, no ROI, so depth_image_proc applies nothing twice."""
        x0, y0, rw, rh, bx, by = _region(info)
        k, p = [float(v) for v in info.k], [float(v) for v in info.p]
        k[2], k[5] = k[2] - x0, k[5] - y0
        if any(p):
            p[2], p[6] = p[2] - x0, p[6] - y0
        k, p = scale_camera_info_arrays(k, p, bx * (rw // bx), by * (rh // by), width, height)
        return self._camera_info(
            header, width, height, info.distortion_model, list(info.d), k, list(info.r), p
        )

    def _camera_info(self, header, width, height, distortion_model, d, k, r, p):
        """A camera_info for images of exactly ``width`` x ``height``: no binning, no ROI."""
        roi = self.new(
            "sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        )
        return self.new(
            CAMERA_INFO,
            header=header,
            height=height,
            width=width,
            distortion_model=distortion_model,
            d=self.float64(d),
            k=self.float64(k),
            r=self.float64(r),
            p=self.float64(p),
            binning_x=0,
            binning_y=0,
            roi=roi,
        )

    def pointcloud(self, header, packed: PackedCloud):
        """PointCloud2 of a packed cloud (organized with NaN for invalid points, or dense)."""
        fields = [
            self.new(POINT_FIELD, name=n, offset=o, datatype=t, count=c) for n, o, t, c in packed.fields
        ]
        return self.new(
            POINTCLOUD2,
            header=header,
            height=packed.height,
            width=packed.width,
            fields=fields,
            is_bigendian=False,
            point_step=packed.point_step,
            row_step=packed.row_step,
            data=self.uint8(packed.data),
            is_dense=bool(packed.is_dense),
        )

    def transform_stamped(self, header, child_frame_id: str, tf: Transform):
        """TransformStamped (header.frame_id = parent) of a (parent <- child) Transform."""
        x, y, z, w = (float(v) for v in tf.quat())
        tx, ty, tz = (float(v) for v in tf.translation)
        vec = self.new("geometry_msgs/msg/Vector3", x=tx, y=ty, z=tz)
        quat = self.new("geometry_msgs/msg/Quaternion", x=x, y=y, z=z, w=w)
        return self.new(
            "geometry_msgs/msg/TransformStamped",
            header=header,
            child_frame_id=child_frame_id,
            transform=self.new("geometry_msgs/msg/Transform", translation=vec, rotation=quat),
        )

    def tf_message(self, transforms):
        return self.new(TF_MESSAGE, transforms=list(transforms))

    def clock(self, t_ns: int):
        return self.new(CLOCK, clock=self.time(t_ns))

    def view_confidence(self, header, res, infer_ms: float, model: str, backend: str):
        """The per-view summary (bore_depth_ros ViewConfidence) of a ViewResult ``res``."""
        return self.new(
            VIEW_CONFIDENCE,
            header=header,
            camera_frame=header.frame_id,
            model=model,
            backend=backend,
            mean_confidence=float(res.mean_confidence),
            valid_fraction=float(res.valid_fraction),
            depth_scale=float(res.scale.scale),
            scale_source=res.scale.source,
            min_depth=float(res.min_depth),
            median_depth=float(res.median_depth),
            max_depth=float(res.max_depth),
            inference_time_ms=float(infer_ms),
        )
