"""A tiny analytic ray caster: a camera above a textured ground plane with boxes (numpy only).

It gives exact ground-truth depth for the embedded demo and for tests without any renderer.
World frame follows REP 103 (x forward, y left, z up); the camera optical frame has z forward,
x right, y down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.camera import Intrinsics

# optical axes expressed in a level camera body frame (x fwd, y left, z up)
OPTICAL_TO_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    color: tuple[int, int, int]


@dataclass
class Scene:
    boxes: list[Box] = field(default_factory=list)
    tile: float = 1.0

    @staticmethod
    def street(seed: int = 0, length: float = 60.0) -> Scene:
        """Boxes of random size and colour on both sides of a corridor along +x."""
        rng = np.random.default_rng(seed)
        boxes = []
        x = 4.0
        while x < length:
            side = rng.choice([-1.0, 1.0])
            y0 = side * rng.uniform(1.5, 4.0)
            w, d, h = rng.uniform(0.6, 2.0), rng.uniform(0.6, 2.0), rng.uniform(0.5, 2.5)
            col = tuple(int(c) for c in rng.integers(40, 230, 3))
            boxes.append(Box((x, min(y0, y0 + side * w), 0.0), (x + d, max(y0, y0 + side * w), h), col))
            x += rng.uniform(1.5, 4.0)
        return Scene(boxes)


def camera_rotation(pitch_deg: float) -> np.ndarray:
    """Rotation world <- optical for a camera looking along +x, pitched down by ``pitch_deg``."""
    p = np.deg2rad(pitch_deg)
    pitch = np.array([[np.cos(p), 0.0, np.sin(p)], [0.0, 1.0, 0.0], [-np.sin(p), 0.0, np.cos(p)]])
    return pitch @ OPTICAL_TO_BODY


def render(scene: Scene, intr: Intrinsics, position, rotation) -> tuple[np.ndarray, np.ndarray]:
    """RGB (H, W, 3) uint8 and depth (H, W) float32 metres along optical z (inf for sky)."""
    v, u = np.mgrid[0 : intr.height, 0 : intr.width].astype(np.float64)
    rays_opt = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], -1)
    d = rays_opt @ np.asarray(rotation).T  # world direction per unit optical depth
    o = np.asarray(position, np.float64)
    t_best = np.full(u.shape, np.inf)
    rgb = np.zeros(u.shape + (3,), np.float64)
    # sky
    elev = np.clip(d[..., 2] / np.linalg.norm(d, axis=-1), -1, 1)
    rgb[:] = np.stack([120 + 60 * elev, 160 + 50 * elev, 230 + 0 * elev], -1)
    # ground z = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d[..., 2] < -1e-9, -o[2] / d[..., 2], np.inf)
    hit = t < t_best
    p = o + d * np.where(hit, t, 0.0)[..., None]
    checker = (np.floor(p[..., 0] / scene.tile) + np.floor(p[..., 1] / scene.tile)) % 2
    fine = 0.5 + 0.5 * np.sin(p[..., 0] * 7.0) * np.sin(p[..., 1] * 5.0)
    ground = np.stack(
        [90 + 60 * checker + 20 * fine, 95 + 55 * checker + 20 * fine, 85 + 50 * checker + 15 * fine], -1
    )
    rgb = np.where(hit[..., None], ground, rgb)
    t_best = np.where(hit, t, t_best)
    # boxes: slab test, vectorised over pixels
    for box in scene.boxes:
        lo, hi = np.asarray(box.lo), np.asarray(box.hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (lo - o) / d
            t2 = (hi - o) / d
        tmin = np.nanmax(np.minimum(t1, t2), axis=-1)
        tmax = np.nanmin(np.maximum(t1, t2), axis=-1)
        hit = (tmax >= tmin) & (tmin > 1e-6) & (tmin < t_best)
        if not hit.any():
            continue
        axis = np.argmax(np.minimum(t1, t2), axis=-1)  # face that was entered
        shade = np.array([1.0, 0.8, 0.6])[axis]
        colour = np.asarray(box.color, np.float64)[None, None, :] * shade[..., None]
        rgb = np.where(hit[..., None], colour, rgb)
        t_best = np.where(hit, tmin, t_best)
    return rgb.clip(0, 255).astype(np.uint8), t_best.astype(np.float32)
