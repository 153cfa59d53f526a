"""Tests for bore_depth_ros.core.scale (metric scale estimators)."""

import math

import numpy as np
import pytest

from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.core.scale import (
    FixedScale,
    GroundPlaneScale,
    MetricScale,
    ScaleResult,
    make_scale_estimator,
)

INTR = Intrinsics(110.0, 110.0, 79.5, 59.5, 160, 120)
HEIGHT = 1.5


def render_ground(intr=INTR, height=HEIGHT, pitch_deg=10.0, roll_deg=0.0):
    """Metric depth (z) of a flat ground seen by a camera ``height`` above it, pitched down; NaN above
    the horizon."""
    p, r = math.radians(pitch_deg), math.radians(roll_deg)
    # world "up" in the optical frame (x right, y down, z forward) of a pitched, then rolled camera
    up = np.array([math.sin(r) * math.cos(p), -math.cos(r) * math.cos(p), -math.sin(p)])
    u = np.arange(intr.width)
    v = np.arange(intr.height)[:, None]
    ray_dot_up = (u - intr.cx) / intr.fx * up[0] + (v - intr.cy) / intr.fy * up[1] + up[2]
    with np.errstate(divide="ignore"):
        z = np.where(ray_dot_up < -1e-6, -height / ray_dot_up, np.nan)  # up . (z * ray) = -height
    return z.astype(np.float32)


def test_clean_ground_recovers_scale():
    est = GroundPlaneScale(HEIGHT)
    res = est.update(render_ground() / 4.0, INTR)
    assert isinstance(res, ScaleResult)
    assert res.source == "ground_plane"
    assert res.scale == pytest.approx(4.0, rel=0.01)
    assert res.plane_distance == pytest.approx(HEIGHT / 4.0, rel=0.01)
    assert res.inlier_fraction > 0.95


def test_rolled_camera_and_roi():
    est = GroundPlaneScale(HEIGHT, roi_top=0.7, max_points=500)
    res = est.update(render_ground(pitch_deg=5.0, roll_deg=12.0) * 0.25, INTR)
    assert res.source == "ground_plane" and res.scale == pytest.approx(4.0, rel=0.01)


