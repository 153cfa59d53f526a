"""Street-scene parameters (kept apart from the pybullet module so importing them is cheap)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lighting:
    """TinyRenderer lighting of ``getCameraImage`` (direction: towards the light, world frame).

    ``None`` in ``SceneConfig.lighting`` keeps pybullet's defaults with the world's direction."""

    direction: tuple[float, float, float] = (0.4, 0.25, 1.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    distance: float = 10.0
    ambient: float = 0.6
    diffuse: float = 0.35
    specular: float = 0.05


@dataclass(frozen=True)
class SceneConfig:
    """Street layout parameters; objects fill x in [-40, length] (behind and ahead of the start).

    The defaults are the scenes of ``bore-depth synth`` without ``--randomise``:
    ``building_height_scale`` multiplies the drawn building heights, ``periodic_share`` is the share
    of building walls and vehicles given a strong periodic texture (stripes, checkers, bricks) drawn
    from their own stream (``sim.randomise``), ``lighting`` overrides the renderer's lighting."""

    seed: int = 0
    length: float = 80.0
    density: float = 1.0
    road_width: float = 8.0
    building_height_scale: float = 1.0
    periodic_share: float = 0.0
    lighting: Lighting | None = None
