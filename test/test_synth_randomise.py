"""``bore-depth synth --randomise``: deterministic draws, the bag's TF and camera_info describe the
camera that rendered, ground truth matches the geometry, periodic wall textures, and the default
path unchanged. Real pybullet renders and real bags read back with the package's bag reader."""

import argparse
import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from bore_depth_ros.bag.reader import first_message, open_bag, read_tf
from bore_depth_ros.core import messages as msgs
from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.core.transforms import OPTICAL_IN_BODY, Transform, rotation_y
from bore_depth_ros.replay.fleet import is_bag
from bore_depth_ros.sim.assets import periodic_texture
from bore_depth_ros.sim.pybullet_scene import GROUND, PybulletWorld
from bore_depth_ros.sim.randomise import PARAMS_FILE, RANGES, draw
from bore_depth_ros.sim.recording import (
    RecordingConfig,
    add_synth_arguments,
    ego_pose,
    record,
    rig_for,
    run_synth,
    scene_for,
)
from bore_depth_ros.sim.rig import BASE_FRAME, MONO_RIG, camera_topics, rig_by_name

SMALL = dict(rig="mono", frames=2, width=96, height=64, lidar=False)
FRONT = camera_topics("front")


def bag_digest(path) -> str:
    """sha256 over every message's topic, log time and CDR bytes."""
    h = hashlib.sha256()
    with open_bag(path) as reader:
        for conn, t, raw in reader.messages():
            h.update(conn.topic.encode() + str(t).encode() + bytes(raw))
    return h.hexdigest()


@pytest.fixture(scope="module")
def randomised_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("rand") / "bag"
    summary = record(path, RecordingConfig(seed=1234, randomise=True, **SMALL), progress=False)
    return path, summary


def test_draws_are_deterministic_in_range_and_differ_between_seeds():
    assert draw(1000) == draw(1000)
    params = [draw(s) for s in range(1000, 1020)]
    for name, (lo, hi) in RANGES.items():
        values = [getattr(p, name) for p in params]
        assert all(lo <= v <= hi for v in values), name
        assert len(set(values)) == len(values), f"{name} repeats between seeds"
    # a given density wins and changes nothing else
    given = draw(1000, density=0.25)
    assert given.density == 0.25 and given.density_given
    assert replace(given, density=params[0].density, density_given=False) == params[0]


def test_same_seed_same_bag_and_params_file(randomised_bag, tmp_path):
    path, summary = randomised_bag
    again = tmp_path / "again"
    summary2 = record(again, RecordingConfig(seed=1234, randomise=True, **SMALL), progress=False)
    assert summary.params == summary2.params == draw(1234)
    assert bag_digest(path) == bag_digest(again)
    assert json.loads((path / PARAMS_FILE).read_text()) == json.loads((again / PARAMS_FILE).read_text())
    assert is_bag(path)  # the params file does not hide the bag
    other = tmp_path / "other"
    record(other, RecordingConfig(seed=1235, randomise=True, **SMALL), progress=False)
    assert bag_digest(other) != bag_digest(path)


def test_tf_and_camera_info_describe_the_rendered_camera_and_ground_depth_matches(randomised_bag):
    path, summary = randomised_bag
    p = summary.params
    saved = json.loads((path / PARAMS_FILE).read_text())
    assert saved["camera_height_offset_m"] == p.camera_height_offset_m
    assert saved["road_width"] == p.road_width
    nominal = MONO_RIG[0]
    with open_bag(path) as reader:
        tf = read_tf(reader)
        info = first_message(reader, FRONT["camera_info"])
        depth = msgs.image_array(first_message(reader, FRONT["depth_gt"]))
        labels = msgs.image_array(first_message(reader, FRONT["semantic"]))
    base_from_opt = tf.lookup_transform(BASE_FRAME, info.header.frame_id)
    expected_height = nominal.position[2] + p.camera_height_offset_m
    assert base_from_opt.translation[2] == pytest.approx(expected_height, abs=1e-9)
    optical_z = base_from_opt.rotation[:, 2]  # viewing direction in base_link
    pitch_down = np.rad2deg(np.arcsin(-optical_z[2]))
    assert pitch_down == pytest.approx(nominal.pitch_deg + p.camera_pitch_offset_deg, abs=1e-6)
    expected_rot = rotation_y(np.deg2rad(nominal.pitch_deg + p.camera_pitch_offset_deg)) @ OPTICAL_IN_BODY
    np.testing.assert_allclose(base_from_opt.rotation, expected_rot, atol=1e-9)

    # the flat ground (z = 0 in base_link: the drive is planar) against the ray-plane intersection
    intr = msgs.intrinsics(info)
    v, u = np.mgrid[0 : intr.height, 0 : intr.width].astype(np.float64)
    rays = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], -1)
    dz = rays @ base_from_opt.rotation[2]  # base z change per unit optical depth
    with np.errstate(divide="ignore"):
        plane = np.where(dz < 0, -base_from_opt.translation[2] / dz, np.inf)
    ground = labels == GROUND
    inner = ground.copy()  # away from object outlines (one-pixel silhouette differences)
    inner[1:-1, 1:-1] &= ground[:-2, 1:-1] & ground[2:, 1:-1] & ground[1:-1, :-2] & ground[1:-1, 2:]
    near = inner & (plane < 40.0)
    assert near.sum() > 300
    rel = np.abs(depth[near] - plane[near]) / plane[near]
    assert np.median(rel) < 0.002 and rel.max() < 0.01, (np.median(rel), rel.max())


