"""View-synthesis geometry for the photometric losses (batched torch, differentiable, any device).

Conventions:
- Pixel centres are integer coordinates, as in ROS intrinsics: pixel (row i, column j) is at
  u = j, v = i, and the image covers u in [-0.5, W-0.5]. A 3x3 K maps camera-frame points
  (x right, y down, z forward: ROS optical frame) to homogeneous pixels.
- A 4x4 ``T_a_from_b`` maps points expressed in frame b into frame a: p_a = R p_b + t
  (same meaning as `bore_depth_ros.core.transforms.Transform`).
- Extrinsics ``E_i = base_from_cam_i`` map camera i's optical-frame points into the base frame.
- Ego-motion ``T = base_src_from_base_tgt`` maps points in the vehicle frame at the target time
  into the vehicle frame at the source time; from odometry poses world_from_base(t):
  T = world_from_base(t_src)^-1 @ world_from_base(t_tgt).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

DEFAULT_MIN_DEPTH = 1e-3


def pixel_grid(height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """Homogeneous pixel centres [1, 3, H*W], rows (u, v, 1) with u = j, v = i, row-major order."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([u, v, torch.ones_like(u)], dim=0).reshape(1, 3, height * width)


def backproject(depth: torch.Tensor, K_inv: torch.Tensor) -> torch.Tensor:
    """Camera-frame points of every pixel: P = d(u, v) * K^-1 (u, v, 1)^T.

    depth [B,1,H,W] (z along the optical axis), K_inv [B,3,3] -> points [B,3,H*W] (row-major pixels).
    """
    b, _, h, w = depth.shape
    rays = K_inv.to(depth.dtype) @ pixel_grid(h, w, depth.device, depth.dtype)  # [B,3,HW]
    return rays * depth.reshape(b, 1, h * w)


def project(
    points: torch.Tensor, K: torch.Tensor, T: torch.Tensor | None = None, eps: float = DEFAULT_MIN_DEPTH
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole projection of points after an optional rigid transform: p' = R p + t, (u, v) = (K p')_xy / z'.

    points [B,3,N], K [B,3,3], T [B,4,4] or None -> (pixels [B,2,N] as (u, v), z' [B,1,N]).
    Points with z' <= eps are divided by eps instead (finite, far outside the image); callers mask
    them with z' > eps.
    """
    if T is not None:
        T = T.to(points.dtype)
        points = T[:, :3, :3] @ points + T[:, :3, 3:4]
    cam = K.to(points.dtype) @ points
    z = cam[:, 2:3]
    pixels = cam[:, :2] / torch.where(z > eps, z, torch.full_like(z, eps))
    return pixels, points[:, 2:3]


def inverse_warp(
    src_img: torch.Tensor,
    depth_tgt: torch.Tensor,
    T_src_from_tgt: torch.Tensor,
    K_tgt: torch.Tensor,
    K_src: torch.Tensor,
    min_depth: float = DEFAULT_MIN_DEPTH,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthesise the target view from a source view:
    I_w(p) = I_src(pi(K_src T_src_from_tgt d(p) K_tgt^-1 p)).

    src_img [B,C,Hs,Ws], depth_tgt [B,1,H,W], T_src_from_tgt [B,4,4], K_tgt [B,3,3] (for H x W),
    K_src [B,3,3] (for Hs x Ws) -> (warped [B,C,H,W], valid [B,1,H,W] bool).

    Bilinear `grid_sample`, zeros padding, align_corners=False; with integer pixel centres the
    normalised coordinate is x = (2u + 1) / Ws - 1. ``valid`` is True where the point lies in front
    of the source camera (z > min_depth) and projects inside [0, Ws-1] x [0, Hs-1], i.e. where the
    bilinear sample uses no padding.
    """
    b, _, h, w = depth_tgt.shape
    hs, ws = src_img.shape[-2:]
    points = backproject(depth_tgt, torch.linalg.inv(K_tgt.to(depth_tgt.dtype)))
    pixels, z = project(points, K_src, T_src_from_tgt, min_depth)
    u, v = pixels[:, 0], pixels[:, 1]
    grid = torch.stack([(2.0 * u + 1.0) / ws - 1.0, (2.0 * v + 1.0) / hs - 1.0], dim=-1).reshape(b, h, w, 2)
    warped = F.grid_sample(
        src_img, grid.to(src_img.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
    )
    valid = (z[:, 0] > min_depth) & (u >= 0) & (u <= ws - 1) & (v >= 0) & (v <= hs - 1)
    return warped, valid.reshape(b, 1, h, w)


def _rot_x(a: torch.Tensor) -> torch.Tensor:
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], dim=-1).reshape(*a.shape, 3, 3)


