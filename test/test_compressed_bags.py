"""Bags with sensor_msgs/CompressedImage (issue 13): compressedDepth ground truth means the same
metres as 16UC1, PNG images the same pixels as raw ones, damaged images are counted with the
nodes' compressed_* reasons; ``synth --compress jpeg`` writes bags that eval and training read;
``play`` republishes compressed topics as recorded, with their type.

Real rosbag2 files, real eval runs with the real network at a tiny input, real DDS for play.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import pytest

from bore_depth_ros.bag.reader import FrameSync, discover_cameras, open_bag
from bore_depth_ros.core import messages as msgs
from bore_depth_ros.engine import DepthEngine, EngineConfig
from bore_depth_ros.replay import EvalConfig, evaluate
from bore_depth_ros.sim.recording import RecordingConfig, add_synth_arguments, record, run_synth
from bore_depth_ros.sim.rig import MONO_RIG, CameraSpec
from bore_depth_ros.train.dataset import RigDataset, load_rig_samples
from test_eval_layouts import Cam, write_layout_bag

FRONT = CameraSpec("front", 0.0, 70.0, position=(1.6, 0.0, 1.5))
NS = "/cameras/front"
N_FRAMES = 3


@pytest.fixture(scope="module")
def engine(structured_weights):
    return DepthEngine(
        EngineConfig(weights=structured_weights, input_height=64, input_width=96, backend="onnxruntime")
    )


def camera(codec: str, gt_encoding: str) -> Cam:
    image = f"{NS}/image" + ("/compressed" if codec else "")
    gt = f"{NS}/depth_gt/image" + ("/compressedDepth" if gt_encoding.startswith("compressed") else "")
    return Cam(FRONT, image, f"{NS}/camera_info", codec, gt, gt_encoding)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """One recording written four ways: raw images with 16UC1 ground truth, then compressedDepth
    ground truth with raw, PNG and JPEG images."""
    root = tmp_path_factory.mktemp("variants")
    layouts = {
        "raw16": ("", "16UC1"),
        "raw_cdepth": ("", "compressed16UC1"),
        "png_cdepth": ("png", "compressed16UC1"),
        "jpeg_cdepth": ("jpeg", "compressed16UC1"),
    }
    for name, (codec, gt) in layouts.items():
        write_layout_bag(root / name, [camera(codec, gt)], frames=N_FRAMES)
    return {name: root / name for name in layouts}


def run_eval(bag, engine, report, **kw):
    cfg = EvalConfig(
        bag=str(bag), input_height=64, input_width=96, report_dir=str(report), panels_per_camera=0, **kw
    )
    return evaluate(cfg, progress=False, engine=engine)


def test_compressed_depth_ground_truth_is_the_same_metres_as_16uc1(variants, engine, tmp_path):
    # message level: the frames' ground truth decodes to identical metres
    decoded = {}
    for name in ("raw16", "raw_cdepth"):
        with open_bag(variants[name]) as reader:
            (cam,) = discover_cameras(reader)
            decoded[name] = [msgs.depth_metres(f.depth_gt) for f in FrameSync(reader, [cam])]
            assert cam.depth_gt == camera("", "compressed16UC1" if name == "raw_cdepth" else "16UC1").gt
    assert len(decoded["raw16"]) == N_FRAMES
    for a, b in zip(decoded["raw16"], decoded["raw_cdepth"]):
        assert np.isfinite(a).sum() > 0.5 * a.size
        np.testing.assert_array_equal(a, b)  # NaN where invalid in both

    # eval level: the same metrics, boundaries included
    res = {name: run_eval(variants[name], engine, tmp_path / name) for name in variants}
    base = res["raw16"].cameras[0]
    for name in ("raw_cdepth", "png_cdepth"):  # PNG is lossless: the same pixels as rgb8
        c = res[name].cameras[0]
        assert res[name].frames["evaluated"] == N_FRAMES and res[name].drops == {}
        assert c.gt_kind == "depth" and c.gt_topic == f"{NS}/depth_gt/image/compressedDepth"
        for mode in ("metric", "median"):
            for k, v in getattr(base, mode).items():
                assert getattr(c, mode)[k] == pytest.approx(v, rel=1e-6, abs=1e-9), (name, mode, k)
        for k in ("precision", "recall", "f1"):
            assert c.boundary[k] == pytest.approx(base.boundary[k], rel=1e-6)
    assert res["png_cdepth"].cameras[0].image_type == msgs.COMPRESSED_IMAGE
    assert res["raw_cdepth"].cameras[0].image_type == msgs.IMAGE
    # JPEG is lossy: the same picture up to small differences
    jpeg = res["jpeg_cdepth"].cameras[0]
    assert jpeg.image_encoding == "rgb8; jpeg compressed bgr8"
    assert jpeg.median["abs_rel"] == pytest.approx(base.median["abs_rel"], rel=0.1)
    assert jpeg.median["a1"] == pytest.approx(base.median["a1"], abs=0.05)


def test_damaged_compressed_images_are_counted_with_the_nodes_reasons(tmp_path, engine):
    bag = tmp_path / "damaged"
    write_layout_bag(bag, [camera("jpeg", "32FC1")], frames=4, damaged={(0, 1): "truncate", (0, 2): "empty"})
    res = run_eval(bag, engine, tmp_path / "report")
    assert res.frames["evaluated"] == 2 and res.frames["images_read"] == 4
    assert res.drops == {"compressed_empty": 1, "compressed_truncated": 1}
    assert "no end marker" in res.drop_details["compressed_truncated"]
    # training reads the same bag through the same decoders and counts the same reasons
    samples, drops = load_rig_samples(bag)
    assert len(samples) == 2 and drops == {"compressed_empty": 1, "compressed_truncated": 1}


def synth(argv):
    p = argparse.ArgumentParser()
    add_synth_arguments(p)
    assert run_synth(p.parse_args(argv)) == 0


def test_synth_compress_jpeg_is_read_by_eval_and_training(tmp_path, engine, capsys):
    small = ["--rig", "mono", "--frames", "2", "--width", "96", "--height", "64", "--no-lidar"]
    synth([str(tmp_path / "jpeg"), *small, "--compress", "jpeg"])
    assert "/cameras/front/image/compressed: 2" in capsys.readouterr().out
    record(
        tmp_path / "raw",
        RecordingConfig(rig="mono", frames=2, width=96, height=64, lidar=False),
        progress=False,
    )
    with open_bag(tmp_path / "jpeg") as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
    assert types["/cameras/front/image/compressed"] == msgs.COMPRESSED_IMAGE
    assert "/cameras/front/image" not in types and types["/cameras/front/camera_info"] == msgs.CAMERA_INFO

    # training: the same sets, the JPEG pixels close to the raw ones in true colour order
    jpeg, raw = RigDataset([tmp_path / "jpeg"]), RigDataset([tmp_path / "raw"])
    assert len(jpeg) == len(raw) == 2 and jpeg.drops == {}
    for a, b in zip(jpeg.samples, raw.samples):
        assert a.stamp_ns == b.stamp_ns and a.cameras == b.cameras == [MONO_RIG[0].name]
        assert a.intrinsics == b.intrinsics and a.base_from_cam[0] is not None
        np.testing.assert_array_equal(a.depth_gt[0], b.depth_gt[0])
        img, ref = a.images[0].astype(np.float64), b.images[0].astype(np.float64)
        assert img.shape == ref.shape == (64, 96, 3)
        err = np.abs(img - ref).mean()
        assert err < 6.0 and np.abs(img[..., ::-1] - ref).mean() > 2 * err

    # eval: the compressed camera is found and scored like the raw recording
    res_jpeg = run_eval(tmp_path / "jpeg", engine, tmp_path / "report_jpeg")
    res_raw = run_eval(tmp_path / "raw", engine, tmp_path / "report_raw")
    assert res_jpeg.frames["evaluated"] == 2 and res_jpeg.drops == {}
    c, r = res_jpeg.cameras[0], res_raw.cameras[0]
    assert (c.image_topic, c.camera_info_topic, c.gt_topic) == (
        "/cameras/front/image/compressed",
        "/cameras/front/camera_info",
        "/cameras/front/depth_gt/image",
    )
    assert c.median["abs_rel"] == pytest.approx(r.median["abs_rel"], rel=0.1)


def test_play_republishes_compressed_topics_as_recorded(ros, tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import CompressedImage

    from bore_depth_ros.ros.bag_player import BagPlayer

    bag = tmp_path / "bag"
    write_layout_bag(bag, [camera("jpeg", "compressed16UC1")], frames=2)
    recorded = {}
    with open_bag(bag) as reader:
        for conn, _, raw in reader.messages():
            if conn.msgtype == msgs.COMPRESSED_IMAGE:
                m = reader.deserialize(raw, conn.msgtype)
                recorded.setdefault(conn.topic, []).append((m.format, bytes(m.data)))
    topics = sorted(recorded)
    assert topics == [f"{NS}/depth_gt/image/compressedDepth", f"{NS}/image/compressed"]

    got: dict[str, list] = {t: [] for t in topics}
    listener = rclpy.create_node("compressed_play_listener")
    qos = QoSProfile(depth=20, reliability=QoSReliabilityPolicy.RELIABLE)
    for t in topics:
        listener.create_subscription(CompressedImage, t, lambda m, t=t: got[t].append(m), qos)
    player = BagPlayer(bag, rate=4.0, clock_hz=0, linger=0.5, name="compressed_player")
    ex = SingleThreadedExecutor()
    ex.add_node(listener)
    try:
        assert player.wait_for_subscribers(topics, timeout=20, settle=0.5) == []
        thread = threading.Thread(target=player.play)
        thread.start()
        deadline = time.monotonic() + 30
        while any(len(got[t]) < 2 for t in topics) and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
        thread.join(timeout=10)
        assert {t: player.stats.published.get(t) for t in topics} == {t: 2 for t in topics}
        names = dict(listener.get_topic_names_and_types())
        for t in topics:
            assert names[t] == ["sensor_msgs/msg/CompressedImage"]
            assert [(m.format, bytes(m.data)) for m in got[t]] == recorded[t]
        # what arrives decodes through the one message layer, as the nodes decode it
        rgb = msgs.image_rgb(got[f"{NS}/image/compressed"][0])
        depth = msgs.depth_metres(got[f"{NS}/depth_gt/image/compressedDepth"][0])
        assert rgb.shape == (64, 96, 3) and depth.shape == (64, 96) and np.isfinite(depth).any()
    finally:
        ex.remove_node(listener)
        listener.destroy_node()
        player.destroy_node()
