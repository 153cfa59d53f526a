"""The lean runtime: eval runs from an exported .onnx in a process where PyTorch cannot be imported,
and the mono node where nothing outside requirements-runtime.txt can (torch, onnx, matplotlib,
rosbags, pybullet, tqdm), as on a Jetson with only that set installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor

from bore_depth_ros.core import messages as M
from harness import NodeProcess, entry_point, make_test_image, spin_until, write_params
from ros_clients import DepthProbe, camera_info, encode_image, image_msg

W, H = 80, 60


# what requirements-runtime.txt leaves out: the node must not need any of it
NOT_IN_RUNTIME = ("torch", "onnx", "matplotlib", "rosbags", "pybullet", "tqdm", "hypothesis")


def _blocked(tmp_path, modules=("torch",)) -> dict:
    """Environment additions that make importing ``modules`` fail with a clear message."""
    for name in modules:
        block = tmp_path / "block" / name
        block.mkdir(parents=True)
        (block / "__init__.py").write_text(
            f'raise ImportError("{name} is blocked: this is the lean runtime")\n'
        )
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path / "block"), os.environ.get("PYTHONPATH", "")])}


def _export(tmp_path) -> str:
    onnx = tmp_path / "bore_depth.onnx"
    subprocess.run(
        [entry_point("bore-depth"), "export", "--models", "bore_depth", "--output", str(onnx)]
        + ["--height", "64", "--width", "96"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return str(onnx)


def test_eval_and_the_mono_node_run_without_torch(ros, tmp_path):
    onnx = _export(tmp_path)
    env = {**os.environ, **_blocked(tmp_path)}
    # the blocker works: torch really cannot be imported there
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "torch is blocked" in probe.stderr
    rec = tmp_path / "rec"
    subprocess.run(
        [
            entry_point("bore-depth"),
            "synth",
            str(rec),
            "--rig",
            "mono",
            "--frames",
            "2",
            "--width",
            "64",
            "--height",
            "48",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    out = subprocess.run(
        [entry_point("bore-depth"), "eval", str(rec), "--weights", onnx, "--out", str(tmp_path / "report")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["frames"]["evaluated"] == 2

    pfile = write_params(
        tmp_path / "mono.yaml", dict(weights=onnx, backend="onnxruntime", diagnostics_period=0.5)
    )
    node = NodeProcess(
        [entry_point("bore-depth-mono-node"), "--ros-args", "--params-file", str(pfile), "-r", "__ns:=/lean"],
        tmp_path / "node.log",
        env=_blocked(tmp_path / "n", NOT_IN_RUNTIME),
    )
    client = DepthProbe("/lean", name="lean_probe")
    ex = SingleThreadedExecutor()
    ex.add_node(client)
    try:
        assert node.wait_for_output("ready:", 120), node.output()
        assert spin_until(ex, client.connected, 20)
        data, step = encode_image(make_test_image(H, W, seed=5), "rgb8")
        stamp = Time(sec=3)

        def served():
            client.publish(
                image_msg(data, W, H, step, "rgb8", "cam_optical_frame", stamp),
                camera_info(W, H, "cam_optical_frame", 70.0, 70.0, 39.5, 29.5, stamp),
            )
            return spin_until(ex, lambda: client.complete(stamp), 3)

        assert any(served() for _ in range(10)), node.output()
        depth = M.image_array(client.received[(3, 0)]["depth/image"])
        assert depth.shape == (H, W) and np.isfinite(depth).any()
    finally:
        ex.remove_node(client)
        client.destroy_node()
        node.stop()
    assert "Traceback" not in node.output()
