"""Ring order and neighbouring views of any rig from TF (core.ring), in training and eval alike:
a rig whose camera names say nothing (DDAD-style CAMERA_01..06, not in ring order) is ordered by
where its cameras look, written to a real bag with the project's BagWriter and /tf_static."""

import dataclasses
import math

import numpy as np
import pytest

from bore_depth_ros.bag.reader import discover_cameras, open_bag
from bore_depth_ros.bag.writer import BagWriter
from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.core.ring import (
    check_order,
    optical_azimuth,
    overlap_pairs,
    ring_neighbours,
    ring_order,
)
from bore_depth_ros.core.transforms import OPTICAL_IN_BODY, Transform, rotation_z
from bore_depth_ros.replay.ground_truth import ring_ordered_by_tf
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.sim.rig import RING_ORDER, SURROUND_RIG, optical_frame
from bore_depth_ros.train.dataset import RigDataset

SPECS = {c.name: c for c in SURROUND_RIG}
# DDAD-style names, deliberately not in ring order (alphabetical discovery gives 01, 02, ...)
DDAD = {
    "back_left": "CAMERA_01",
    "front": "CAMERA_02",
    "back_right": "CAMERA_03",
    "front_left": "CAMERA_04",
    "back": "CAMERA_05",
    "front_right": "CAMERA_06",
}


def yawed(deg: float) -> Transform:
    return Transform(rotation_z(math.radians(deg)) @ OPTICAL_IN_BODY, np.zeros(3))


# --- core.ring, no bag ----------------------------------------------------------------------------


def test_ring_order_is_counter_clockwise_from_the_most_forward_camera():
    shuffled = [SPECS[n] for n in ("back", "front_right", "back_left", "front", "back_right", "front_left")]
    order = ring_order([c.base_from_optical() for c in shuffled])
    assert [shuffled[i].name for i in order] == list(RING_ORDER)
    # the most forward camera starts the ring even when it looks slightly right
    assert ring_order([yawed(90), yawed(-5), yawed(180), yawed(-90)]) == [1, 0, 2, 3]
    assert math.degrees(optical_azimuth(yawed(-5))) == pytest.approx(-5)


def test_overlap_pairs_of_the_six_camera_rig_are_the_ring_neighbours():
    ring = [SPECS[n] for n in RING_ORDER]
    for w, h in ((96, 64), (320, 192)):
        pairs = overlap_pairs([c.intrinsics(w, h) for c in ring], [c.base_from_optical() for c in ring])
        assert pairs == ring_neighbours(6) == [((v + 1) % 6, v) for v in range(6)]
    # the pairs follow the cameras, whatever their order: (left, right) by index
    shuffled = [SPECS[n] for n in DDAD]  # back_left, front, back_right, front_left, back, front_right
    pairs = overlap_pairs([c.intrinsics(96, 64) for c in shuffled], [c.base_from_optical() for c in shuffled])
    names = {(shuffled[a].name, shuffled[b].name) for a, b in pairs}
    assert names == {(RING_ORDER[(v + 1) % 6], RING_ORDER[v]) for v in range(6)}


def test_overlap_comes_from_the_field_of_view():
    k = Intrinsics(50.0, 50.0, 47.5, 31.5, 96, 64)  # 2 atan(48/50): about 87 degrees wide
    assert overlap_pairs([k, k], [yawed(0), yawed(80)]) == [(1, 0)]
    assert overlap_pairs([k, k], [yawed(0), yawed(95)]) == []  # 87 deg wide cameras 95 deg apart
    assert overlap_pairs([k, k, k], [yawed(0), yawed(180), yawed(-80)]) == [(0, 2)]
    assert ring_neighbours(1) == [] and ring_neighbours(2) == [(1, 0), (0, 1)]


def test_check_order_says_when_the_configured_order_is_not_the_ring():
    ring = [SPECS[n] for n in RING_ORDER]
    assert check_order(list(RING_ORDER), [c.base_from_optical() for c in ring]) is None
    rotated = ring[2:] + ring[:2]
    msg = check_order([c.name for c in rotated], [c.base_from_optical() for c in rotated])
    assert "another camera" in msg and "[front, front_left, back_left, back, back_right, front_right]" in msg
    clockwise = [ring[0], *ring[:0:-1]]
    assert "clockwise" in check_order([c.name for c in clockwise], [c.base_from_optical() for c in clockwise])
    mixed = [SPECS[n] for n in DDAD]
    assert "not the ring order" in check_order(
        [c.name for c in mixed], [c.base_from_optical() for c in mixed]
    )
    assert check_order(["a", "b"], [yawed(0), None]) is None  # nothing to compare with