def _rot_y(a: torch.Tensor) -> torch.Tensor:
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).reshape(*a.shape, 3, 3)


def _rot_z(a: torch.Tensor) -> torch.Tensor:
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], dim=-1).reshape(*a.shape, 3, 3)


def euler_to_mat(angles: torch.Tensor) -> torch.Tensor:
    """R = Rx(rx) @ Ry(ry) @ Rz(rz) for angles [B,3] = (rx, ry, rz) in radians -> [B,3,3]."""
    return _rot_x(angles[:, 0]) @ _rot_y(angles[:, 1]) @ _rot_z(angles[:, 2])


def axis_angle_to_mat(rotvec: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rodrigues: R = I + sin(th)/th [w]x + (1 - cos(th))/th^2 [w]x^2, th = |w|; rotvec [B,3] -> [B,3,3].

    Near th = 0 the Taylor forms 1 - th^2/6 and 1/2 - th^2/24 are used (finite gradients at zero).
    """
    theta2 = (rotvec * rotvec).sum(dim=-1)
    theta = torch.sqrt(theta2.clamp_min(eps))
    small = theta2 < 1e-6
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta.square())
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(skew)
    return eye + a[:, None, None] * skew + b[:, None, None] * (skew @ skew)


def pose_vec_to_mat(vec: torch.Tensor, rotation: str = "euler") -> torch.Tensor:
    """[R | t; 0 0 0 1] [B,4,4] from vec [B,6] = (tx, ty, tz, r0, r1, r2).

    ``rotation="euler"`` (default, the SC-Depth PoseNet convention as we understand it):
    R = Rx(r0) Ry(r1) Rz(r2); ``"axis_angle"``: R = exp([r]x) (Rodrigues).
    With a PoseNet fed (target, source), the result is used as T_src_from_tgt.
    """
    if vec.dim() != 2 or vec.shape[1] != 6:
        raise ValueError(f"expected pose vectors of shape [B,6], got {list(vec.shape)}")
    if rotation == "euler":
        r = euler_to_mat(vec[:, 3:])
    elif rotation == "axis_angle":
        r = axis_angle_to_mat(vec[:, 3:])
    else:
        raise ValueError(f"rotation must be 'euler' or 'axis_angle', got {rotation!r}")
    top = torch.cat([r, vec[:, :3, None]], dim=2)
    bottom = torch.zeros_like(top[:, :1])
    bottom[:, 0, 3] = 1.0
    return torch.cat([top, bottom], dim=1)


def rigid_inverse(T: torch.Tensor) -> torch.Tensor:
    """T^-1 = [R^T | -R^T t] for rigid T [...,4,4]."""
    rt = T[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = rt
    out[..., :3, 3:] = -rt @ T[..., :3, 3:]
    out[..., 3, 3] = 1.0
    return out


def camera_motion(ego_motion: torch.Tensor, base_from_cam: torch.Tensor) -> torch.Tensor:
    """Canonical ego-motion per camera: T_cam_src_from_cam_tgt = E^-1 T E.

    ego_motion T [B,4,4] (base_src_from_base_tgt), base_from_cam E [B,4,4] -> [B,4,4].
    """
    return rigid_inverse(base_from_cam) @ ego_motion @ base_from_cam


def relative_extrinsics(base_from_src: torch.Tensor, base_from_tgt: torch.Tensor) -> torch.Tensor:
    """Camera-to-camera transform at one instant: T_src_from_tgt = E_src^-1 E_tgt; [B,4,4] each."""
    return rigid_inverse(base_from_src) @ base_from_tgt


__all__ = [
    "pixel_grid",
    "backproject",
    "project",
    "inverse_warp",
    "euler_to_mat",
    "axis_angle_to_mat",
    "pose_vec_to_mat",
    "rigid_inverse",
    "camera_motion",
    "relative_extrinsics",
    "DEFAULT_MIN_DEPTH",
]
