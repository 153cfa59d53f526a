"""Per-view geometry inputs of the surround models: viewing rays, camera origins, focal ratios (numpy only).

Conventions: intrinsics are rescaled to the model input size with `Intrinsics.scaled_to` (pixel
centres at integer coordinates, +0.5 rule); a token cell of `stride` x `stride` input pixels is
represented by the ray through its centre, u = j*stride + (stride - 1)/2 (same for v).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .camera import Intrinsics
from .transforms import Transform


def _model_intrinsics(intrinsics: Intrinsics, model_hw: tuple[int, int]) -> Intrinsics:
    h, w = (int(v) for v in model_hw)
    return intrinsics.scaled_to(w, h)


def viewing_rays(
    intrinsics: Intrinsics,
    base_from_optical_rotation: np.ndarray,
    model_hw: tuple[int, int],
    stride: int = 32,
) -> np.ndarray:
    """Unit viewing rays in base_link, float32 [3, H/stride, W/stride], one per token cell.

    `intrinsics` are the camera's (any resolution; scaled to `model_hw` = (H, W) here);
    `base_from_optical_rotation` is the 3x3 rotation of the optical frame in base_link
    (e.g. `CameraSpec.base_from_optical().rotation`). H and W must be multiples of `stride`.
    """
    h_in, w_in = (int(v) for v in model_hw)
    if stride < 1 or h_in % stride or w_in % stride or h_in <= 0 or w_in <= 0:
        raise ValueError(f"model size {h_in}x{w_in} is not a positive multiple of stride {stride}")
    rot = np.asarray(base_from_optical_rotation, np.float64)
    if rot.shape != (3, 3):
        raise ValueError(f"base_from_optical_rotation must be 3x3, got shape {rot.shape}")
    k = _model_intrinsics(intrinsics, (h_in, w_in))
    centre = (stride - 1) / 2.0
    u = np.arange(w_in // stride, dtype=np.float64) * stride + centre
    v = np.arange(h_in // stride, dtype=np.float64) * stride + centre
    x = np.broadcast_to((u - k.cx) / k.fx, (v.size, u.size))
    y = np.broadcast_to(((v - k.cy) / k.fy)[:, None], (v.size, u.size))
    optical = np.stack([x, y, np.ones_like(x)])  # [3, h, w], optical frame
    optical /= np.linalg.norm(optical, axis=0, keepdims=True)
    return np.einsum("ij,jhw->ihw", rot, optical).astype(np.float32)


def focal_ratio(intrinsics: Intrinsics, model_hw: tuple[int, int], canonical_focal: float) -> float:
    """fx at the model input size divided by the model's canonical focal (the "focal" input)."""
    if not canonical_focal > 0:
        raise ValueError(f"canonical_focal must be > 0, got {canonical_focal}")
    return float(_model_intrinsics(intrinsics, model_hw).fx / canonical_focal)


def rig_inputs(
    intrinsics: Sequence[Intrinsics],
    base_from_optical: Sequence[Transform],
    model_hw: tuple[int, int],
    canonical_focal: float,
    stride: int = 32,
) -> dict[str, np.ndarray]:
    """Geometry inputs for N views in batch order: ``rays`` [N,3,h,w], ``origins`` [N,3], ``focal`` [N,1].

    All float32 and C-contiguous; ``origins`` are the optical frames' positions in base_link (metres).
    """
    if len(intrinsics) != len(base_from_optical) or not intrinsics:
        raise ValueError(
            f"need one transform per intrinsics, got {len(intrinsics)} and {len(base_from_optical)}"
        )
    rays = np.stack(
        [viewing_rays(k, t.rotation, model_hw, stride) for k, t in zip(intrinsics, base_from_optical)]
    )
    origins = np.stack([np.asarray(t.translation, np.float64) for t in base_from_optical]).astype(np.float32)
    focal = np.array([[focal_ratio(k, model_hw, canonical_focal)] for k in intrinsics], np.float32)
    return {"rays": np.ascontiguousarray(rays), "origins": np.ascontiguousarray(origins), "focal": focal}


__all__ = ["viewing_rays", "focal_ratio", "rig_inputs"]
