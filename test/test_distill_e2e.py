"""Distillation end to end on a recording like a real fleet's: six JPEG cameras with DDAD-style
names listed out of ring order, LiDAR only (no depth images), 0-40 ms capture offsets.

A tiny random ``DepthAnythingForDepthEstimation`` is saved with ``save_pretrained``, labels the
bag (``bore-depth label``), and an SVR-style student is distilled from the labels for a few steps
(``bore-depth train``): the distillation loss on a fixed batch falls, and the weights load and
run in the surround node (its own process) on the rig's cameras.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
import yaml
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor

from bore_depth_ros.bag.messages import TYPESTORE
from bore_depth_ros.bag.reader import open_bag
from bore_depth_ros.bag.writer import BagWriter
from bore_depth_ros.core import messages as M
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.testing.probe import DepthProbe
from harness import NodeProcess, entry_point, make_test_image, spin_until, write_params
from ros_clients import camera_info, encode_image, image_msg
from test_label import save_tiny_depth_anything

H, W = 64, 96
# the simulator's ring (front, then counter-clockwise) under DDAD's camera names
DDAD = {
    "front": "CAMERA_01",
    "front_left": "CAMERA_05",
    "back_left": "CAMERA_07",
    "back": "CAMERA_09",
    "back_right": "CAMERA_08",
    "front_right": "CAMERA_06",
}
RING = list(DDAD.values())

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]


def _rename(text: str) -> str:
    for sim, ddad in DDAD.items():
        text = text.replace(f"/cameras/{sim}/", f"/{ddad}/").replace(
            f"camera_{sim}_optical_frame", f"{ddad}_optical"
        )
    return text


def fleet_bag(tmp_path) -> str:
    """A synth recording rewritten as a fleet's: DDAD names, no depth images, JPEG, offsets."""
    sim = tmp_path / "sim"
    record(
        sim,
        RecordingConfig(
            rig="surround",
            frames=8,
            width=W,
            height=H,
            rate_hz=5,
            seed=21,
            compress="jpeg",
            camera_jitter_ms=40,
        ),
        progress=False,
    )
    out = tmp_path / "fleet"
    with open_bag(sim) as reader, BagWriter(out) as bag:
        for conn, t_ns, raw in reader.messages():
            if "/depth_gt/" in conn.topic or "/semantic/" in conn.topic:
                continue  # a fleet records no depth images: LiDAR is the only ground truth
            msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            if hasattr(msg, "header"):
                msg.header.frame_id = _rename(msg.header.frame_id)
            for ts in getattr(msg, "transforms", []):
                ts.child_frame_id = _rename(ts.child_frame_id)
                ts.header.frame_id = _rename(ts.header.frame_id)
            bag.write(_rename(conn.topic), msg, t_ns)
    with open_bag(out) as reader:
        topics = {c.topic for c in reader.connections}
    assert f"/{RING[0]}/image/compressed" in topics and not any("depth_gt" in t for t in topics)
    return str(out)


def _fixed_batch_loss(cfg_dict: dict, weights: str | None) -> float:
    """The distill loss of the student (initial, or ``weights``) on one fixed batch."""
    from bore_depth_ros.models import create_model, get_model_info, load_checkpoint
    from bore_depth_ros.train.config import TrainConfig
    from bore_depth_ros.train.dataset import Augment, RigDataset
    from bore_depth_ros.train.recipes import build_recipe

    cfg = TrainConfig(**cfg_dict)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model) if weights is None else load_checkpoint(weights, model_name=cfg.model)
    recipe = build_recipe(cfg, get_model_info(cfg.model), model.train())
    data = RigDataset(cfg.train, slop_s=cfg.slop)
    no_aug = Augment(flip=0.0, zoom=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0)
    batch = recipe.sample(data, np.random.default_rng(5), (cfg.input_height, cfg.input_width), no_aug)
    with torch.no_grad():
        total = recipe.loss(batch)
    return float(total[0])


def test_distil_a_fleet_recording_from_a_foundation_teacher_into_the_surround_node(ros, tmp_path):
    bag = fleet_bag(tmp_path)
    teacher = save_tiny_depth_anything(tmp_path / "tiny-depth-anything", seed=2)
    labels = tmp_path / "labels"
    done = subprocess.run(
        [entry_point("bore-depth"), "label", bag, "--teacher", teacher, "--out", str(labels)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    cfg = dict(
        model="svr",
        recipe="distill",
        train=[bag],
        teacher=teacher,  # its identity is checked against the labels' (it is not run)
        labels=[str(labels)],
        slop=0.05,  # the cameras fire up to 40 ms apart
        input_height=H,
        input_width=W,
        batch=6,
        steps=12,
        lr=1e-3,
        lr_final=1e-3,
        threads=1,
        save_fp16=False,
        out_dir=str(tmp_path / "run"),
        checkpoint_every=100,
        log_every=4,
    )
    before = _fixed_batch_loss(cfg, None)
    (tmp_path / "distill.yaml").write_text(yaml.safe_dump(cfg))
    done = subprocess.run(
        [entry_point("bore-depth"), "train", str(tmp_path / "distill.yaml"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr
    weights = str(tmp_path / "run" / "weights.pt")
    after = _fixed_batch_loss(cfg, weights)
    print(f"distill loss on a fixed batch: {before:.4f} before, {after:.4f} after 12 steps")
    assert np.isfinite(before) and after < before, (before, after)

    # the weights run in the surround node on the fleet's cameras (names in ring order)
    pfile = write_params(
        tmp_path / "surround.yaml",
        dict(model="svr", weights=weights, backend="onnxruntime", cameras=RING, diagnostics_period=0.5),
    )
    node = NodeProcess(
        [
            entry_point("bore-depth-surround-node"),
            "--ros-args",
            "--params-file",
            str(pfile),
            "-r",
            "__ns:=/fleet",
        ],
        tmp_path / "node.log",
    )
    probes = [DepthProbe(f"/fleet/{cam}", name=f"probe_{cam.lower()}") for cam in RING]
    ex = SingleThreadedExecutor()
    for p in probes:
        ex.add_node(p)
    try:
        assert node.wait_for_output("ready:", 180), node.output()
        assert spin_until(ex, lambda: all(p.connected() for p in probes), 30)
        stamp = Time(sec=40)

        def send():
            for k, (cam, p) in enumerate(zip(RING, probes, strict=True)):
                data, step = encode_image(make_test_image(H, W, seed=k), "rgb8")
                frame = f"{cam}_optical"
                p.publish(
                    image_msg(data, W, H, step, "rgb8", frame, stamp),
                    camera_info(W, H, frame, 48.0, 48.0, 47.5, 31.5, stamp),
                )
            return spin_until(ex, lambda: all(p.complete(stamp) for p in probes), 5)

        assert any(send() for _ in range(6)), node.output()
        for p in probes:
            depth = M.image_array(p.received[(40, 0)]["depth/image"])
            assert depth.shape == (H, W) and np.isfinite(depth).mean() > 0.5
    finally:
        for p in probes:
            ex.remove_node(p)
            p.destroy_node()
        node.stop()