def ground_with_obstacle_and_holes():
    depth = render_ground()
    h, w = depth.shape
    lower = depth[h // 2 :]
    c0 = int(0.35 * w)
    c1 = c0 + int(round(0.3 * w))
    assert np.all(lower[:, c0:c1] > 1.6)
    lower[:, c0:c1] = 1.2  # the fronto-parallel face of a box in front of the camera
    rng = np.random.default_rng(5)
    depth[rng.random(depth.shape) < 0.05] = np.nan
    return depth / 4.0


def test_obstacle_and_nans_keep_the_scale():
    res = GroundPlaneScale(HEIGHT).update(ground_with_obstacle_and_holes(), INTR)
    assert res.source == "ground_plane"
    assert res.scale == pytest.approx(4.0, rel=0.02)
    assert 0.55 < res.inlier_fraction < 0.8


def test_no_ground_gives_initial_then_held():
    wall = np.full((INTR.height, INTR.width), 3.0, np.float32)
    est = GroundPlaneScale(HEIGHT, initial_scale=2.5)
    res = est.update(wall, INTR)
    assert (res.source, res.scale) == ("initial", 2.5)
    assert math.isnan(res.plane_distance)
    assert est.update(render_ground() / 4.0, INTR).source == "ground_plane"
    res = est.update(wall, INTR)
    assert res.source == "held" and res.scale == pytest.approx(4.0, rel=0.01)
    # too few finite points is a failure too
    res = est.update(np.full_like(wall, np.nan), INTR)
    assert res.source == "held" and res.scale == pytest.approx(4.0, rel=0.01)
    est.reset()
    assert est.update(wall, INTR).source == "initial"


def test_tilt_limit():
    steep = render_ground(pitch_deg=45.0) / 4.0
    assert GroundPlaneScale(HEIGHT, max_tilt_deg=30.0).update(steep, INTR).source == "initial"
    res = GroundPlaneScale(HEIGHT, max_tilt_deg=50.0).update(steep, INTR)
    assert res.source == "ground_plane" and res.scale == pytest.approx(4.0, rel=0.01)
    # the same camera described by its own up vector passes a tight limit
    p = math.radians(45.0)
    res = GroundPlaneScale(HEIGHT, up_optical=(0.0, -math.cos(p), -math.sin(p)), max_tilt_deg=5.0).update(
        steep, INTR
    )
    assert res.source == "ground_plane" and res.scale == pytest.approx(4.0, rel=0.01)


def test_plane_above_the_camera_is_not_ground():
    # ceiling: with "up" flipped, the rendered ground lies on the up side of the camera
    res = GroundPlaneScale(HEIGHT, up_optical=(0.0, 1.0, 0.0)).update(render_ground() / 4.0, INTR)
    assert res.source == "initial"


def test_smoothing_in_log_space():
    ground = render_ground()
    est = GroundPlaneScale(HEIGHT, smoothing=0.3)
    first = est.update(ground / 4.0, INTR)
    assert first.scale == pytest.approx(4.0, rel=1e-3)  # first success taken directly
    second = est.update(ground / 2.0, INTR)
    assert second.scale == pytest.approx(math.exp(0.7 * math.log(4.0) + 0.3 * math.log(2.0)), rel=1e-3)
    third = est.update(ground / 2.0, INTR)
    assert third.scale == pytest.approx(
        math.exp(0.7 * math.log(second.scale) + 0.3 * math.log(2.0)), rel=1e-3
    )
    est.reset()
    assert est.update(ground / 2.0, INTR).scale == pytest.approx(2.0, rel=1e-3)
    assert GroundPlaneScale(HEIGHT, smoothing=1.0).update(ground / 3.0, INTR).scale == pytest.approx(
        3.0, rel=1e-3
    )


def test_deterministic_for_a_seed():
    depth = ground_with_obstacle_and_holes()
    a = [GroundPlaneScale(HEIGHT, seed=7).update(depth, INTR) for _ in range(2)]
    assert a[0] == a[1]


def test_ground_plane_rejects_bad_parameters_and_sizes():
    bad = (
        {"camera_height": 0.0},
        {"camera_height": 1.0, "smoothing": 0.0},
        {"camera_height": 1.0, "roi_top": 1.0},
        {"camera_height": 1.0, "up_optical": (0, 0, 0)},
        {"camera_height": 1.0, "max_tilt_deg": 90},
    )
    for kwargs in bad:
        with pytest.raises(ValueError):
            GroundPlaneScale(**kwargs)
    with pytest.raises(ValueError):
        GroundPlaneScale(HEIGHT).update(render_ground()[:, :80], INTR)


def test_fixed_metric_and_factory():
    depth = render_ground()
    assert FixedScale(2.5).update(depth, INTR) == ScaleResult(2.5, "fixed")
    assert math.isnan(FixedScale(2.5).update(depth, INTR).inlier_fraction)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            FixedScale(bad)
    res = MetricScale().update(depth, INTR)
    assert (res.scale, res.source) == (1.0, "metric")
    assert isinstance(make_scale_estimator("metric"), MetricScale)
    assert make_scale_estimator("fixed", scale=3.0).update(depth, INTR).scale == 3.0
    gp = make_scale_estimator("ground_plane", camera_height=HEIGHT, smoothing=0.5)
    assert isinstance(gp, GroundPlaneScale) and gp.smoothing == 0.5
    assert gp.update(depth / 4.0, INTR).scale == pytest.approx(4.0, rel=0.01)
    with pytest.raises(ValueError) as info:
        make_scale_estimator("lidar")
    assert all(m in str(info.value) for m in ("fixed", "ground_plane", "metric", "lidar"))
