"""SIGINT and SIGTERM stop the node executables and ``bore-depth play`` cleanly at any time (real
processes, real DDS).

A requested stop exits 0 with no ERROR, FATAL or traceback: while frames are being processed (the
worker finishes the frame in flight and publishes it before rclpy shuts down), and during start-up
while the model loads (``interrupted during start-up``, not ``cannot start``). ros.runner has the
convention; docs/cli.md lists the exit codes.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor

from bore_depth_ros.sim.recording import RecordingConfig, record
from harness import NodeProcess, entry_point, make_test_image, spin_until, write_params
from ros_clients import DepthProbe, camera_info, encode_image, image_msg

W, H = 320, 240
# torch on the CPU at this input size takes well over the 50 ms between frames: the worker is
# always busy, so a signal finds a frame in flight
SLOW = dict(backend="torch", input_height=192, input_width=320, diagnostics_period=0.2)
BAD_WORDS = ("ERROR", "FATAL", "Traceback", "cannot start", "context is invalid")


def handler_installed(proc: NodeProcess, signum: int) -> bool:
    """Whether the process catches ``signum`` (Linux /proc: bit signum-1 of SigCgt). The runner
    installs its SIGINT/SIGTERM handlers before rclpy.init and the model load; Python alone does
    not catch SIGTERM, so this is the moment the process's own start-up begins."""
    try:
        status = open(f"/proc/{proc.proc.pid}/status").read()
    except FileNotFoundError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught >> (signum - 1) & 1)


def wait_for_exit(proc: NodeProcess, timeout: float = 60.0) -> int:
    try:
        return proc.proc.wait(timeout)
    finally:
        proc.stop()


def assert_clean(log: str) -> None:
    for word in BAD_WORDS:
        assert word not in log, f"{word!r} in the output:\n{log}"


def feed_until_exit(probe: DepthProbe, ex, proc: NodeProcess, signum: int, ns_frame: str) -> tuple[int, int]:
    """Publish frames at 20 Hz until the node has produced outputs under load, send ``signum``
    while frames keep coming, keep publishing until the process ends; (outputs before, after)."""
    data, step = encode_image(make_test_image(H, W, seed=3), "rgb8")
    sec = 100

    def publish_one():
        nonlocal sec
        stamp = Time(sec=sec)
        sec += 1
        probe.publish(
            image_msg(data, W, H, step, "rgb8", ns_frame, stamp),
            camera_info(W, H, ns_frame, 250.0, 250.0, 159.5, 119.5, stamp),
        )
        ex.spin_once(timeout_sec=0.05)

    deadline = time.monotonic() + 60
    while len(probe.received) < 3:  # serving under load: outputs are coming out
        assert time.monotonic() < deadline, proc.output()
        publish_one()
    for _ in range(10):  # the worker is taking frames back to back now
        publish_one()
    before = len(probe.received)
    proc.proc.send_signal(signum)
    deadline = time.monotonic() + 60
    while proc.alive() and time.monotonic() < deadline:
        publish_one()
    spin_until(ex, lambda: False, 0.5)  # what the node published last
    return before, len(probe.received)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_mono_node_stops_cleanly_with_a_frame_in_flight(ros, tmp_path, signum):
    ns = f"/shutdown_{signal.Signals(signum).name.lower()}"
    pfile = write_params(tmp_path / "params.yaml", SLOW)
    node = NodeProcess(
        [entry_point("bore-depth-mono-node"), "--ros-args", "--params-file", str(pfile), "-r", f"__ns:={ns}"],
        tmp_path / "node.log",
    )
    probe = DepthProbe(ns, name=f"probe{ns.replace('/', '_')}")
    ex = SingleThreadedExecutor()
    ex.add_node(probe)
    try:
        assert node.wait_for_output("ready:", timeout=180), node.output()
        assert spin_until(ex, probe.connected, timeout=30), node.output()
        before, after = feed_until_exit(probe, ex, node, signum, "shutdown_cam")
        code = wait_for_exit(node)
    finally:
        ex.remove_node(probe)
        probe.destroy_node()
        node.stop()
    log = node.output()
    assert code == 0, log
    assert f"{signal.Signals(signum).name} received: stopping" in log, log
    assert_clean(log)
    assert before >= 3 and after >= before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_start_up_is_an_interrupt_not_a_failure(tmp_path, signum):
    pfile = write_params(tmp_path / "params.yaml", SLOW)
    node = NodeProcess(
        [entry_point("bore-depth-mono-node"), "--ros-args", "--params-file", str(pfile)],
        tmp_path / "node.log",
    )
    deadline = time.monotonic() + 60
    while not handler_installed(node, signal.SIGTERM):
        assert node.alive() and time.monotonic() < deadline, node.output()
        time.sleep(0.01)
    node.proc.send_signal(signum)  # the model is loading: the constructor has not returned
    code = wait_for_exit(node)
    log = node.output()
    assert code == 0, log
    assert f"interrupted during start-up ({signal.Signals(signum).name})" in log, log
    assert "ready:" not in log, log
    assert_clean(log)


def test_container_stops_cleanly_with_frames_in_flight(ros, tmp_path):
    yaml = tmp_path / "container.yaml"
    yaml.write_text(
        "bore_depth_container:\n  ros__parameters:\n"
        '    nodes: ["mono /box/left"]\n    threads: 2\n'
        "/**:\n  ros__parameters:\n" + "".join(f"    {k}: {v}\n" for k, v in SLOW.items())
    )
    proc = NodeProcess(
        [entry_point("bore-depth-container"), "--ros-args", "--params-file", str(yaml)],
        tmp_path / "container.log",
    )
    probe = DepthProbe("/box/left", name="probe_box_left")
    ex = SingleThreadedExecutor()
    ex.add_node(probe)
    try:
        assert proc.wait_for_output("shared by 1 node(s)", 180), proc.output()
        assert spin_until(ex, probe.connected, timeout=30), proc.output()
        before, after = feed_until_exit(probe, ex, proc, signal.SIGTERM, "box_cam")
        code = wait_for_exit(proc)
    finally:
        ex.remove_node(probe)
        probe.destroy_node()
        proc.stop()
    log = proc.output()
    assert code == 0, log
    assert "SIGTERM received: stopping" in log, log
    assert_clean(log)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_play_stops_cleanly_on_a_signal(tmp_path, signum):
    """``bore-depth play`` serves ROS 2 like a node: a signal while it plays is a requested stop."""
    bag = tmp_path / "bag"
    record(bag, RecordingConfig(rig="mono", frames=30, width=64, height=48, lidar=False), progress=False)
    log_path = tmp_path / "play.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [entry_point("bore-depth"), "play", str(bag), "--rate", "0.1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            # SIGINT as a terminal delivers it (a shell may start background jobs ignoring it)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 60
        while "msg/s" not in log_path.read_text():  # the progress bar: messages are going out
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signum)
        code = proc.wait(60)
    text = log_path.read_text()
    assert code == 0, text
    assert "[play] published" in text, text
    for word in ("ERROR", "Traceback", "error:"):
        assert word not in text, text
