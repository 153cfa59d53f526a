"""Street-scene parameters (kept apart from the pybullet module so importing them is cheap)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SceneConfig:
    """Street layout parameters; objects fill x in [-40, length] (behind and ahead of the start)."""

    seed: int = 0
    length: float = 80.0
    density: float = 1.0
    road_width: float = 8.0
