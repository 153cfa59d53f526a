"""Test-side message builders (all encodings, padded rows); the probe node lives in the package."""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from bore_depth_ros.testing.probe import OUTPUTS, DepthProbe  # noqa: F401  (re-exported for tests)


def encode_image(rgb: np.ndarray, encoding: str, pad: int = 0) -> tuple[bytes, int]:
    """Bytes and step of an RGB picture in the given encoding (rows padded by ``pad`` bytes)."""
    if encoding == "rgb8":
        px = rgb
    elif encoding == "bgr8":
        px = rgb[..., ::-1]
    elif encoding == "rgba8":
        px = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    elif encoding == "bgra8":
        px = np.concatenate([rgb[..., ::-1], np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=-1)
    elif encoding == "mono8":
        px = rgb[..., 0]
    else:
        raise ValueError(encoding)
    h = rgb.shape[0]
    rows = np.ascontiguousarray(px).reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return rows.tobytes(), rows.shape[1]


def expected_rgb(rgb: np.ndarray, encoding: str) -> np.ndarray:
    return np.repeat(rgb[..., :1], 3, axis=-1) if encoding == "mono8" else rgb


def camera_info(
    width: int, height: int, frame_id: str, fx: float, fy: float, cx: float, cy: float, stamp=None
) -> CameraInfo:
    info = CameraInfo(
        width=width,
        height=height,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    )
    info.header.frame_id = frame_id
    if stamp is not None:
        info.header.stamp = stamp
    return info


def image_msg(data: bytes, width: int, height: int, step: int, encoding: str, frame_id: str, stamp) -> Image:
    msg = Image(width=width, height=height, step=step, encoding=encoding, is_bigendian=0)
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    msg.data = array.array("B", data)
    return msg
