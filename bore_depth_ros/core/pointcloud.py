"""Back-projection of depth maps to optical-frame points and PointCloud2-ready packing (ROS-free)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .camera import Intrinsics

# sensor_msgs/PointField datatype code
FLOAT32 = 7

_XYZ_FIELDS = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1)]
_RGB_FIELD = ("rgb", 12, FLOAT32, 1)
_LE_F32 = np.dtype("<f4")


@lru_cache(maxsize=32)
def ray_tables(intr: Intrinsics, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """((u - cx) / fx for u = 0, stride, ...; (v - cy) / fy for v = 0, stride, ...) as float32, read-only."""
    u = np.arange(0, intr.width, stride, dtype=np.float64)
    v = np.arange(0, intr.height, stride, dtype=np.float64)
    rx = ((u - intr.cx) / intr.fx).astype(np.float32)
    ry = ((v - intr.cy) / intr.fy).astype(np.float32)
    rx.flags.writeable = False
    ry.flags.writeable = False
    return rx, ry


def backproject(
    depth: np.ndarray, intr: Intrinsics, stride: int = 1, out: np.ndarray | None = None
) -> np.ndarray:
    """Points (ceil(H/stride), ceil(W/stride), 3) float32 in the optical frame (x right, y down, z forward).

    Pixel (v, u) = (i * stride, j * stride) maps to z = depth[v, u], x = (u - cx) / fx * z,
    y = (v - cy) / fy * z; non-finite depth gives NaN in all three. ``intr`` must match ``depth``'s size.
    ``out``, if given, is filled and returned.
    """
    z = _sampled(depth, intr, stride)
    h, w = z.shape
    if out is None:
        out = np.empty((h, w, 3), dtype=np.float32)
    elif out.shape != (h, w, 3) or out.dtype.kind != "f" or out.dtype.itemsize != 4:
        raise ValueError(f"out must be float32 of shape {(h, w, 3)}, got {out.dtype} {out.shape}")
    return _backproject_into(z, intr, int(stride), out)


def _sampled(depth: np.ndarray, intr: Intrinsics, stride: int) -> np.ndarray:
    """``depth`` at every ``stride``-th pixel (a view), after checking stride and size."""
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if depth.ndim != 2 or depth.shape != (intr.height, intr.width):
        raise ValueError(
            f"depth of shape {depth.shape} does not match intrinsics of size {intr.width}x{intr.height}"
        )
    return depth[::stride, ::stride]


def _backproject_into(z: np.ndarray, intr: Intrinsics, stride: int, out: np.ndarray) -> np.ndarray:
    """Write the points of the sampled depth ``z`` into ``out`` (h, w, 3) float32; return it."""
    rx, ry = ray_tables(intr, stride)
    zo = out[..., 2]
    zo[...] = z
    # inf * ray could give +-inf or NaN (ray 0); make every invalid point NaN in all coordinates
    bad = ~np.isfinite(zo)
    if bad.any():
        zo[bad] = np.nan
    np.multiply(zo, rx, out=out[..., 0])
    np.multiply(zo, ry[:, None], out=out[..., 1])
    return out


def rgb_to_float(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (h, w) float32 whose bits are 0x00RRGGBB (the PCL / rviz "rgb" field)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (h, w, 3) uint8, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    packed = np.zeros((h, w, 4), dtype=np.uint8)
    packed[..., :3] = rgb[..., ::-1]  # little-endian byte order: B, G, R, 0
    return packed.view(_LE_F32)[..., 0].astype(np.float32, copy=False)


@dataclass
class PackedCloud:
    """Fields and byte payload of a sensor_msgs/PointCloud2 (little-endian, organised h x w)."""

    fields: list[tuple[str, int, int, int]]
    point_step: int
    height: int
    width: int
    row_step: int
    data: np.ndarray
    is_dense: bool = False
    is_bigendian: bool = False


def _packed(buf: np.ndarray, rgb: np.ndarray | None) -> PackedCloud:
    """The PackedCloud of a (h, w, 3 or 4) little-endian float32 buffer whose x, y, z are written;
    ``rgb`` (h, w, 3) uint8 goes into the fourth float."""
    h, w, n = buf.shape
    if rgb is not None:
        if rgb.shape != (h, w, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be uint8 of shape {(h, w, 3)}, got {rgb.dtype} {rgb.shape}")
        # the colour bytes straight into the fourth float: B, G, R, 0 (little-endian 0x00RRGGBB)
        b = buf.view(np.uint8).reshape(h, w, 4 * n)
        b[..., 12:15] = rgb[..., ::-1]
        b[..., 15] = 0
    fields = list(_XYZ_FIELDS) + ([_RGB_FIELD] if rgb is not None else [])
    point_step = 4 * n
    return PackedCloud(
        fields=fields,
        point_step=point_step,
        height=h,
        width=w,
        row_step=w * point_step,
        data=buf.reshape(-1).view(np.uint8),
    )


def pack_points(xyz: np.ndarray, rgb: np.ndarray | None = None) -> PackedCloud:
    """Pack (h, w, 3) float32 points, optionally with (h, w, 3) uint8 colours, into a PointCloud2 payload."""
    if xyz.ndim != 3 or xyz.shape[2] != 3:
        raise ValueError(f"xyz must have shape (h, w, 3), got {xyz.shape}")
    buf = np.empty((*xyz.shape[:2], 3 if rgb is None else 4), dtype=_LE_F32)
    buf[..., :3] = xyz
    return _packed(buf, rgb)


def depth_cloud(
    depth: np.ndarray, intr: Intrinsics, stride: int = 1, rgb: np.ndarray | None = None
) -> PackedCloud:
    """The organized cloud of a depth map: :func:`backproject` (every ``stride``-th pixel) written
    straight into the PointCloud2 payload, with the colours ``rgb`` (already taken at the same
    pixels) if given; equal to ``pack_points(backproject(...), rgb)`` without the intermediate
    points array."""
    z = _sampled(depth, intr, stride)
    buf = np.empty((*z.shape, 3 if rgb is None else 4), dtype=_LE_F32)
    _backproject_into(z, intr, int(stride), buf[..., :3])
    return _packed(buf, rgb)


def transform_points(xyz: np.ndarray, rotation, translation) -> np.ndarray:
    """Apply X' = R X + t to (..., 3) points; returns float32 (NaN points stay NaN)."""
    r = np.asarray(rotation, dtype=np.float32)
    t = np.asarray(translation, dtype=np.float32)
    if r.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"rotation must be (3, 3) and translation (3,), got {r.shape} and {t.shape}")
    pts = np.asarray(xyz, dtype=np.float32)
    if pts.shape[-1] != 3:
        raise ValueError(f"points must have a trailing axis of 3, got {pts.shape}")
    flat = pts.reshape(-1, 3)
    out = np.empty_like(flat)
    tmp = np.empty(flat.shape[0], dtype=np.float32)
    # Column-wise multiply-adds: several times faster than matmul's BLAS path for (N, 3) x (3, 3).
    for k in range(3):
        o = out[:, k]
        np.multiply(flat[:, 0], r[k, 0], out=o)
        o += np.multiply(flat[:, 1], r[k, 1], out=tmp)
        o += np.multiply(flat[:, 2], r[k, 2], out=tmp)
        o += t[k]
    return out.reshape(pts.shape)
