"""The mono node, started through its own entry point in a separate process, over real ROS 2."""

from __future__ import annotations

import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor

from bore_depth_ros.core import messages as msgs
from harness import NodeProcess, entry_point, make_test_image, spin_until, write_params
from ros_clients import DepthProbe, camera_info, encode_image, expected_rgb, image_msg

H, W = 60, 80  # deliberately not a multiple of 32: the node resizes
FX, FY, CX, CY = 70.0, 72.0, 39.2, 30.6
FRAME = "test_cam_optical_frame"
THRESHOLD = 0.5
DECIMATION = 2
SCALE = 2.5


def start_node(tmp_path, ns: str, weights: str, **overrides) -> NodeProcess:
    params = dict(
        model="bore_depth",
        weights=weights,
        backend="onnxruntime",
        input_height=64,
        input_width=96,
        confidence_threshold=THRESHOLD,
        points_decimation=DECIMATION,
        scale_mode="fixed",
        depth_scale=SCALE,
        diagnostics_period=0.2,
    )
    params.update(overrides)
    pfile = write_params(tmp_path / f"params_{ns.strip('/')}.yaml", params)
    node = NodeProcess(
        [entry_point("bore-depth-mono-node"), "--ros-args", "--params-file", str(pfile), "-r", f"__ns:={ns}"],
        tmp_path / f"node_{ns.strip('/')}.log",
    )
    assert node.wait_for_output("ready:", timeout=120), node.output()
    return node


@pytest.fixture
def client_and_node(ros, tmp_path, request, structured_weights):
    ns = f"/mono_{request.node.name[:20].replace('[', '_').replace(']', '_').replace('-', '_')}"
    node = start_node(tmp_path, ns, structured_weights)
    client = DepthProbe(ns, name=f"client_{abs(hash(ns)) % 10000}")
    ex = SingleThreadedExecutor()
    ex.add_node(client)
    try:
        assert spin_until(ex, client.connected, timeout=20), "node never connected"
        yield client, ex, node
    finally:
        ex.remove_node(client)
        client.destroy_node()
        node.stop()


def send(client, ex, rgb, encoding, sec, pad=0, info=True, timeout=30.0):
    """Publish one frame; wait for all its outputs. Inputs are best effort (sensor QoS), so a
    frame that produced nothing after a few seconds is published again (same stamp)."""
    stamp = Time(sec=sec, nanosec=123_000_000)
    data, step = encode_image(rgb, encoding, pad)

    def publish():
        if info:
            client.pub_info.publish(camera_info(W, H, FRAME, FX, FY, CX, CY, stamp))
        client.pub_image.publish(image_msg(data, W, H, step, encoding, FRAME, stamp))

    publish()
    if not timeout:
        return stamp
    deadline = time.monotonic() + timeout
    while not spin_until(ex, lambda: client.complete(stamp), min(5.0, timeout)):
        assert time.monotonic() < deadline, (
            f"no complete output for stamp {sec}: got "
            f"{list(client.received.get((sec, 123_000_000), {}))}; node diagnostics "
            f"{client.latest_diagnostic_values(client.ns)}"
        )
        publish()
    return stamp


def backproject_reference(depth, info, stride):
    """Independent of the package: explicit pinhole formula with P from depth/camera_info."""
    fx, cx, fy, cy = info.p[0], info.p[2], info.p[5], info.p[6]
    rows = np.arange(0, depth.shape[0], stride)
    cols = np.arange(0, depth.shape[1], stride)
    out = np.empty((len(rows), len(cols), 3), np.float64)
    for a, v in enumerate(rows):
        for b, u in enumerate(cols):
            z = float(depth[v, u])
            out[a, b] = ((u - cx) / fx * z, (v - cy) / fy * z, z) if np.isfinite(z) else np.nan
    return out


