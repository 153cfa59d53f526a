"""Pinhole intrinsics from camera_info arrays, and their exact rescaling (half-pixel centres)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import CAMERA_INFO_INVALID, CAMERA_INFO_SIZE_MISMATCH, InputRejected

_ASPECT_TOLERANCE = 0.01


def _num(x) -> str:
    return f"{float(x):g}"


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics (pixels) for an image of ``width`` x ``height``; hashable, used as a cache key."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_camera_info(
        cls, k: Sequence[float], p: Sequence[float] | None, width: int, height: int
    ) -> Intrinsics:
        """Build from row-major K (9) and P (12); P is used when its fx and fy are > 0 (rectified images)."""
        k = [float(v) for v in k] if k is not None else []
        p = [float(v) for v in p] if p is not None else []
        if len(k) != 9:
            raise InputRejected(CAMERA_INFO_INVALID, f"K has {len(k)} values, expected 9")
        if p and len(p) != 12:
            raise InputRejected(CAMERA_INFO_INVALID, f"P has {len(p)} values, expected 12")
        if not p:
            p = [0.0] * 12
        use_p = p[0] > 0 and p[5] > 0  # False for NaN too
        # name -> (index in K, index in P)
        where = {"fx": (0, 0), "fy": (4, 5), "cx": (2, 2), "cy": (5, 6)}
        vals = {name: (p[ip] if use_p else k[ik]) for name, (ik, ip) in where.items()}
        for name, val in vals.items():
            if not math.isfinite(val) or (name in ("fx", "fy") and val <= 0):
                ik, ip = where[name]
                raise InputRejected(
                    CAMERA_INFO_INVALID,
                    f"{name} is {_num(val)} (K[{ik}]={_num(k[ik])}, P[{ip}]={_num(p[ip])})",
                )
        if int(width) <= 0 or int(height) <= 0:
            raise InputRejected(
                CAMERA_INFO_INVALID, f"size is {int(width)}x{int(height)}; width and height must be > 0"
            )
        return cls(vals["fx"], vals["fy"], vals["cx"], vals["cy"], int(width), int(height))

    def scaled_to(self, width: int, height: int) -> Intrinsics:
        """Intrinsics of the same camera resampled to ``width`` x ``height`` (pixel centres at +0.5)."""
        width, height = int(width), int(height)
        if width <= 0 or height <= 0 or self.width <= 0 or self.height <= 0:
            raise ValueError(f"cannot scale intrinsics from {self.width}x{self.height} to {width}x{height}")
        if (width, height) == (self.width, self.height):
            return self
        sx = width / self.width
        sy = height / self.height
        return Intrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height
        )

    def matrix(self) -> np.ndarray:
        """The 3x3 float64 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def _scale_rows(m: list[float], ncols: int, sx: float, sy: float) -> list[float]:
    """Scale the first two rows of a row-major 3 x ncols projection (K or P) for a resampled image."""
    if not any(m):
        return m  # an unset (all-zero) matrix stays unset
    out = list(m)
    out[0] = m[0] * sx
    out[1] = m[1] * sx  # skew
    out[2] = (m[2] + 0.5) * sx - 0.5
    out[ncols + 1] = m[ncols + 1] * sy
    out[ncols + 2] = (m[ncols + 2] + 0.5) * sy - 0.5
    if ncols == 4:
        out[3] = m[3] * sx  # Tx = -fx * baseline
        out[7] = m[7] * sy  # Ty
    return out


def scale_camera_info_arrays(
    k: Sequence[float], p: Sequence[float], src_w: int, src_h: int, dst_w: int, dst_h: int
) -> tuple[list[float], list[float]]:
    """K (9) and P (12) of a camera_info rescaled from src to dst image size, as
    :meth:`Intrinsics.scaled_to`."""
    k = [float(v) for v in k]
    p = [float(v) for v in p]
    if len(k) != 9 or len(p) != 12:
        raise ValueError(f"expected K with 9 and P with 12 values, got {len(k)} and {len(p)}")
    if min(src_w, src_h, dst_w, dst_h) <= 0:
        raise ValueError(f"sizes must be positive, got {src_w}x{src_h} -> {dst_w}x{dst_h}")
    sx = dst_w / src_w
    sy = dst_h / src_h
    return _scale_rows(k, 3, sx, sy), _scale_rows(p, 4, sx, sy)


def fit_intrinsics_to_image(intr: Intrinsics, width: int, height: int) -> Intrinsics:
    """Return intrinsics for a ``width`` x ``height`` image.

    Unchanged when the sizes agree; rescaled when only the resolution differs (aspect ratios within
    1 %, e.g. a driver that resizes images but not camera_info); otherwise InputRejected.
    """
    width, height = int(width), int(height)
    if (intr.width, intr.height) == (width, height):
        return intr
    if intr.width <= 0 or intr.height <= 0:
        raise InputRejected(
            CAMERA_INFO_INVALID,
            f"camera_info size is {intr.width}x{intr.height}; width and height must be > 0",
        )
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    aspect_ratio = (width / height) / (intr.width / intr.height)
    if abs(aspect_ratio - 1.0) <= _ASPECT_TOLERANCE:
        return intr.scaled_to(width, height)
    raise InputRejected(
        CAMERA_INFO_SIZE_MISMATCH,
        f"camera_info is {intr.width}x{intr.height} but the image is {width}x{height} "
        f"(aspect ratios {intr.width / intr.height:.4f} and {width / height:.4f} differ by more than 1 %)",
    )
