"""One message layer and one per-frame path: the same message means the same thing in the nodes,
replay and training (issue 11's tests)."""

from __future__ import annotations

import numpy as np
import pytest

from bore_depth_ros.bag.messages import BAG, TYPESTORE
from bore_depth_ros.bag.reader import open_bag
from bore_depth_ros.bag.writer import BagWriter
from bore_depth_ros.core import messages as msgs
from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.core.errors import InputRejected
from bore_depth_ros.core.preprocess import normalise_into
from bore_depth_ros.replay import EvalConfig, evaluate
from bore_depth_ros.ros.conversions import RCLPY
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.train.dataset import load_rig_samples, prepare_view

MM = np.array([[1500, 0], [2000, 65535]], np.uint16)
METRES = np.array([[1.5, np.nan], [2.0, 65.535]], np.float32)


@pytest.mark.parametrize("factory", [RCLPY, BAG], ids=["rclpy", "rosbags"])
def test_16uc1_millimetres_and_32fc1_metres_decode_to_the_same_metres(factory):
    header = factory.header(1, "cam")
    d16 = msgs.depth_metres(factory.image(header, MM, "16UC1"))
    d32 = msgs.depth_metres(factory.image(header, METRES, "32FC1"))
    np.testing.assert_allclose(d16, METRES, rtol=0, atol=1e-6)  # not 1000x, 0 -> NaN
    np.testing.assert_array_equal(d32, METRES)
    # big-endian 16UC1 from a driver on another architecture, rows padded
    be = factory.new(
        msgs.IMAGE,
        header=header,
        height=2,
        width=2,
        encoding="16UC1",
        is_bigendian=1,
        step=6,
        data=factory.uint8(np.pad(MM.astype(">u2").view(np.uint8), ((0, 0), (0, 2)))),
    )
    np.testing.assert_allclose(msgs.depth_metres(be), METRES, atol=1e-6)
    with pytest.raises(InputRejected, match="unknown_encoding"):
        msgs.depth_metres(factory.image(header, MM.astype(np.uint8), "mono8"))


def test_cloud_reader_and_camera_info_read_rclpy_and_rosbags_alike():
    from bore_depth_ros.core.pointcloud import pack_points

    xyz = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    intr = Intrinsics(100.0, 110.0, 31.5, 23.5, 64, 48)
    for f in (RCLPY, BAG):
        cloud = f.pointcloud(f.header(5, "cam"), pack_points(xyz))
        np.testing.assert_array_equal(msgs.cloud_fields(cloud).reshape(2, 4, 3), xyz)
        info = f.camera_info(f.header(5, "cam"), intr)
        assert msgs.intrinsics(info) == intr
        assert msgs.intrinsics(info, 32, 24) == intr.scaled_to(32, 24)


def _frame(seed: int = 0, h: int = 48, w: int = 80) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("hw", [(48, 80), (64, 96)], ids=["resized", "at-input-size"])
def test_training_and_inference_prepare_identical_model_inputs(hw):
    """Bit-identical inputs: a resized frame, and one at the input size (the engine's uint8 lookup
    path, every level of every channel present)."""
    from bore_depth_ros.engine import DepthEngine, EngineConfig

    engine = DepthEngine(EngineConfig(model="bore_depth", backend="torch", input_height=64, input_width=96))
    h, w = hw
    rgb = _frame(h=h, w=w)
    rgb.reshape(-1, 3)[:256] = np.arange(256, dtype=np.uint8)[:, None]  # every level, every channel
    engine.preprocess_into(0, rgb)
    intr = Intrinsics(60.0, 60.0, (w - 1) / 2, (h - 1) / 2, w, h)
    img01, k, _, _ = prepare_view(rgb, intr, None, engine.input_hw, None, None)
    train_input = normalise_into(img01, engine.info.mean, engine.info.std)
    np.testing.assert_array_equal(train_input, engine._batch[0])
    assert k == intr.scaled_to(96, 64)


# ---------------------------------------------------------------------- bags: 16UC1 and intrinsics
@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """A rendered mono recording (32FC1 ground truth, camera_info at the image size) and a copy
    whose ground truth is 16UC1 millimetres and whose camera_info is for twice the image size."""
    tmp = tmp_path_factory.mktemp("layer")
    src = tmp / "metres"
    record(
        src, RecordingConfig(rig="mono", frames=3, width=96, height=64, seed=5, lidar=False), progress=False
    )
    dst = tmp / "millimetres"
    with open_bag(src) as reader, BagWriter(dst) as out:
        for conn, log_ns, raw in reader.messages():
            if "depth_gt" in conn.topic:
                gt = reader.deserialize(raw, conn.msgtype)
                d = msgs.depth_metres(gt)
                mm = np.where(np.isfinite(d) & (d < 65.0), np.round(d * 1000.0), 0).astype(np.uint16)
                out.write(conn.topic, BAG.image(gt.header, mm, "16UC1"), log_ns)
            elif conn.topic.endswith("camera_info"):
                info = reader.deserialize(raw, conn.msgtype)
                big = msgs.intrinsics(info).scaled_to(2 * info.width, 2 * info.height)
                out.write(conn.topic, BAG.camera_info(info.header, big), log_ns)
            else:
                out.write_raw(
                    conn.topic, conn.msgtype, bytes(raw), log_ns, latched=conn.topic == "/tf_static"
                )
    return src, dst


