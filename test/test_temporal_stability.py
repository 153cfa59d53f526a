"""Temporal stability in ``bore-depth eval``: how much predicted depth changes between consecutive
frames of a static scene (replay.stability), per camera in metrics.json and the report.

The warp itself against analytic scenes with a known camera motion; then real rosbag2 files (the
scene, rig and motion of test_replay_eval) through real eval runs: the real network at a tiny
input, and an oracle engine that predicts the ground truth.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from bore_depth_ros.bag.messages import BAG
from bore_depth_ros.bag.writer import BagWriter
from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.core.transforms import Transform, rotation_z
from bore_depth_ros.engine import DepthEngine, EngineConfig, EngineOutput
from bore_depth_ros.models import get_model_info
from bore_depth_ros.replay import EvalConfig, evaluate
from bore_depth_ros.replay.stability import (
    NO_POSE,
    SCALE_CHANGE,
    TF_WARP,
    StabilityTracker,
    frame_change,
    static_mask,
    warp_change,
)
from bore_depth_ros.sim.procedural import Scene
from bore_depth_ros.sim.rig import BASE_FRAME, ODOM_FRAME, CameraSpec, camera_topics
from test_replay_eval import CAMERAS, DT, T0, base_pose, render_camera

N_FRAMES = 4
W, H = 96, 64
CAM = CameraSpec("front", 0.0, 70.0, position=(1.6, 0.0, 1.5))
INTR = CAM.intrinsics(W, H)


# ----------------------------------------------------------------------------- the warp
def plane_depth(pose: Transform, intr: Intrinsics, planes) -> np.ndarray:
    """Optical depth (NaN where nothing is hit) of a camera at ``pose`` (odom <- optical) seeing
    the planes n.X + d = 0 (odom frame, z up)."""
    v, u = np.mgrid[0 : intr.height, 0 : intr.width].astype(np.float64)
    rays = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], -1)
    d = rays @ pose.rotation.T
    depth = np.full(u.shape, np.inf)
    for n, off in planes:
        n = np.asarray(n, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = -(n @ pose.translation + off) / (d @ n)
        depth = np.where((lam > 0) & (lam < depth), lam, depth)
    return np.where(np.isfinite(depth), depth, np.nan).astype(np.float32)


GROUND = ((0.0, 0.0, 1.0), 0.0)  # z = 0
WALL = ((1.0, 0.0, 0.0), -14.0)  # x = 14 m ahead


def cam_pose(x: float, yaw: float = 0.0) -> Transform:
    return Transform(rotation_z(yaw), np.array([x, 0.0, 0.0])) @ CAM.base_from_optical()


@pytest.mark.parametrize("yaw", [0.0, 0.05])
def test_a_plane_seen_from_a_camera_moving_forward_warps_to_zero(yaw):
    prev_pose, cur_pose = cam_pose(0.0), cam_pose(0.5, yaw)  # 0.5 m forward (and a small turn)
    cur_from_prev = cur_pose.inverse() @ prev_pose
    for planes in ([GROUND], [GROUND, WALL]):
        prev, cur = plane_depth(prev_pose, INTR, planes), plane_depth(cur_pose, INTR, planes)
        value, n = frame_change(prev, cur, INTR, INTR, cur_from_prev)
        assert n > 0.3 * W * H and value < 2e-3, (planes, value, n)
    # without the ego motion the wall seems to come 0.5 m closer: a change of 0.5 / 11.9 (the
    # camera sits 1.6 m ahead of base_link), which is what a depth that does not move would score
    wall_prev, wall_cur = plane_depth(prev_pose, INTR, [WALL]), plane_depth(cur_pose, INTR, [WALL])
    if yaw == 0.0:
        value, _ = frame_change(wall_prev, wall_cur, INTR, INTR, Transform.identity())
        assert value == pytest.approx(0.5 / (14.0 - 1.6 - 0.5), rel=1e-3)
    # a prediction that halves the depth of one frame is caught in full
    value, _ = frame_change(wall_prev, 0.5 * wall_cur, INTR, INTR, cur_from_prev)
    assert value == pytest.approx(1.0, rel=1e-3)


def test_moving_objects_are_left_out_where_the_ground_truth_shows_them():
    prev_pose = cur_pose = cam_pose(0.0)  # the camera stands still, a car crosses
    gt_prev = plane_depth(prev_pose, INTR, [WALL])
    gt_cur = gt_prev.copy()
    gt_prev[20:40, 20:40] = 5.0
    gt_cur[20:40, 30:50] = 5.0
    ident = cur_pose.inverse() @ prev_pose
    mask = static_mask(gt_prev, gt_cur, INTR, INTR, ident)
    # where the car was and where it went; the part it covers in both frames has the same depth
    # and cannot be told from a static surface (nor does it change the figure)
    assert not mask[20:40, 20:30].any() and not mask[20:40, 40:50].any() and mask[20:40, 30:40].all()
    assert mask[:20].all() and mask[40:].all() and mask[:, :20].all() and mask[:, 50:].all()
    # the ground truth used as the prediction: exactly stable once the car is left out
    _, rel = warp_change(gt_prev, gt_cur, INTR, INTR, ident)
    assert rel.max() > 0.5
    _, rel = warp_change(gt_prev, gt_cur, INTR, INTR, ident, mask_prev=mask)
    assert rel.size > 0.8 * W * H and rel.max() < 1e-5  # float32 points


def test_only_what_the_current_camera_sees_is_compared():
    """Surfaces that go behind a nearer one are left out (the nearest point per pixel)."""
    cam = CAMERAS[1]  # looking sideways at the boxes along the street: much parallax
    scene = Scene.street(seed=0)
    _, gt_prev, intr = render_camera(scene, cam, T0)
    _, gt_cur, _ = render_camera(scene, cam, T0 + 3 * DT)
    cur_from_prev = (base_pose(T0 + 3 * DT) @ cam.base_from_optical()).inverse() @ (
        base_pose(T0) @ cam.base_from_optical()
    )
    _, seen = warp_change(gt_prev, gt_cur, intr, intr, cur_from_prev)
    _, every = warp_change(gt_prev, gt_cur, intr, intr, cur_from_prev, zbuffer=False)
    assert np.median(seen) < 1e-3 and np.median(every) < 1e-3
    assert np.mean(seen > 0.05) < 0.7 * np.mean(every > 0.05)


def test_the_tracker_falls_back_to_the_change_of_the_median_scale_without_tf():
    t = StabilityTracker()
    depth = plane_depth(cam_pose(0.0), INTR, [GROUND])
    for i, s in enumerate((2.0, 2.2, 2.2, 1.1)):
        t.add(T0 + i * DT, depth, INTR, None, scale=s)
    t.add(T0, depth, INTR, None, scale=5.0)  # time jumps back (a restart): no pair across it
    t.add(T0 + DT, depth, INTR, None, scale=5.5)
    out = t.summary()
    assert out["method"] == SCALE_CHANGE and out["pairs"] == 4
    np.testing.assert_allclose(out["value"], [0.1, 0.0, 0.5, 0.1], atol=1e-12)
    assert out["median"] == pytest.approx(0.1) and out["skipped"] == {f"{TF_WARP}:{NO_POSE}": 4}
    assert out["t"][0] == pytest.approx((T0 + DT) * 1e-9)
    assert out["scale_change"]["pairs"] == 4 and out["moving_excluded"] == "none"
    # with poses the warp is the method; a frame without its pose costs its pairs only
    t = StabilityTracker()
    for i, pose in enumerate((cam_pose(0.0), cam_pose(0.5), None, cam_pose(1.5), cam_pose(2.0))):
        t.add(T0 + i * DT, depth, INTR, pose, scale=1.0, gt=depth, dense_gt=True)
    out = t.summary()
    assert out["method"] == TF_WARP and out["pairs"] == 2 and out["median"] < 2e-3
    assert out["skipped"] == {f"{TF_WARP}:{NO_POSE}": 2} and out["moving_excluded"] == "ground_truth"
    assert out["scale_change"]["median"] == 0.0 and out["scale_change"]["pairs"] == 4


# ----------------------------------------------------------------------------- real bags
def write_bag(path, moving: bool = True, tf: bool = True) -> dict[bytes, np.ndarray]:
    """Two cameras, N_FRAMES frames, depth ground truth; the vehicle drives (test_replay_eval's
    motion) or stands still; /tf with its pose, or /tf_static only. Returns image bytes -> GT."""
    scene = Scene.street(seed=0)
    truth = {}
    with BagWriter(path, "mcap") as bag:
        static = [
            BAG.transform_stamped(BAG.header(T0 - DT, BASE_FRAME), c.optical_frame, c.base_from_optical())
            for c in CAMERAS
        ]
        bag.write("/tf_static", BAG.tf_message(static), T0 - DT)
        for i in range(N_FRAMES):
            t = T0 + i * DT
            pose_t = t if moving else T0
            if tf:
                msg = BAG.transform_stamped(BAG.header(t, ODOM_FRAME), BASE_FRAME, base_pose(pose_t))
                bag.write("/tf", BAG.tf_message([msg]), t)
            for cam in CAMERAS:
                rgb, depth, intr = render_camera(scene, cam, pose_t)
                topics = camera_topics(cam.name)
                header = BAG.header(t, cam.optical_frame)
                bag.write(topics["camera_info"], BAG.camera_info(header, intr), t + 1)
                bag.write(topics["image"], BAG.image(header, rgb, "rgb8"), t + 1)
                bag.write(topics["depth_gt"], BAG.image(header, depth, "32FC1"), t + 1)
                truth[rgb.tobytes()] = depth
    return truth


class OracleEngine:
    """Predicts the ground truth of the image it is given (sky: 1000 m), as a relative model."""

    def __init__(self, truth: dict[bytes, np.ndarray]):
        self.truth = truth
        self.info = get_model_info("bore_depth")
        self.config = SimpleNamespace(model="oracle", batch=1)
        self.backend = SimpleNamespace(name="oracle")
        self.weights_source = "ground truth"

    def describe(self) -> dict[str, str]:
        return {"model": "oracle", "backend": "oracle"}

    def infer(self, images, intrinsics=None, extrinsics=None) -> EngineOutput:
        depth = np.stack([self.truth[np.ascontiguousarray(rgb).tobytes()] for rgb in images])
        return EngineOutput(np.where(np.isfinite(depth), depth, 1000.0).astype(np.float32), None, 0.1, 0.1)


@pytest.fixture(scope="module")
def engine(structured_weights):
    return DepthEngine(
        EngineConfig(weights=structured_weights, input_height=64, input_width=96, backend="onnxruntime")
    )


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("stability")
    out = {}
    for name, moving, tf in (("drive", True, True), ("parked", False, True), ("no_tf", True, False)):
        out[name] = (root / name, write_bag(root / name, moving, tf))
    return out


def run_eval(bag, engine, out, **kw):
    cfg = EvalConfig(
        bag=str(bag), input_height=64, input_width=96, report_dir=str(out), panels_per_camera=0, **kw
    )
    return evaluate(cfg, progress=False, engine=engine)


def test_every_camera_reports_its_stability_in_metrics_and_report(bags, engine, tmp_path):
    res = run_eval(bags["drive"][0], engine, tmp_path / "report", scale_mode="ground_plane")
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    for c, js in zip(res.cameras, saved["cameras"]):
        s = c.temporal_stability
        assert s["method"] == TF_WARP and s["pairs"] == N_FRAMES - 1 and s["skipped"] == {}
        assert all(math.isfinite(s[k]) and s[k] >= 0 for k in ("median", "p90", "mean"))
        assert s["p90"] >= s["median"] and len(s["value"]) == len(s["t"]) == N_FRAMES - 1
        assert s["moving_excluded"] == "ground_truth" and s["pixels_per_pair"] > 0.2 * W * H
        assert math.isfinite(s["scale_change"]["median"]) and s["scale_change"]["pairs"] == N_FRAMES - 1
        assert js["temporal_stability"]["median"] == pytest.approx(s["median"])
    o = saved["overall"]["temporal_stability"]
    assert o["method"] == TF_WARP and o["cameras"] == 2 and o["pairs"] == 2 * (N_FRAMES - 1)
    assert o["median"] == pytest.approx(np.mean([c.temporal_stability["median"] for c in res.cameras]))
    assert res.timing["stability_ms"] > 0
    report = tmp_path / "report"
    assert (report / "temporal_stability.png").stat().st_size > 0
    md = (report / "report.md").read_text()
    assert "## Temporal stability" in md and "![temporal stability](temporal_stability.png)" in md
    assert "| /cameras/front | tf_warp | 3 |" in md
    assert "<img src='temporal_stability.png'" in (report / "report.html").read_text()


def test_a_parked_vehicle_with_the_same_prediction_every_frame_scores_zero(bags, engine, tmp_path):
    res = run_eval(bags["parked"][0], engine, tmp_path / "report")  # fixed scale: the same output
    for c in res.cameras:
        s = c.temporal_stability
        assert s["method"] == TF_WARP and s["pairs"] == N_FRAMES - 1
        assert s["max"] < 1e-6 and s["scale_change"]["max"] < 1e-6


def test_the_ground_truth_as_prediction_is_stable_through_the_bags_tf(bags, tmp_path):
    bag, truth = bags["drive"]
    res = run_eval(bag, OracleEngine(truth), tmp_path / "report")
    for c in res.cameras:
        assert c.metric["abs_rel"] < 1e-6  # the oracle really is the ground truth
        s = c.temporal_stability
        assert s["method"] == TF_WARP and s["pairs"] == N_FRAMES - 1 and s["max"] < 2e-3, s
        assert s["scale_change"]["max"] < 1e-6


def test_without_tf_ego_motion_the_scale_change_is_reported(bags, engine, tmp_path):
    bag, truth = bags["no_tf"]
    res = run_eval(bag, engine, tmp_path / "report")
    for c in res.cameras:
        s = c.temporal_stability
        assert s["method"] == SCALE_CHANGE and s["pairs"] == N_FRAMES - 1
        assert all(math.isfinite(v) and v >= 0 for v in s["value"])
        assert s["median"] == pytest.approx(s["scale_change"]["median"])
        assert s["skipped"] == {f"{TF_WARP}:{NO_POSE}": N_FRAMES - 1}
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| /cameras/left | scale_change | 3 |" in md
    assert (
        json.loads((tmp_path / "report" / "metrics.json").read_text())["overall"]["temporal_stability"][
            "method"
        ]
        == SCALE_CHANGE
    )
    oracle = run_eval(bag, OracleEngine(truth), tmp_path / "oracle")
    assert all(c.temporal_stability["max"] < 1e-6 for c in oracle.cameras)