# --- a real bag with DDAD-style names ---------------------------------------------------------------


def _rename(msg, frames: dict):
    """The message with its header frame (and a TF message's frames) renamed."""
    if hasattr(msg, "transforms"):
        tfs = [
            dataclasses.replace(t, child_frame_id=frames.get(t.child_frame_id, t.child_frame_id))
            for t in msg.transforms
        ]
        return dataclasses.replace(msg, transforms=tfs)
    header = dataclasses.replace(msg.header, frame_id=frames.get(msg.header.frame_id, msg.header.frame_id))
    return dataclasses.replace(msg, header=header)


@pytest.fixture(scope="module")
def ddad_bag(tmp_path_factory):
    """The project's six-camera recording with cameras renamed CAMERA_01..06 (topics and frames)."""
    root = tmp_path_factory.mktemp("ddad")
    record(
        root / "sim",
        RecordingConfig(rig="surround", frames=2, width=96, height=64, lidar=False, seed=5),
        progress=False,
    )
    frames = {optical_frame(n): f"{c}_optical" for n, c in DDAD.items()}
    with open_bag(root / "sim") as reader, BagWriter(root / "ddad") as out:
        for conn, log_ns, raw in reader.messages():
            parts = conn.topic.split("/")  # /cameras/<name>/...
            if conn.topic.startswith("/cameras/"):
                if "semantic" in conn.topic:
                    continue
                topic = "/" + "/".join([DDAD[parts[2]], *parts[3:]])
            else:
                topic = conn.topic
            msg = reader.deserialize(raw, conn.msgtype)
            out.write(topic, _rename(msg, frames) if conn.topic not in ("/clock",) else msg, log_ns)
    return root / "ddad"


EXPECTED = [DDAD[n] for n in RING_ORDER]  # CAMERA_02, 04, 01, 05, 03, 06


def test_training_orders_an_unknown_rig_by_tf(ddad_bag, tmp_path):
    with open_bag(ddad_bag) as reader:
        found = [c.namespace for c in discover_cameras(reader)]
    assert found == [f"/CAMERA_0{i}" for i in range(1, 7)]  # discovery is alphabetical: not a ring
    data = RigDataset([ddad_bag], index_dir=tmp_path)
    assert data.cameras == EXPECTED
    s = data[0]
    azimuths = [math.degrees(optical_azimuth(t)) % 360 for t in s.base_from_cam]
    assert azimuths == pytest.approx([0, 55, 110, 180, 250, 305])
    assert s.topics == [f"/{c}/image" for c in EXPECTED]
    assert data.neighbour_pairs == ring_neighbours(6)


def test_eval_orders_the_rig_as_training_does(ddad_bag):
    with open_bag(ddad_bag) as reader:
        cams, extrinsics = ring_ordered_by_tf(reader, discover_cameras(reader))
    assert [c.namespace.strip("/") for c in cams] == EXPECTED
    assert all(t is not None for t in extrinsics)


def test_cameras_given_by_namespace_keep_their_order_and_warn_when_tf_disagrees(ddad_bag, tmp_path, caplog):
    given = ["/CAMERA_01", "/CAMERA_02/image"]  # a namespace and an image topic
    data = RigDataset([ddad_bag], cameras=given, index_dir=tmp_path)
    assert data.cameras == ["CAMERA_01", "CAMERA_02"]
    assert "TF give [CAMERA_02, CAMERA_01]" in caplog.text
    with pytest.raises(ValueError, match="neither an image topic nor a camera namespace"):
        RigDataset([ddad_bag], cameras=["/CAMERA_09"], cache=False)


def test_without_tf_static_the_sim_names_are_the_fallback(tmp_path):
    record(
        tmp_path / "sim",
        RecordingConfig(rig="surround", frames=1, width=64, height=32, lidar=False),
        progress=False,
    )
    with open_bag(tmp_path / "sim") as reader, BagWriter(tmp_path / "no_tf") as out:
        for conn, log_ns, raw in reader.messages():
            if conn.topic != "/tf_static":
                out.write_raw(conn.topic, conn.msgtype, bytes(raw), log_ns)
    with open_bag(tmp_path / "no_tf") as reader:
        cams, extrinsics = ring_ordered_by_tf(reader, discover_cameras(reader))
    assert [c.namespace.split("/")[-1] for c in cams] == list(RING_ORDER)
    assert extrinsics == [None] * 6
