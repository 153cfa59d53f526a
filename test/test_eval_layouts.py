"""``bore-depth eval`` on bags laid out like robots record them, not like ``synth``: compressed
images only (image_transport's ``<camera>/image/compressed`` and drivers' own names), camera
names such as ``CAM_FRONT``, camera_info on a topic that is not the image's sibling, LiDAR as the
only ground truth on a topic of any name and in any TF frame.

Real rosbag2 files (the project's BagWriter), the scene and motion of test_replay_eval, real eval
runs with the real network at a tiny input.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from bore_depth_ros.bag.messages import BAG
from bore_depth_ros.bag.reader import FrameSync, discover_cameras, open_bag
from bore_depth_ros.bag.writer import BagWriter
from bore_depth_ros.cli import eval as eval_cli
from bore_depth_ros.core import messages as msgs
from bore_depth_ros.core.pointcloud import backproject, pack_points
from bore_depth_ros.core.transforms import Transform, rotation_z
from bore_depth_ros.engine import DepthEngine, EngineConfig
from bore_depth_ros.replay import EvalConfig, evaluate
from bore_depth_ros.sim.procedural import Scene
from bore_depth_ros.sim.rig import BASE_FRAME, ODOM_FRAME, CameraSpec
from test_replay_eval import DT, T0, base_pose, render_camera

N_FRAMES = 3
CLOUD_DELAY = 20_000_000  # clouds are stamped 20 ms after the images


@dataclass
class Cam:
    """One camera of a test bag: where its messages go and how they are encoded."""

    spec: CameraSpec
    image: str  # image topic
    info: str  # camera_info topic
    codec: str = ""  # "": sensor_msgs/Image rgb8; "jpeg" or "png": CompressedImage
    gt: str | None = None  # depth ground-truth topic
    gt_encoding: str = "32FC1"  # 32FC1 or 16UC1 Image; compressed16UC1 / compressed32FC1: compressedDepth


@dataclass
class Cloud:
    """A PointCloud2 topic carrying every camera's depth as points in ``frame``."""

    topic: str
    frame: str
    base_from_cloud: Transform


def depth_mm(depth: np.ndarray) -> np.ndarray:
    """16UC1 millimetres of metric depth, 0 where invalid (as compressed_depth_image_transport)."""
    valid = np.isfinite(depth) & (depth > 0)
    return np.where(valid, np.clip(np.round(depth * 1000.0), 0, 65535), 0).astype(np.uint16)


def gt_message(header, depth: np.ndarray, encoding: str):
    if encoding == "32FC1":
        return BAG.image(header, depth, "32FC1")
    if encoding == "16UC1":
        return BAG.image(header, depth_mm(depth), "16UC1")
    return BAG.compressed_depth(header, depth, encoding.removeprefix("compressed"))


