"""Replay rejects, and counts by reason, exactly what the mono node rejects on the same broken
frames: both run the one input check and camera_info pairing of the per-frame path."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

from bore_depth_ros.bag.messages import BAG, TYPESTORE
from bore_depth_ros.bag.reader import open_bag
from bore_depth_ros.bag.writer import BagWriter
from bore_depth_ros.core import messages as msgs
from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.replay import EvalConfig, evaluate
from bore_depth_ros.ros.conversions import from_cdr
from bore_depth_ros.testing.probe import DepthProbe
from harness import NodeProcess, entry_point, make_test_image, spin_until, write_params

NS = "/parity"
W, H = 80, 60
FRAME = "parity_optical_frame"
INTR = Intrinsics(70.0, 70.0, 39.5, 29.5, W, H)
T0 = 1_000_000_000_000
RELIABLE = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST, depth=1000, reliability=QoSReliabilityPolicy.RELIABLE
)
RGB = make_test_image(H, W, seed=4)
DEPTH = np.full((H, W), 7.5, np.float32)


def _image(header, width=W, height=H, step=W * 3, encoding="rgb8", size=None):
    size = step * height if size is None else size
    data = np.resize(RGB.reshape(-1), max(size, 0)).astype(np.uint8)
    return BAG.new(
        msgs.IMAGE,
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=data,
    )


# (what is wrong, image, camera_info) per frame; None = a good one
CASES = [
    ("valid", {}, None),
    ("unknown_encoding", dict(encoding="yuv422", step=W * 2), None),
    ("step_too_small", dict(step=W * 3 - 1), None),
    ("valid", {}, None),
    ("truncated_data", dict(size=W * 3 * H - 7), None),
    ("size_mismatch", dict(size=W * 3 * H + 5), None),
    ("invalid_frame_id", "frame_id", None),
    ("empty_image", dict(width=0, step=0), None),
    ("image_too_large", dict(width=2 * W, step=6 * W), None),
    ("valid", {}, None),
    ("camera_info_size_mismatch", {}, Intrinsics(70.0, 70.0, 39.5, 59.5, W, 2 * H)),
    ("camera_info_invalid", {}, Intrinsics(0.0, 70.0, 39.5, 29.5, W, H)),
    ("valid", {}, None),
    ("valid", {}, INTR.scaled_to(2 * W, 2 * H)),  # camera_info of a resizing driver
    # a 320x240 calibration streamed as its centre 160x120 region binned 2x2 (REP 104): W x H
    ("valid", {}, ("roi_binning", Intrinsics(140.0, 140.0, 159.5, 119.5, 4 * W, 4 * H))),
]
RESIZED, ROI_BINNED = len(CASES) - 2, len(CASES) - 1


def write_bag(path):
    """The CASES as a recording: camera_info, image and ground truth per stamp."""
    out = []
    with BagWriter(path) as bag:
        for k, (_, image, info) in enumerate(CASES):
            t = T0 + k * 100_000_000
            header = BAG.header(t, FRAME)
            if isinstance(info, tuple):
                info_msg = BAG.camera_info(header, info[1])
                info_msg.binning_x = info_msg.binning_y = 2
                roi = info_msg.roi
                roi.x_offset, roi.y_offset, roi.width, roi.height = W, H, 2 * W, 2 * H
            else:
                info_msg = BAG.camera_info(header, info or INTR)
            img = _image(BAG.header(t, ""), **{}) if image == "frame_id" else _image(header, **image)
            bag.write("/cam/camera_info", info_msg, t + 1000)
            bag.write("/cam/image", img, t + 2000)
            bag.write("/cam/depth_gt/image", BAG.image(header, DEPTH, "32FC1"), t + 3000)
            out.append((info_msg, img))
    return out


def test_replay_and_node_reject_the_same_frames_for_the_same_reasons(ros, tmp_path, structured_weights):
    frames = write_bag(tmp_path / "broken")
    expected = collections.Counter(reason for reason, _, _ in CASES if reason != "valid")
    common = dict(
        weights=structured_weights,
        backend="onnxruntime",
        input_height=64,
        input_width=96,
        max_input_pixels=W * H,
    )

    res = evaluate(
        EvalConfig(
            bag=str(tmp_path / "broken"),
            report_dir=str(tmp_path / "report"),
            output_bag=str(tmp_path / "out"),
            panels_per_camera=0,
            **common,
        ),
        progress=False,
    )
    assert res.frames["evaluated"] == sum(reason == "valid" for reason, _, _ in CASES)
    assert res.drops == dict(expected)

    inputs = {
        f"{NS}/{t}": {"subscription": {"reliability": "reliable", "depth": 1000}}
        for t in ("image", "camera_info")
    }
    pfile = write_params(
        tmp_path / "params.yaml", dict(diagnostics_period=0.2, qos_overrides=inputs, **common)
    )
    node = NodeProcess(
        [entry_point("bore-depth-mono-node"), "--ros-args", "--params-file", str(pfile), "-r", f"__ns:={NS}"],
        tmp_path / "node.log",
    )
    probe = None
    try:
        assert node.wait_for_output("ready:", 120), node.output()
        probe = DepthProbe(NS, name="parity_client", input_qos=RELIABLE)  # exact counts
        ex = SingleThreadedExecutor()
        ex.add_node(probe)
        assert spin_until(ex, probe.connected, 30)
        # the bag's own messages, as a player would send them; each valid frame is awaited, so
        # none is skipped by the newest-wins worker and every one can be compared
        for (reason, _, _), (info, img) in zip(CASES, frames):
            probe.publish(
                from_cdr(TYPESTORE.serialize_cdr(img, msgs.IMAGE), msgs.IMAGE),
                from_cdr(TYPESTORE.serialize_cdr(info, msgs.CAMERA_INFO), msgs.CAMERA_INFO),
            )
            ex.spin_once(timeout_sec=0.05)
            if reason == "valid":
                assert spin_until(ex, lambda s=img.header.stamp: probe.complete(s), 30), node.output()[-2000:]

        def values():
            return probe.latest_diagnostic_values(f"{NS}/bore_depth_mono")

        def settled():
            v = values()
            return (
                v.get("frames_in") == str(len(CASES))
                and v.get("unaccounted") == "0"
                and v.get("in_worker") == "0"
            )

        assert spin_until(ex, settled, 60), values()
        v = values()
        rejected = {k[len("rejected.") :]: int(n) for k, n in v.items() if k.startswith("rejected.")}
        assert rejected == res.drops, (rejected, res.drops, node.output()[-2000:])
        assert int(v["frames_out"]) + int(v["skipped_total"]) == res.frames["evaluated"]
        # intrinsics fitted to the image the same way on the node's and the replay's path, for a
        # resized camera_info and for ROI + binning; the published camera_info describes the
        # published image exactly (no binning, no ROI left for depth_image_proc to apply again)
        for case in (RESIZED, ROI_BINNED):
            t = T0 + case * 100_000_000
            assert spin_until(ex, lambda t=t: probe.complete(BAG.time(t)), 30)
            node_info = probe.received[(t // 10**9, t % 10**9)]["depth/camera_info"]
            with open_bag(tmp_path / "out") as reader:
                replay_info = next(
                    reader.deserialize(raw, c.msgtype)
                    for c, _, raw in reader.messages()
                    if c.topic.endswith("depth/camera_info")
                    and msgs.stamp_ns(reader.deserialize(raw, c.msgtype).header) == t
                )
            fitted = msgs.intrinsics(frames[case][0], W, H)
            assert fitted == pytest.approx(INTR)
            assert msgs.intrinsics(node_info) == msgs.intrinsics(replay_info) == fitted
            for out in (node_info, replay_info):
                assert (out.width, out.height, out.binning_x, out.binning_y) == (W, H, 0, 0)
                assert (out.roi.width, out.roi.height, out.roi.x_offset, out.roi.y_offset) == (0, 0, 0, 0)
        ex.remove_node(probe)
    finally:
        if probe is not None:
            probe.destroy_node()
        node.stop()