@pytest.mark.parametrize("encoding,pad", [("rgb8", 0), ("bgr8", 4), ("rgba8", 0), ("bgra8", 0), ("mono8", 3)])
def test_outputs_follow_the_contract(client_and_node, encoding, pad):
    client, ex, node = client_and_node
    rgb = make_test_image(H, W, seed=3)
    stamp = send(client, ex, rgb, encoding, sec=100, pad=pad)
    out = client.received[(stamp.sec, stamp.nanosec)]

    for topic, msg in out.items():  # identical headers on every output
        assert msg.header.stamp == stamp, topic
        assert msg.header.frame_id == FRAME, topic

    depth_msg, conf_msg = out["depth/image"], out["confidence/image"]
    for m in (depth_msg, conf_msg):
        assert (m.encoding, m.height, m.width, m.step, m.is_bigendian) == ("32FC1", H, W, W * 4, 0)
    depth, conf = msgs.image_array(depth_msg), msgs.image_array(conf_msg)
    assert np.isfinite(conf).all() and conf.min() >= 0.0 and conf.max() <= 1.0
    # REP 117: invalid is NaN, never 0 or negative; NaN exactly where confidence is too low
    assert not (depth[np.isfinite(depth)] <= 0).any()
    np.testing.assert_array_equal(np.isnan(depth), conf < THRESHOLD)
    assert 0 < np.isfinite(depth).mean() < 1, "the test needs both valid and masked pixels"

    info = out["depth/camera_info"]
    assert (info.width, info.height) == (W, H)
    assert list(info.k) == pytest.approx([FX, 0, CX, 0, FY, CY, 0, 0, 1])

    pts = out["points"]
    assert (pts.height, pts.width) == ((H + 1) // 2, W // 2) and not pts.is_dense
    assert [f.name for f in pts.fields] == ["x", "y", "z", "rgb"]
    xyz = msgs.cloud_fields(pts).reshape(pts.height, pts.width, 3)
    np.testing.assert_allclose(
        xyz, backproject_reference(depth, info, DECIMATION), rtol=1e-5, atol=1e-6, equal_nan=True
    )
    raw = np.frombuffer(pts.data, np.uint8).reshape(pts.height, pts.width, pts.point_step)
    packed = raw[..., 12:16].copy().view(np.uint32)[..., 0]
    colours = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], -1)
    np.testing.assert_array_equal(colours, expected_rgb(rgb, encoding)[::DECIMATION, ::DECIMATION])

    summary = out["view_confidence"]
    assert summary.camera_frame == FRAME and summary.model == "bore_depth"
    assert summary.backend == "onnxruntime"
    assert summary.depth_scale == pytest.approx(SCALE) and summary.scale_source == "fixed"
    assert summary.valid_fraction == pytest.approx(np.isfinite(depth).mean(), abs=1e-6)
    assert summary.mean_confidence == pytest.approx(conf.mean(), rel=1e-5)
    assert summary.inference_time_ms > 0
    assert summary.median_depth == pytest.approx(np.nanmedian(depth), rel=0.05)


