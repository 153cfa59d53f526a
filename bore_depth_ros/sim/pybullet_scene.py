"""A seeded street scene in pybullet (CPU TinyRenderer) with exact depth, semantics and lidar rays.

World frame: REP 103 (x forward along the road, y left, z up), ground at z = 0. The road runs
along +x centred on y = 0; the ego lane is the right one (y = -road_width / 4).

Projection convention (checked by the tests): TinyRenderer samples pixel column i at viewport
x = i exactly (not i + 0.5 as OpenGL) and flips rows afterwards, so a ROS pinhole camera
(u = fx * x / z + cx, pixel centres at integer u) needs the OpenGL-style matrix
    P[0,0] = 2 fx / W,  P[0,2] = 1 - 2 cx / W,
    P[1,1] = 2 fy / H,  P[1,2] = 2 (cy + 1) / H - 1,
    P[2,2] = -(f + n) / (f - n),  P[2,3] = -2 f n / (f - n),  P[3,2] = -1
with eye coordinates (x right, y up, z backwards) = diag(1, -1, -1) @ optical coordinates.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pybullet as p
from PIL import Image

from ..core.camera import Intrinsics
from ..core.transforms import Transform, matrix_to_quat, rotation_z
from .assets import (
    box_mesh,
    facade_texture,
    grid_mesh,
    pattern_texture,
    periodic_texture,
    road_texture,
    terrain_texture,
    vehicle_texture,
)
from .scene_config import Lighting, SceneConfig  # noqa: F401  (part of this module's API)

SKY, GROUND, BUILDING, VEHICLE, POLE, SPHERE = range(6)
# Lidar return strength per semantic class (lane paint is not modelled).
_REFLECTIVITY = np.array([0.0, 0.25, 0.45, 0.8, 0.6, 0.5], np.float32)
_EYE_FROM_OPTICAL = np.diag([1.0, -1.0, -1.0])
_SKY_HORIZON = np.array([205.0, 218.0, 235.0])
_SKY_ZENITH = np.array([105.0, 145.0, 215.0])
_RAY_CHUNK = 8192  # rayTestBatch returns nothing for 16384 rays or more


def projection_matrix(intr: Intrinsics, near: float, far: float) -> np.ndarray:
    """4x4 OpenGL-style projection making TinyRenderer follow the ROS pixel-centre convention."""
    w, h = intr.width, intr.height
    m = np.zeros((4, 4))
    m[0, 0] = 2.0 * intr.fx / w
    m[0, 2] = 1.0 - 2.0 * intr.cx / w
    m[1, 1] = 2.0 * intr.fy / h
    m[1, 2] = 2.0 * (intr.cy + 1.0) / h - 1.0
    m[2, 2] = -(far + near) / (far - near)
    m[2, 3] = -2.0 * far * near / (far - near)
    m[3, 2] = -1.0
    return m


def view_matrix(world_from_optical: Transform) -> np.ndarray:
    """4x4 world -> OpenGL eye matrix of a camera with the given optical-frame pose."""
    r = _EYE_FROM_OPTICAL @ world_from_optical.rotation.T
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = -r @ world_from_optical.translation
    return m


def _gl(m: np.ndarray) -> list[float]:
    return m.T.reshape(-1).tolist()  # pybullet takes column-major matrices


DEFAULT_SCENE_CONFIG = SceneConfig()  # frozen: one shared default is safe


class PybulletWorld:
    """A pybullet DIRECT client holding a street scene (or an empty world with ``config=None``).

    ``body_classes`` maps body ids to semantic classes (``rig.SEMANTIC_CLASSES``).
    """

    def __init__(self, config: SceneConfig | None = DEFAULT_SCENE_CONFIG, light_direction=(0.4, 0.25, 1.0)):
        self.config = config
        self.light_direction = [float(v) for v in light_direction]
        self.lighting: Lighting | None = None if config is None else config.lighting
        self.client = p.connect(p.DIRECT)
        if self.client < 0:
            raise RuntimeError("could not start a pybullet DIRECT client")
        self.body_classes: dict[int, int] = {}
        self._lut: np.ndarray | None = None
        self._periodic = None  # (stream, share, textures) with SceneConfig.periodic_share > 0
        self._tmp = tempfile.TemporaryDirectory(prefix="bore_depth_textures_")
        self._n_textures = 0
        try:
            if config is not None:
                self._build(config)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PybulletWorld:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None and self.client >= 0:
            p.disconnect(physicsClientId=self.client)
        self.client = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # --- scene construction -------------------------------------------------------------------

    def load_texture(self, rgb: np.ndarray) -> int:
        """Register an (H, W, 3) uint8 image as a pybullet texture (written as a temporary PNG)."""
        path = Path(self._tmp.name) / f"tex_{self._n_textures:04d}.png"
        self._n_textures += 1
        # a temporary file: no compression (lossless either way; zlib was most of a scene's build time)
        Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).save(path, compress_level=0)
        tex = p.loadTexture(str(path), physicsClientId=self.client)
        if tex < 0:
            raise RuntimeError(f"pybullet could not load texture {path}")
        return tex

    def _add_body(
        self,
        collision: int,
        visual: int,
        position,
        yaw: float,
        semantic: int,
        rgba=(1.0, 1.0, 1.0, 1.0),
        texture: int | None = None,
    ) -> int:
        quat = matrix_to_quat(rotation_z(yaw))
        body = p.createMultiBody(
            baseMass=0,
            baseCollisionShapeIndex=collision,
            baseVisualShapeIndex=visual,
            basePosition=[float(v) for v in position],
            baseOrientation=list(quat),
            physicsClientId=self.client,
        )
        if body < 0:
            raise RuntimeError("pybullet could not create a body")
        if visual >= 0:
            kwargs = {"rgbaColor": [float(c) for c in rgba]}
            if texture is not None:
                kwargs["textureUniqueId"] = texture
            p.changeVisualShape(body, -1, physicsClientId=self.client, **kwargs)
        self.body_classes[body] = semantic
        self._lut = None
        return body

    def add_box(
        self,
        center,
        half_extents,
        yaw: float = 0.0,
        semantic: int = BUILDING,
        rgba=(0.8, 0.8, 0.8, 1.0),
        texture: int | None = None,
        texture_tile=None,
    ) -> int:
        """A static box (yaw in radians about z); ``texture_tile`` (metres) repeats the texture."""
        half = [float(v) for v in half_extents]
        verts, norms, uvs, idx = box_mesh(half, texture_tile)
        vis = p.createVisualShape(
            p.GEOM_MESH, vertices=verts, indices=idx, uvs=uvs, normals=norms, physicsClientId=self.client
        )
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=self.client)
        return self._add_body(col, vis, center, yaw, semantic, rgba, texture)

    def add_cylinder(
        self,
        base,
        radius: float,
        height: float,
        semantic: int = POLE,
        rgba=(0.6, 0.6, 0.6, 1.0),
        texture: int | None = None,
    ) -> int:
        """A vertical cylinder standing at ``base`` (x, y, z of its bottom centre)."""
        vis = p.createVisualShape(p.GEOM_CYLINDER, radius=radius, length=height, physicsClientId=self.client)
        col = p.createCollisionShape(
            p.GEOM_CYLINDER, radius=radius, height=height, physicsClientId=self.client
        )
        centre = (base[0], base[1], base[2] + height / 2)
        return self._add_body(col, vis, centre, 0.0, semantic, rgba, texture)

    def add_sphere(
        self,
        center,
        radius: float,
        semantic: int = SPHERE,
        rgba=(0.7, 0.7, 0.7, 1.0),
        texture: int | None = None,
    ) -> int:
        vis = p.createVisualShape(p.GEOM_SPHERE, radius=radius, physicsClientId=self.client)
        col = p.createCollisionShape(p.GEOM_SPHERE, radius=radius, physicsClientId=self.client)
        return self._add_body(col, vis, center, 0.0, semantic, rgba, texture)

    def _add_ground(self, rng, cfg: SceneConfig, x0: float, x1: float) -> None:
        half = cfg.road_width / 2
        strip = half + 6.0  # road, parking strip and sidewalk
        outer = strip + 60.0
        tile_len = 16.0
        road_tex = self.load_texture(road_texture(rng, cfg.road_width, 2 * strip, tile_len))
        verts, norms, uvs, idx = grid_mesh(x0, x1, -strip, strip, 10.0, (tile_len, 2 * strip), (x0, -strip))
        vis = p.createVisualShape(
            p.GEOM_MESH, vertices=verts, indices=idx, uvs=uvs, normals=norms, physicsClientId=self.client
        )
        # Rays need collision geometry: one slab under all the ground, top face at z = 0. It belongs
        # to the road body because pybullet renders the collision shape of a body without visuals.
        col = p.createCollisionShape(
            p.GEOM_BOX,
            halfExtents=[(x1 - x0) / 2, outer, 0.5],
            collisionFramePosition=[(x0 + x1) / 2, 0.0, -0.5],
            physicsClientId=self.client,
        )
        self._add_body(col, vis, (0.0, 0.0, 0.0), 0.0, GROUND, texture=road_tex)
        terrain_tex = self.load_texture(terrain_texture(rng))
        for y0, y1 in ((strip, outer), (-outer, -strip)):
            verts, norms, uvs, idx = grid_mesh(x0, x1, y0, y1, 20.0, (8.0, 8.0), (x0, -outer))
            vis = p.createVisualShape(
                p.GEOM_MESH, vertices=verts, indices=idx, uvs=uvs, normals=norms, physicsClientId=self.client
            )
            self._add_body(
                -1, vis, (0.0, 0.0, 0.0), 0.0, GROUND, rgba=(0.9, 0.9, 0.9, 1.0), texture=terrain_tex
            )

    def _build(self, cfg: SceneConfig) -> None:
        rng = np.random.default_rng(cfg.seed)
        half = cfg.road_width / 2
        x_lo, x_hi = -40.0, float(cfg.length)
        self._add_ground(rng, cfg, x_lo - 120.0, x_hi + 120.0)
        facades = [self.load_texture(facade_texture(rng)) for _ in range(4)]
        paints = [self.load_texture(vehicle_texture(rng)) for _ in range(3)]
        patterns = [self.load_texture(pattern_texture(rng)) for _ in range(4)]
        self._periodic = None
        if cfg.periodic_share > 0:  # own stream: the layout stays the one of the scene seed
            prng = np.random.default_rng([cfg.seed, 3])
            self._periodic = (
                prng,
                cfg.periodic_share,
                [self.load_texture(periodic_texture(prng)) for _ in range(8)],
            )
        if cfg.density <= 0:
            return
        gap = 1.0 / cfg.density
        hscale = cfg.building_height_scale

        def colour(lo=0.35, hi=1.0):
            return (*rng.uniform(lo, hi, 3).tolist(), 1.0)

        for side in (1.0, -1.0):
            x = x_lo + rng.uniform(0.0, 4.0)
            while x < x_hi:  # buildings
                length, depth, height = rng.uniform(6, 18), rng.uniform(6, 14), rng.uniform(4, 22) * hscale
                setback = half + 5.0 + rng.uniform(0.0, 4.0)
                self.add_box(
                    (x + length / 2, side * (setback + depth / 2), height / 2),
                    (length / 2, depth / 2, height / 2),
                    0.0,
                    BUILDING,
                    *self._look(colour(0.5, 1.0), facades[rng.integers(len(facades))], (12.0, 12.8)),
                )
                x += length + rng.uniform(1.0, 6.0) * gap
            x = x_lo + rng.uniform(0.0, 6.0)
            while x < x_hi:  # parked vehicles
                yaw = rng.normal(0, 0.05) + (0.0 if side < 0 else np.pi)  # right-hand traffic
                self._add_vehicle(rng, x, side * (half + 1.2), yaw, paints, colour)
                x += rng.uniform(6.0, 16.0) * gap
            x = x_lo + rng.uniform(0.0, 8.0)
            while x < x_hi:  # poles
                r, h = rng.uniform(0.06, 0.22), rng.uniform(3.0, 8.0)
                self.add_cylinder(
                    (x, side * (half + 2.6 + rng.uniform(0, 0.6)), 0.0),
                    r,
                    h,
                    POLE,
                    colour(0.3, 0.9),
                    patterns[rng.integers(len(patterns))],
                )
                x += rng.uniform(7.0, 16.0) * gap
            x = x_lo + rng.uniform(0.0, 5.0)
            while x < x_hi:  # spheres on the sidewalk and beyond
                far_out = rng.random() < 0.3
                r = rng.uniform(0.8, 2.2) if far_out else rng.uniform(0.25, 0.9)
                y = side * (
                    rng.uniform(half + 5.0, half + 12.0)
                    if far_out
                    else rng.uniform(half + 2.8 + r, half + 5.0)
                )
                self.add_sphere(
                    (x, y, r + (rng.uniform(0, 2.0) if rng.random() < 0.2 else 0.0)),
                    r,
                    SPHERE,
                    colour(0.3, 1.0),
                    patterns[rng.integers(len(patterns))],
                )
                x += rng.uniform(4.0, 10.0) * gap
        x = x_lo + rng.uniform(0.0, 10.0)
        while x < x_hi:  # oncoming lane
            self._add_vehicle(
                rng, x, half / 2 + rng.normal(0, 0.15), np.pi + rng.normal(0, 0.03), paints, colour
            )
            x += rng.uniform(10.0, 25.0) * gap
        x = x_lo + rng.uniform(0.0, 6.0)
        while x < -8.0:  # ego lane, only behind the start
            self._add_vehicle(rng, x, -half / 2 + rng.normal(0, 0.15), rng.normal(0, 0.03), paints, colour)
            x += rng.uniform(10.0, 20.0) * gap
        for x_end in (x_lo - 15.0, x_hi + 15.0):  # closes the street at both ends
            h = rng.uniform(10.0, 25.0) * hscale
            self.add_box(
                (x_end, 0.0, h / 2),
                (4.0, half + 25.0, h / 2),
                0.0,
                BUILDING,
                *self._look(colour(0.5, 1.0), facades[rng.integers(len(facades))], (12.0, 12.8)),
            )

    def _add_vehicle(self, rng, x: float, y: float, yaw: float, paints, colour) -> int:
        if rng.random() < 0.2:  # vans and trucks
            length, width, height = rng.uniform(6, 9), rng.uniform(2.2, 2.5), rng.uniform(2.5, 3.4)
        else:
            length, width, height = rng.uniform(3.8, 5.0), rng.uniform(1.7, 2.0), rng.uniform(1.4, 1.9)
        return self.add_box(
            (x + length / 2, y, height / 2 + 0.25),
            (length / 2, width / 2, height / 2),
            yaw,
            VEHICLE,
            *self._look(colour(0.25, 1.0), paints[rng.integers(len(paints))], None),
        )

    def _look(self, rgba, texture: int, tile):
        """(rgba, texture, tile) of a box: the given ones, or with ``periodic_share`` a periodic
        texture (untinted, tile 1.5-10 m, so stripe periods span about 0.1-10 m)."""
        if self._periodic is None:
            return rgba, texture, tile
        prng, share, textures = self._periodic
        if prng.random() >= share:
            return rgba, texture, tile
        s = float(prng.uniform(1.5, 10.0))
        return (1.0, 1.0, 1.0, 1.0), textures[prng.integers(len(textures))], (s, s)

    # --- sensors ----------------------------------------------------------------------------------

    def _class_lut(self) -> np.ndarray:
        if self._lut is None:
            n = max(self.body_classes, default=-1) + 2
            lut = np.zeros(n, np.uint8)
            for body, cls in self.body_classes.items():
                lut[body + 1] = cls
            self._lut = lut
        return self._lut

    def render_camera(
        self, world_from_optical: Transform, intr: Intrinsics, near: float = 0.1, far: float = 200.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB (H, W, 3) uint8, depth (H, W) float32 metres along optical z (+inf: sky), labels uint8."""
        w, h = intr.width, intr.height
        light = {"lightDirection": self.light_direction}
        if self.lighting is not None:
            lt = self.lighting
            light = {
                "lightDirection": [float(v) for v in lt.direction],
                "lightColor": [float(v) for v in lt.color],
                "lightDistance": float(lt.distance),
                "lightAmbientCoeff": float(lt.ambient),
                "lightDiffuseCoeff": float(lt.diffuse),
                "lightSpecularCoeff": float(lt.specular),
            }
        _, _, rgba, zbuf, seg = p.getCameraImage(
            w,
            h,
            viewMatrix=_gl(view_matrix(world_from_optical)),
            projectionMatrix=_gl(projection_matrix(intr, near, far)),
            shadow=0,
            flags=0,
            renderer=p.ER_TINY_RENDERER,
            physicsClientId=self.client,
            **light,
        )
        rgb = np.asarray(rgba, np.uint8).reshape(h, w, 4)[..., :3].copy()
        zbuf = np.asarray(zbuf, np.float64).reshape(h, w)
        seg = np.asarray(seg, np.int64).reshape(h, w)
        sky = seg < 0
        depth = (far * near / (far - (far - near) * zbuf)).astype(np.float32)
        depth[sky] = np.inf
        lut = self._class_lut()
        semantic = lut[np.clip(seg + 1, 0, len(lut) - 1)]
        if sky.any():
            rgb[sky] = self._sky_colour(world_from_optical, intr)[sky]
        return rgb, depth, semantic

    @staticmethod
    def _sky_colour(world_from_optical: Transform, intr: Intrinsics) -> np.ndarray:
        u = (np.arange(intr.width) - intr.cx) / intr.fx
        v = (np.arange(intr.height) - intr.cy) / intr.fy
        r = world_from_optical.rotation
        # world z of the ray direction (x, y, 1) in the optical frame, normalised
        dz = r[2, 0] * u[None, :] + r[2, 1] * v[:, None] + r[2, 2]
        norm = np.sqrt(u[None, :] ** 2 + v[:, None] ** 2 + 1.0)
        t = np.clip(dz / norm, 0.0, 1.0) ** 0.6
        return (_SKY_HORIZON + (_SKY_ZENITH - _SKY_HORIZON) * t[..., None]).astype(np.uint8)

    def lidar_scan(
        self,
        world_from_lidar: Transform,
        channels: int = 32,
        azimuth_steps: int = 720,
        vfov=(-25.0, 10.0),
        max_range: float = 100.0,
        num_threads: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Points (N, 3) float32 in the lidar frame and intensities (N,) float32 of the rays that hit.

        Rays go ring by ring (elevations from vfov[0] to vfov[1]), azimuth 0 = lidar x, counter-clockwise.
        """
        el = np.deg2rad(np.linspace(vfov[0], vfov[1], channels))
        az = np.arange(azimuth_steps) * (2 * np.pi / azimuth_steps)
        ce = np.cos(el)[:, None]
        dirs = np.stack(
            [
                np.broadcast_to(ce * np.cos(az), (channels, azimuth_steps)),
                np.broadcast_to(ce * np.sin(az), (channels, azimuth_steps)),
                np.broadcast_to(np.sin(el)[:, None], (channels, azimuth_steps)),
            ],
            -1,
        ).reshape(-1, 3)
        dirs_world = dirs @ world_from_lidar.rotation.T
        origin = np.asarray(world_from_lidar.translation, np.float64)
        ends = origin + dirs_world * max_range
        n = len(dirs)
        ids = np.empty(n, np.int64)
        frac = np.empty(n, np.float64)
        normals = np.empty((n, 3), np.float64)
        starts = np.ascontiguousarray(np.broadcast_to(origin, (min(n, _RAY_CHUNK), 3)))
        for s in range(0, n, _RAY_CHUNK):
            e = min(n, s + _RAY_CHUNK)
            res = p.rayTestBatch(
                starts[: e - s], ends[s:e], numThreads=num_threads, physicsClientId=self.client
            )
            if len(res) != e - s:
                raise RuntimeError(f"rayTestBatch returned {len(res)} results for {e - s} rays")
            ids[s:e] = [r[0] for r in res]
            frac[s:e] = [r[2] for r in res]
            normals[s:e] = [r[4] for r in res]
        hit = (ids >= 0) & (frac < 1.0)
        points = (dirs[hit] * (frac[hit] * max_range)[:, None]).astype(np.float32)
        lut = self._class_lut()
        cls = lut[np.clip(ids[hit] + 1, 0, len(lut) - 1)]
        cos_inc = np.abs(np.einsum("ij,ij->i", normals[hit], dirs_world[hit]))
        intensity = (_REFLECTIVITY[cls] * (0.3 + 0.7 * cos_inc)).astype(np.float32)
        return points, intensity
