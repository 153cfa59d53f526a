"""Domain randomisation of ``bore-depth synth --randomise`` (ROS-free, numpy only).

Everything is drawn from its own numpy stream, ``default_rng([seed, 2])``, so the scene stream
(``default_rng(seed)``) and the camera-jitter stream (``[seed, 1]``) do not move; the periodic wall
textures draw from ``[seed, 3]`` (``sim.pybullet_scene``). The ranges are ``RANGES``; docs/synth.md
says what each one does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .scene_config import Lighting, SceneConfig

# name: (low, high) of a uniform draw
RANGES: dict[str, tuple[float, float]] = {
    "density": (0.6, 1.8),
    "road_width": (6.0, 12.0),
    "building_height_scale": (0.5, 1.6),
    "periodic_share": (0.3, 0.7),
    "light_azimuth_deg": (0.0, 360.0),
    "light_elevation_deg": (15.0, 85.0),
    "light_intensity": (0.6, 1.3),
    "light_ambient": (0.35, 0.75),
    "camera_height_offset_m": (-0.25, 0.25),
    "camera_pitch_offset_deg": (-3.0, 3.0),
}
_STREAM = 2
PARAMS_FILE = "synth_params.json"  # in the bag folder, next to metadata.yaml


@dataclass(frozen=True)
class SynthParams:
    """One recording's drawn parameters (written to ``synth_params.json``)."""

    seed: int
    density: float
    road_width: float
    building_height_scale: float
    periodic_share: float
    light_azimuth_deg: float
    light_elevation_deg: float
    light_intensity: float
    light_ambient: float
    light_color: tuple[float, float, float]
    camera_height_offset_m: float
    camera_pitch_offset_deg: float
    density_given: bool = False  # True: density is the caller's, not drawn

    def lighting(self) -> Lighting:
        az, el = np.deg2rad(self.light_azimuth_deg), np.deg2rad(self.light_elevation_deg)
        direction = (np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el))
        return Lighting(
            direction=tuple(float(v) for v in direction),
            color=tuple(float(c * self.light_intensity) for c in self.light_color),
            ambient=self.light_ambient,
            diffuse=0.35 + 0.25 * (self.light_intensity - 0.6),  # brighter sun, stronger shading
            specular=0.05,
        )

    def scene(self, base: SceneConfig) -> SceneConfig:
        return replace(
            base,
            density=self.density,
            road_width=self.road_width,
            building_height_scale=self.building_height_scale,
            periodic_share=self.periodic_share,
            lighting=self.lighting(),
        )

    def to_json_dict(self) -> dict:
        d = asdict(self)
        d["light_color"] = list(self.light_color)
        d["lighting"] = asdict(self.lighting())
        d["ranges"] = {k: list(v) for k, v in RANGES.items()}
        return d

    def summary(self) -> str:
        return (
            f"randomised (seed {self.seed}): density {self.density:.2f}"
            f"{' (given)' if self.density_given else ''}, road {self.road_width:.1f} m, "
            f"building heights x{self.building_height_scale:.2f}, periodic walls {self.periodic_share:.0%}, "
            f"light az {self.light_azimuth_deg:.0f} el {self.light_elevation_deg:.0f} deg "
            f"x{self.light_intensity:.2f} ambient {self.light_ambient:.2f}, "
            f"camera height {self.camera_height_offset_m:+.3f} m "
            f"pitch {self.camera_pitch_offset_deg:+.2f} deg"
        )


def draw(seed: int, density: float | None = None) -> SynthParams:
    """The parameters of ``seed`` (same seed, same parameters); ``density`` given: it is kept.

    All values are drawn in a fixed order whether or not density is given, so giving it changes
    nothing else."""
    rng = np.random.default_rng([seed, _STREAM])
    vals = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in RANGES.items()}
    warm = float(rng.uniform(-1.0, 1.0))  # warm (evening sun) to cool (overcast) tint
    if warm >= 0:
        color = (1.0, 1.0 - 0.08 * warm, 1.0 - 0.18 * warm)
    else:
        color = (1.0 + 0.12 * warm, 1.0 + 0.04 * warm, 1.0)
    if density is not None:
        vals["density"] = float(density)
    return SynthParams(
        seed=int(seed), light_color=tuple(float(c) for c in color), density_given=density is not None, **vals
    )