def test_bad_input_is_rejected_counted_and_the_node_keeps_serving(client_and_node):
    client, ex, node = client_and_node
    rgb = make_test_image(H, W, seed=5)
    good, step = encode_image(rgb, "rgb8")
    bad = [  # (message fields, expected reason, text expected in the log)
        (dict(data=good, step=step, encoding="yuv422"), "unknown_encoding", "yuv422"),
        (dict(data=good[: step * H // 2], step=step, encoding="rgb8"), "truncated_data", "truncated"),
        (dict(data=good + b"\0" * 40, step=step, encoding="rgb8"), "size_mismatch", "size_mismatch"),
        (dict(data=good, step=step - 3, encoding="rgb8"), "step_too_small", "step"),
    ]

    def rejected_counts():
        v = client.latest_diagnostic_values(node_name_part(client))
        return {k[len("rejected.") :]: int(x) for k, x in v.items() if k.startswith("rejected.")}

    # one bad message at a time (the input queue is small on purpose: newest frames win)
    for i, (fields, reason, _) in enumerate(bad):
        stamp = Time(sec=200 + i)
        client.pub_info.publish(camera_info(W, H, FRAME, FX, FY, CX, CY, stamp))
        client.pub_image.publish(
            image_msg(fields["data"], W, H, fields["step"], fields["encoding"], FRAME, stamp)
        )
        assert spin_until(ex, lambda reason=reason: rejected_counts().get(reason) == 1, timeout=20), (
            reason,
            rejected_counts(),
        )
    # camera_info full of zeros for the next image
    stamp = Time(sec=210)
    client.pub_info.publish(camera_info(W, H, FRAME, 0.0, 0.0, 0.0, 0.0, stamp))
    client.pub_image.publish(image_msg(good, W, H, step, "rgb8", FRAME, stamp))
    assert spin_until(ex, lambda: rejected_counts().get("camera_info_invalid") == 1, timeout=20)
    assert rejected_counts() == {r: 1 for _, r, _ in bad} | {"camera_info_invalid": 1}
    log = node.output()
    for _, reason, text in bad:
        assert any(reason in line and text in line for line in log.splitlines()), (reason, log)
    assert "fx is 0" in log or "fx" in log.split("camera_info_invalid", 1)[1][:200]
    # nothing was published for the rejected frames
    assert not any((200 + i, 0) in client.received for i in range(len(bad)))
    # the next good frame is processed normally
    stamp = send(client, ex, rgb, "rgb8", sec=300)
    assert msgs.image_array(client.received[(300, stamp.nanosec)]["depth/image"]).shape == (H, W)
    assert node.alive()


def node_name_part(client) -> str:
    return client.ns + "/bore_depth_mono"


def test_missing_camera_info_is_reported_and_recovered(client_and_node):
    client, ex, node = client_and_node
    rgb = make_test_image(H, W, seed=7)
    send(client, ex, rgb, "rgb8", sec=400, info=False, timeout=0)
    send(client, ex, rgb, "rgb8", sec=401, info=False, timeout=0)

    def waiting():
        v = client.latest_diagnostic_values(node_name_part(client))
        return v.get("rejected.camera_info_missing") == "1" and v.get("waiting_for_camera_info") == "1"

    assert spin_until(ex, waiting, timeout=20)
    assert "camera_info_missing" in node.output()
    # the first camera_info releases the waiting image (stamp 401)
    client.pub_info.publish(camera_info(W, H, FRAME, FX, FY, CX, CY, Time(sec=401)))
    assert spin_until(ex, lambda: client.complete(Time(sec=401, nanosec=123_000_000)), 30)
    assert (400, 123_000_000) not in client.received


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (dict(input_height=250), "input height 250 is not a multiple of 32"),
        (dict(input_preset="cityscapes"), "unknown input_preset 'cityscapes'"),
        (dict(backend="tensorrt"), "tensorrt"),
        (dict(points_decimation=0), "points_decimation must be in [1, 64]"),
        (dict(diagnostics_period=0.0), "diagnostics_period must be > 0"),
    ],
)
def test_node_refuses_to_start_with_a_clear_reason(tmp_path, overrides, expected):
    params = dict(model="bore_depth", backend="onnxruntime", input_height=64, input_width=96)
    params.update(overrides)
    pfile = write_params(tmp_path / "bad.yaml", params)
    node = NodeProcess(
        [entry_point("bore-depth-mono-node"), "--ros-args", "--params-file", str(pfile)], tmp_path / "bad.log"
    )
    try:
        node.proc.wait(timeout=120)
    finally:
        node.stop()
    assert node.proc.returncode == 2
    assert "cannot start" in node.output() and expected in node.output(), node.output()


def test_node_refuses_a_corrupt_checkpoint(tmp_path, structured_weights):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(open(structured_weights, "rb").read()[:100_000])
    pfile = write_params(tmp_path / "bad.yaml", dict(weights=str(corrupt), input_height=64, input_width=96))
    node = NodeProcess(
        [entry_point("bore-depth-mono-node"), "--ros-args", "--params-file", str(pfile)], tmp_path / "bad.log"
    )
    node.proc.wait(timeout=120)
    node.stop()
    assert node.proc.returncode == 2
    assert "not a readable PyTorch checkpoint" in node.output(), node.output()