def test_without_randomise_the_scene_is_the_plain_render(tmp_path):
    """The default path renders what PybulletWorld, the named rig and ego_pose give directly (the
    recording code before --randomise), with no params file."""
    config = RecordingConfig(seed=7, **SMALL)
    path = tmp_path / "plain"
    summary = record(path, config, progress=False)
    assert summary.params is None and not (path / PARAMS_FILE).exists()
    assert rig_for(config) == rig_by_name("mono")
    cam = rig_by_name("mono")[0]
    intr = cam.intrinsics(config.width, config.height)
    with PybulletWorld(scene_for(config)) as world:
        direct = [
            world.render_camera(ego_pose(i / config.rate_hz, config) @ cam.base_from_optical(), intr)
            for i in range(config.frames)
        ]
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if c.topic in (FRONT["image"], FRONT["depth_gt"])]
        got = {FRONT["image"]: [], FRONT["depth_gt"]: []}
        for conn, _, raw in reader.messages(connections=conns):
            got[conn.topic].append(msgs.image_array(reader.deserialize(raw, conn.msgtype)))
    for i, (rgb, depth, _) in enumerate(direct):
        np.testing.assert_array_equal(got[FRONT["image"]][i], rgb)
        np.testing.assert_array_equal(got[FRONT["depth_gt"]][i], depth)


def test_cli_density_given_wins_and_summary_line(tmp_path, capsys):
    parser = add_synth_arguments(argparse.ArgumentParser())
    args = parser.parse_args(
        [str(tmp_path / "b"), "--rig", "mono", "--frames", "1", "--width", "96", "--height", "64"]
        + ["--no-lidar", "--seed", "1001", "--randomise", "--density", "0.4"]
    )
    assert run_synth(args) == 0
    saved = json.loads((tmp_path / "b" / PARAMS_FILE).read_text())
    assert saved["density"] == 0.4 and saved["density_given"] is True
    assert saved["road_width"] == draw(1001).road_width
    assert "randomised (seed 1001): density 0.40 (given)" in capsys.readouterr().out


def test_striped_wall_is_periodic_in_the_image_and_smooth_in_depth():
    intr = Intrinsics(fx=80.0, fy=80.0, cx=47.5, cy=31.5, width=96, height=64)
    cam = Transform(OPTICAL_IN_BODY, np.array([0.0, 0.0, 2.0]))  # level, looking along +x
    with PybulletWorld(None) as world:
        tex = world.load_texture(periodic_texture(np.random.default_rng(0), kind="stripes"))
        # a wall 6 m ahead, facing the camera, filling the view
        world.add_box(
            (6.5, 0.0, 2.0), (0.5, 20.0, 10.0), rgba=(1, 1, 1, 1), texture=tex, texture_tile=(4.0, 4.0)
        )
        rgb, depth, _ = world.render_camera(cam, intr)
    assert np.isfinite(depth).all()
    np.testing.assert_allclose(depth, 6.0, atol=0.01)  # a plane facing the camera: constant depth
    gray = rgb.astype(np.float64).mean(-1)
    assert gray.max() - gray.min() > 120  # high contrast
    # strong periodicity: one non-DC frequency carries most of the 2-D spectrum's energy
    spec = np.abs(np.fft.fft2(gray - gray.mean())) ** 2
    assert spec.max() / spec.sum() > 0.1
    # in a street: periodic textures change the image, never the geometry (their own stream)
    config = RecordingConfig(seed=3, **SMALL)
    cam = rig_by_name("mono")[0]
    pose = ego_pose(0.0, config) @ cam.base_from_optical()
    out = []
    for share in (0.0, 1.0):
        with PybulletWorld(replace(scene_for(config), periodic_share=share)) as world:
            out.append(world.render_camera(pose, cam.intrinsics(96, 64)))
    (rgb0, depth0, labels0), (rgb1, depth1, labels1) = out
    np.testing.assert_array_equal(depth0, depth1)
    np.testing.assert_array_equal(labels0, labels1)
    walls = labels0 >= 2  # buildings and vehicles
    assert walls.sum() > 200
    assert np.abs(rgb0.astype(int) - rgb1.astype(int)).max(-1)[walls].mean() > 20