def image_message(header, rgb: np.ndarray, codec: str, damage: str = ""):
    """The camera image as Image or CompressedImage; ``damage``: "truncate" or "empty"."""
    if not codec:
        return BAG.image(header, rgb, "rgb8")
    msg = BAG.compressed_image(header, rgb, codec)
    if damage:
        data = np.asarray(msg.data)
        data = data[: len(data) // 2] if damage == "truncate" else data[:0]
        msg = BAG.new(msgs.COMPRESSED_IMAGE, header=header, format=msg.format, data=data)
    return msg


def write_layout_bag(path, cams: list[Cam], clouds: tuple[Cloud, ...] = (), frames=N_FRAMES, damaged=None):
    """A bag of ``frames`` frames of ``cams`` (+ /tf, /tf_static, /clock and ``clouds``);
    ``damaged``: {(camera index, frame index): "truncate" | "empty"} compressed images.
    Returns {(camera index, stamp): rendered depth}."""
    scene = Scene.street(seed=0)
    damaged = damaged or {}
    truth = {}
    with BagWriter(path) as bag:
        t_static = T0 - 3 * DT
        static = [
            BAG.transform_stamped(
                BAG.header(t_static, BASE_FRAME), c.spec.optical_frame, c.spec.base_from_optical()
            )
            for c in cams
        ]
        static += [
            BAG.transform_stamped(BAG.header(t_static, BASE_FRAME), cl.frame, cl.base_from_cloud)
            for cl in clouds
        ]
        bag.write("/tf_static", BAG.tf_message(static), t_static)
        for t in range(T0 - 2 * DT, T0 + (frames + 1) * DT, DT // 2):
            tf = BAG.transform_stamped(BAG.header(t, ODOM_FRAME), BASE_FRAME, base_pose(t))
            bag.write("/tf", BAG.tf_message([tf]), t + 1_000_000)
        for i in range(frames):
            t = T0 + i * DT
            bag.write("/clock", BAG.clock(t), t)
            views = []
            for k, cam in enumerate(cams):
                rgb, depth, intr = render_camera(scene, cam.spec, t)
                header = BAG.header(t, cam.spec.optical_frame)
                log_t = t + 5_000_000
                bag.write(cam.info, BAG.camera_info(header, intr), log_t)
                bag.write(cam.image, image_message(header, rgb, cam.codec, damaged.get((k, i), "")), log_t)
                if cam.gt:
                    bag.write(cam.gt, gt_message(header, depth, cam.gt_encoding), log_t)
                views.append((cam.spec, depth, intr))
                truth[(k, t)] = depth
            t_cloud = t + CLOUD_DELAY
            for cl in clouds:
                xyz = cloud_points(views, t, t_cloud, cl.base_from_cloud)
                cloud = BAG.pointcloud(BAG.header(t_cloud, cl.frame), pack_points(xyz[None]))
                bag.write(cl.topic, cloud, t_cloud + 2_000_000)
    return truth


def cloud_points(views, t_img: int, t_cloud: int, base_from_cloud: Transform) -> np.ndarray:
    """The cameras' depth at ``t_img`` as points in the cloud's frame at ``t_cloud`` (static world)."""
    cloud_from_odom = (base_pose(t_cloud) @ base_from_cloud).inverse()
    pts = []
    for spec, depth, intr in views:
        xyz = backproject(depth, intr).reshape(-1, 3).astype(np.float64)
        xyz = xyz[np.isfinite(xyz).all(axis=1)]
        pts.append((cloud_from_odom @ base_pose(t_img) @ spec.base_from_optical()).apply(xyz))
    return np.concatenate(pts).astype(np.float32)


# nuScenes-style and driver-style names; frames unknown to sim.rig
CAM_FRONT = CameraSpec("CAM_FRONT", 0.0, 70.0, position=(1.6, 0.0, 1.5))
CAM_LEFT = CameraSpec("cam_left", 60.0, 70.0, position=(1.5, 0.5, 1.5))
LIDAR_TOP = Cloud("/sensors/lidar_top", "lidar_top", Transform(rotation_z(-0.4), np.array([0.4, -0.2, 1.9])))
RADAR = Cloud("/radar/points", "radar_front", Transform(rotation_z(0.2), np.array([2.0, 0.0, 0.5])))


@pytest.fixture(scope="module")
def engine(structured_weights):
    return DepthEngine(
        EngineConfig(weights=structured_weights, input_height=64, input_width=96, backend="onnxruntime")
    )


@pytest.fixture(scope="module")
def compressed_lidar_bag(tmp_path_factory):
    """Compressed images only (JPEG under a driver's name, PNG after image_transport), no dense
    depth, one PointCloud2 that is not /lidar/points, in a frame of its own."""
    path = tmp_path_factory.mktemp("layouts") / "compressed_lidar"
    cams = [
        Cam(CAM_FRONT, "/CAM_FRONT/image_rect_compressed", "/CAM_FRONT/camera_info", "jpeg"),
        Cam(CAM_LEFT, "/rig/cam_left/raw/compressed", "/rig/cam_left/camera_info", "png"),
    ]
    write_layout_bag(path, cams, (LIDAR_TOP,))
    return path


@pytest.fixture(scope="module")
def non_sibling_bag(tmp_path_factory):
    """A raw camera whose camera_info lives elsewhere; two PointCloud2 topics, neither /lidar/points."""
    path = tmp_path_factory.mktemp("layouts") / "non_sibling"
    write_layout_bag(path, [Cam(CAM_FRONT, "/rig/cam_front/raw", "/calib/cam_front")], (LIDAR_TOP, RADAR))
    return path


def parse(argv):
    p = argparse.ArgumentParser()
    eval_cli.add_arguments(p)
    return p.parse_args(argv)


def test_compressed_only_lidar_only_bag_with_unusual_names_evaluates(compressed_lidar_bag, engine, tmp_path):
    report = tmp_path / "report"
    out_bag = tmp_path / "out"
    cfg = EvalConfig(
        bag=str(compressed_lidar_bag),
        input_height=64,
        input_width=96,
        scale_mode="median",
        report_dir=str(report),
        output_bag=str(out_bag),
        panels_per_camera=1,
    )
    res = evaluate(cfg, progress=False, engine=engine)
    assert res.frames["evaluated"] == 2 * N_FRAMES and res.drops == {}, res.drop_details
    assert [c.namespace for c in res.cameras] == ["/CAM_FRONT", "/rig/cam_left"]
    want = {
        "/CAM_FRONT": ("/CAM_FRONT/image_rect_compressed", "/CAM_FRONT/camera_info", "jpeg"),
        "/rig/cam_left": ("/rig/cam_left/raw/compressed", "/rig/cam_left/camera_info", "png"),
    }
    for c in res.cameras:
        image, info, codec = want[c.namespace]
        assert (c.image_topic, c.camera_info_topic, c.gt_topic, c.gt_kind) == (
            image,
            info,
            "/sensors/lidar_top",
            "lidar",
        )
        assert c.image_type == msgs.COMPRESSED_IMAGE and codec in c.image_encoding
        assert c.frames == N_FRAMES and c.boundary is None and c.scale["sources"] == {"gt_median": N_FRAMES}
        # the points of the cloud's own frame reach the image through TF: the oracle scale makes
        # metric and median-scaled agree, and the untrained network is still roughly right
        assert math.isfinite(c.median["abs_rel"]) and c.median["abs_rel"] < 0.6
        assert sum(b["pixels"] for b in c.distance_bins) > 100
    assert any("/sensors/lidar_top" in n and "only PointCloud2" in n for n in res.notes), res.notes

    saved = json.loads((report / "metrics.json").read_text())
    for c in saved["cameras"]:
        assert c["camera_info_topic"] == want[c["namespace"]][1] and c["gt_topic"] == "/sensors/lidar_top"
        assert c["gt_kind"] == "lidar" and c["image_topic"] == want[c["namespace"]][0]
    md = (report / "report.md").read_text()
    topics = md.split("## Topics", 1)[1].split("##", 1)[0]
    for image, info, _ in want.values():
        row = next(line for line in topics.splitlines() if image in line)
        assert info in row and "/sensors/lidar_top" in row and "LiDAR" in row and "CompressedImage" in row
    assert "<h2>Topics</h2>" in (report / "report.html").read_text()

    # the output bag has the node's topics per camera and the compressed inputs as recorded
    with open_bag(out_bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert types["/CAM_FRONT/image_rect_compressed"] == msgs.COMPRESSED_IMAGE
    assert types["/sensors/lidar_top"] == msgs.POINTCLOUD2
    for ns in want:
        assert counts[f"{ns}/depth/image"] == N_FRAMES and types[f"{ns}/depth/image"] == msgs.IMAGE


def test_one_cloud_for_every_camera_and_raw_streams_before_their_compressed_copies(tmp_path):
    path = tmp_path / "both"
    cams = [
        Cam(CAM_FRONT, "/cam/image_raw", "/cam/camera_info"),
        Cam(CAM_FRONT, "/cam/image_raw/compressed", "/cam/camera_info", "jpeg"),
        Cam(
            CAM_LEFT,
            "/left/image/compressed",
            "/left/camera_info",
            "png",
            "/left/depth_gt/image/compressedDepth",
            "compressed16UC1",
        ),
    ]
    write_layout_bag(path, cams, (LIDAR_TOP, RADAR), frames=1)
    with open_bag(path) as reader:
        found = discover_cameras(reader)
        # image_transport's compressed copy of /cam/image_raw is left out: the raw stream is used
        assert [(c.image, c.camera_info, c.depth_gt, c.gt_cloud) for c in found] == [
            ("/cam/image_raw", "/cam/camera_info", None, None),
            ("/left/image/compressed", "/left/camera_info", "/left/depth_gt/image/compressedDepth", None),
        ]
        assert found[1].compressed and found[1].encoding == "rgb8; png compressed bgr8"
        shared = discover_cameras(reader, gt_topics=["/radar/points"])
        assert [c.gt_cloud for c in shared] == ["/radar/points"] * 2 and shared[1].depth_gt is None
        with pytest.raises(ValueError, match="single ground-truth topic without --camera must be a"):
            discover_cameras(reader, gt_topics=["/left/depth_gt/image/compressedDepth"])
        # both streams explicitly: one camera namespace twice
        with pytest.raises(ValueError, match="share a camera namespace.*/cam/image_raw/compressed"):
            discover_cameras(reader, ["/cam/image_raw", "/cam/image_raw/compressed"])
        with pytest.raises(ValueError, match="compressed depth"):
            discover_cameras(
                reader, ["/left/depth_gt/image/compressedDepth"], info_topics=["/left/camera_info"]
            )
        with pytest.raises(
            ValueError, match="ground-truth topic /cam/image_raw is an Image of encoding 'rgb8'"
        ):
            discover_cameras(reader, ["/left/image/compressed"], ["/cam/image_raw"])
        with pytest.raises(ValueError, match="is a sensor_msgs/msg/CameraInfo: expected a depth image"):
            discover_cameras(reader, ["/left/image/compressed"], ["/cam/camera_info"])
        # two cameras may share one camera_info topic (a FrameSync role per camera)
        two = discover_cameras(
            reader, ["/cam/image_raw", "/left/image/compressed"], info_topics=["/cam/camera_info"] * 2
        )
        frames = list(FrameSync(reader, two))
        assert sorted(f.camera.namespace for f in frames) == ["/cam", "/left"]
        assert all(f.info_exact and f.camera_info.header.frame_id == CAM_FRONT.optical_frame for f in frames)


def test_camera_info_on_another_topic_and_a_cloud_in_any_frame(non_sibling_bag, engine, tmp_path, capsys):
    bag = str(non_sibling_bag)
    # nothing to auto-detect: the error names what the bag has and the options that help
    with pytest.raises(ValueError, match="no camera found") as e:
        evaluate(EvalConfig(bag=bag, report_dir=str(tmp_path / "r0")), progress=False, engine=engine)
    assert "/rig/cam_front/raw" in str(e.value) and "/calib/cam_front" in str(e.value)
    assert "--camera-info" in str(e.value)
    # the sibling is missing: a one-line CLI error, before any model is loaded
    report = tmp_path / "r1"
    assert (
        eval_cli.run(parse([bag, "--camera", "/rig/cam_front/raw", "--out", str(report), "--no-progress"]))
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no camera_info next to /rig/cam_front/raw" in err, err
    assert (
        "expected /rig/cam_front/camera_info" in err and "--camera-info" in err and "/calib/cam_front" in err
    )
    assert not report.exists()

    def run(*argv):
        args = parse([bag, "--input-height", "64", "--input-width", "96", "--no-progress", *argv])
        return evaluate(eval_cli.config_from_args(args), progress=False, engine=engine)

    # two clouds and no /lidar/points: eval names them and asks
    with pytest.raises(
        ValueError,
        match=r"several PointCloud2 topics: /radar/points, /sensors/lidar_top; "
        "choose one with --gt-topic",
    ):
        run(
            "--camera",
            "/rig/cam_front/raw",
            "--camera-info",
            "/calib/cam_front",
            "--out",
            str(tmp_path / "r2"),
        )
    with pytest.raises(ValueError, match="--camera-info needs one entry per --camera"):
        run("--camera-info", "/calib/cam_front", "--out", str(tmp_path / "r3"))
    with pytest.raises(
        ValueError, match="camera_info topic /radar/points is not a sensor_msgs/msg/CameraInfo"
    ):
        run("--camera", "/rig/cam_front/raw", "--camera-info", "/radar/points", "--out", str(tmp_path / "r4"))
    with pytest.raises(ValueError, match="--gt depth, but its ground-truth topic /sensors/lidar_top"):
        args = ["--camera", "/rig/cam_front/raw", "--camera-info", "/calib/cam_front"]
        run(*args, "--gt-topic", "/sensors/lidar_top", "--gt", "depth", "--out", str(tmp_path / "r5"))

    report = tmp_path / "report"
    res = run(
        "--camera",
        "/rig/cam_front/raw",
        "--camera-info",
        "/calib/cam_front",
        "--gt-topic",
        "/sensors/lidar_top",
        "--scale-mode",
        "median",
        "--out",
        str(report),
    )
    assert res.frames["evaluated"] == N_FRAMES and res.drops == {}, res.drop_details
    (c,) = res.cameras
    assert (c.namespace, c.image_topic, c.camera_info_topic, c.gt_kind, c.gt_topic) == (
        "/rig/cam_front",
        "/rig/cam_front/raw",
        "/calib/cam_front",
        "lidar",
        "/sensors/lidar_top",
    )
    assert c.image_type == msgs.IMAGE and c.median["abs_rel"] < 0.6
    assert not any("only PointCloud2" in n for n in res.notes)  # chosen, not guessed
    saved = json.loads((report / "metrics.json").read_text())
    assert saved["config"]["camera_infos"] == ["/calib/cam_front"]
    assert saved["cameras"][0]["camera_info_topic"] == "/calib/cam_front"

    # the other cloud, in a frame of its own, gives the same ground truth through TF
    other = run(
        "--camera",
        "/rig/cam_front/raw",
        "--camera-info",
        "/calib/cam_front",
        "--gt-topic",
        "/radar/points",
        "--scale-mode",
        "median",
        "--out",
        str(tmp_path / "report_radar"),
    )
    assert other.cameras[0].gt_topic == "/radar/points"
    for k in ("abs_rel", "rmse", "a1"):
        assert other.cameras[0].median[k] == pytest.approx(c.median[k], rel=1e-3, abs=1e-4), k
