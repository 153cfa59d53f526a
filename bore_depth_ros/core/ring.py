"""Ring order and neighbouring views of any camera rig, from where its cameras look (ROS-free).

A camera's heading is the azimuth of its optical axis (the optical frame's z axis) in the base
frame (REP 103: x forward, y left, z up): ``atan2(y, x)``, 0 straight ahead, positive to the left.
The ring starts at the most forward camera (azimuth closest to 0) and goes counter-clockwise
(to the left), which is the project's own order (``sim.rig.RING_ORDER``: front, front_left,
back_left, back, back_right, front_right), so view v+1 is the left neighbour of view v.

Neighbours for view-relational terms come from the cameras' real horizontal fields of view: each
view covers an arc of the azimuth circle (the azimuths of the rays through its left and right
image borders on the principal row); two views are neighbours when their arcs intersect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .camera import Intrinsics
from .transforms import Transform

TWO_PI = 2.0 * math.pi


def _wrap(a: float) -> float:
    """Angle in (-pi, pi]."""
    a = math.fmod(a + math.pi, TWO_PI)
    if a <= 0.0:
        a += TWO_PI
    return a - math.pi


def _azimuth(v: np.ndarray) -> float:
    return math.atan2(float(v[1]), float(v[0]))


def optical_azimuth(base_from_optical: Transform) -> float:
    """Azimuth (radians, (-pi, pi], counter-clockwise from base x) of the optical z axis."""
    return _azimuth(np.asarray(base_from_optical.rotation, np.float64)[:, 2])


def ring_order(base_from_optical: Sequence[Transform]) -> list[int]:
    """Indices of the cameras in ring order: the most forward first, then counter-clockwise.

    Ties (two cameras looking the same way) keep their given order."""
    az = [optical_azimuth(t) for t in base_from_optical]
    if not az:
        return []
    start = min(range(len(az)), key=lambda i: (abs(az[i]), i))

    def key(i: int) -> tuple[float, int]:
        return (math.fmod(az[i] - az[start] + 2 * TWO_PI, TWO_PI), i)

    return sorted(range(len(az)), key=key)


def fov_arc(intr: Intrinsics, base_from_optical: Transform) -> tuple[float, float, float]:
    """(centre azimuth, offset of the clockwise edge, offset of the counter-clockwise edge), radians:
    the arc of the azimuth circle a camera's image spans on its principal row."""
    r = np.asarray(base_from_optical.rotation, np.float64)
    centre = _azimuth(r[:, 2])
    edges = []
    for u in (-0.5, intr.width - 0.5):  # outer borders of the first and last pixel columns
        ray = r @ np.array([(u - intr.cx) / intr.fx, 0.0, 1.0])
        edges.append(_wrap(_azimuth(ray) - centre))
    return centre, min(edges), max(edges)


def overlap_pairs(
    intrinsics: Sequence[Intrinsics],
    extrinsics: Sequence[Transform],
    min_overlap_rad: float = 0.0,
) -> list[tuple[int, int]]:
    """Neighbouring views (a, b) whose horizontal fields of view overlap by more than
    ``min_overlap_rad``: ``a`` is the left one (its right border overlaps ``b``'s left border).

    Sorted by ``b`` then ``a``, so for a ring-ordered rig whose neighbours overlap (the project's
    six cameras) this is ``[(v + 1) % N, v) for v in range(N)]``, the pairs of
    ``train.losses.ring_neighbour_pairs``."""
    if len(intrinsics) != len(extrinsics):
        raise ValueError(f"{len(intrinsics)} intrinsics for {len(extrinsics)} extrinsics")
    arcs = [fov_arc(k, t) for k, t in zip(intrinsics, extrinsics)]
    pairs = []
    for i in range(len(arcs)):
        for j in range(i + 1, len(arcs)):
            ci, lo_i, hi_i = arcs[i]
            cj, lo_j, hi_j = arcs[j]
            d = _wrap(cj - ci)  # j's centre relative to i's
            overlap = max(min(hi_i, s + hi_j) - max(lo_i, s + lo_j) for s in (d - TWO_PI, d, d + TWO_PI))
            if overlap > min_overlap_rad:
                pairs.append((j, i) if d > 0 else (i, j))  # the left one first
    return sorted(pairs, key=lambda p: (p[1], p[0]))


def ring_neighbours(n: int) -> list[tuple[int, int]]:
    """The ring-adjacent pairs (v + 1, v) of ``n`` ring-ordered views (none for one view)."""
    return [((v + 1) % n, v) for v in range(n)] if n > 1 else []


def check_order(names: Sequence[str], base_from_optical: Sequence[Transform | None]) -> str | None:
    """None when ``names`` (a rig's cameras as configured) are in the ring order their extrinsics
    give (:func:`ring_order`), else one line saying the order TF gives. None as well when an
    extrinsic is missing (nothing to compare with)."""
    if len(names) != len(base_from_optical):
        raise ValueError(f"{len(names)} camera names for {len(base_from_optical)} transforms")
    if len(names) < 2 or any(t is None for t in base_from_optical):
        return None
    order = ring_order(base_from_optical)  # type: ignore[arg-type]
    if order == list(range(len(names))):
        return None
    expected = [names[i] for i in order]
    n = len(order)
    rotated = any(order == [(k + s) % n for k in range(n)] for s in range(1, n))
    how = (
        "the same ring started at another camera"
        if rotated
        else "the ring walked clockwise"
        if order == [(-k) % n for k in range(n)]
        else "not the ring order"
    )
    degrees = [round(math.degrees(optical_azimuth(base_from_optical[i]))) for i in order]  # type: ignore[arg-type]
    return (
        f"cameras [{', '.join(names)}] are {how}: their optical axes in TF give "
        f"[{', '.join(expected)}] (most forward first, counter-clockwise; azimuths "
        f"{', '.join(f'{d} deg' for d in degrees)}); views are fed to the model in the configured order"
    )