@pytest.mark.slow
def test_16uc1_ground_truth_and_resized_camera_info_mean_the_same_in_training_and_eval(recordings, tmp_path):
    src, dst = recordings
    ref, _ = load_rig_samples(src)
    mm, _ = load_rig_samples(dst)
    assert len(ref) == len(mm) == 3
    for a, b in zip(ref, mm):
        d_ref, d_mm = a.depth_gt[0], b.depth_gt[0]
        both = np.isfinite(d_ref) & np.isfinite(d_mm)
        assert both.mean() > 0.5
        np.testing.assert_allclose(d_mm[both], d_ref[both], atol=6e-4)  # metres, mm rounding
        # camera_info for 2x the image: fitted to the image on the training path too
        assert b.intrinsics[0] == pytest.approx(a.intrinsics[0])
        assert (b.intrinsics[0].width, b.intrinsics[0].height) == (96, 64)
    results = []
    for bag in (src, dst):
        out = tmp_path / bag.name
        results.append(
            evaluate(
                EvalConfig(
                    bag=str(bag),
                    max_depth=50.0,
                    report_dir=str(out),
                    output_bag=str(out / "bag"),
                    panels_per_camera=0,
                ),
                progress=False,
            )
        )
        assert results[-1].frames["evaluated"] == 3 and not results[-1].drops
    m_ref, m_mm = results[0].overall["metric"], results[1].overall["metric"]
    assert m_mm["abs_rel"] == pytest.approx(m_ref["abs_rel"], abs=1e-3)
    assert m_mm["rmse"] == pytest.approx(m_ref["rmse"], rel=1e-2)
    # the replay's published depth/camera_info describes the image it depth belongs to
    with open_bag(tmp_path / dst.name / "bag") as reader:
        infos = [
            reader.deserialize(raw, c.msgtype)
            for c, _, raw in reader.messages()
            if c.topic.endswith("depth/camera_info")
        ]
    assert infos and all(msgs.intrinsics(i) == pytest.approx(ref[0].intrinsics[0]) for i in infos)
    assert TYPESTORE is not None


@pytest.mark.parametrize("factory", [RCLPY, BAG], ids=["rclpy", "rosbags"])
def test_transforms_with_non_finite_components_are_rejected(factory):
    from bore_depth_ros.core.transforms import Transform

    good = factory.transform_stamped(factory.header(1, "base_link"), "cam", Transform(np.eye(3), np.ones(3)))
    assert msgs.transform(good).translation.tolist() == [1.0, 1.0, 1.0]
    for field, value in (("translation", "x"), ("rotation", "w")):
        bad = factory.transform_stamped(
            factory.header(1, "base_link"), "cam", Transform(np.eye(3), np.ones(3))
        )
        setattr(getattr(bad.transform, field), value, float("nan"))
        with pytest.raises(InputRejected, match="invalid_transform: base_link -> cam: non-finite"):
            msgs.transform(bad)


def _binned_roi_info(factory):
    """A 1280x960 calibration (fx 1000, centre 639.5, 479.5) streamed as its centre 640x480
    region, binned 2x2: 320x240 images."""
    info = factory.camera_info(factory.header(7, "cam"), Intrinsics(1000.0, 1000.0, 639.5, 479.5, 1280, 960))
    info.binning_x, info.binning_y = 2, 2
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 320, 240, 640, 480
    return info


@pytest.mark.parametrize("factory", [RCLPY, BAG], ids=["rclpy", "rosbags"])
def test_binning_and_roi_follow_rep_104_and_the_output_camera_info_describes_the_output(factory):
    info = _binned_roi_info(factory)
    # ROI then 2x2 binning; pixel centres at integers: cx = (639.5 - 320 + 0.5) / 2 - 0.5
    expected = Intrinsics(500.0, 500.0, 159.5, 119.5, 320, 240)
    assert msgs.intrinsics(info) == expected
    assert msgs.intrinsics(info, 320, 240) == expected
    assert msgs.intrinsics(info, 160, 120) == expected.scaled_to(160, 120)
    with pytest.raises(InputRejected, match="camera_info_size_mismatch"):
        msgs.intrinsics(info, 320, 320)
    out = factory.scaled_camera_info(factory.header(7, "cam"), info, 160, 120)
    assert (out.width, out.height, out.binning_x, out.binning_y) == (160, 120, 0, 0)
    assert (out.roi.x_offset, out.roi.y_offset, out.roi.width, out.roi.height) == (0, 0, 0, 0)
    assert msgs.intrinsics(out) == expected.scaled_to(160, 120)  # K and P for that image exactly
    np.testing.assert_allclose(np.reshape(out.k, (3, 3)), expected.scaled_to(160, 120).matrix())
    bad = _binned_roi_info(factory)
    bad.roi.x_offset = 700  # 700 + 640 > 1280
    with pytest.raises(InputRejected, match="camera_info_invalid: roi x 700"):
        msgs.intrinsics(bad)
