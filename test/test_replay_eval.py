"""Rosbag replay evaluation: TF buffer, bag reading and sync, LiDAR ground truth, end-to-end eval.

The bags are real rosbag2 files written in the recording layout of ``sim.rig`` from the analytic ray
caster; the model is the real network exported to ONNX and run by ONNX Runtime at a tiny input.
"""

import json
import math

import numpy as np
import pytest

from bore_depth_ros.bag.messages import BAG, TYPESTORE
from bore_depth_ros.bag.reader import FrameSync, cdr_header_stamp_ns, discover_cameras, open_bag, read_tf
from bore_depth_ros.bag.writer import BagWriter
from bore_depth_ros.core import messages as msgs
from bore_depth_ros.core.messages import VIEW_CONFIDENCE
from bore_depth_ros.core.pointcloud import backproject, pack_points
from bore_depth_ros.core.tf_buffer import EXTRAPOLATION, NOT_CONNECTED, UNKNOWN_FRAME, TfBuffer, TfLookupError
from bore_depth_ros.core.transforms import Transform, rotation_z
from bore_depth_ros.engine import DepthEngine, EngineConfig
from bore_depth_ros.replay import EvalConfig, compare_frame, evaluate
from bore_depth_ros.replay.ground_truth import lidar_gt_depth, project_points, remove_occluded
from bore_depth_ros.sim.procedural import Scene, render
from bore_depth_ros.sim.rig import (
    BASE_FRAME,
    LIDAR_FRAME,
    LIDAR_POSITION,
    LIDAR_TOPIC,
    ODOM_FRAME,
    CameraSpec,
    camera_topics,
)

W, H = 96, 64
T0 = 100_000_000_000
DT = 100_000_000
N_FRAMES = 3
LIDAR_DELAY = 20_000_000  # the cloud is stamped 20 ms after the images
CAMERAS = (
    CameraSpec("front", 0.0, 70.0, position=(1.6, 0.0, 1.5)),
    CameraSpec("left", 60.0, 70.0, position=(1.5, 0.5, 1.5)),
)
BASE_FROM_LIDAR = Transform(rotation_z(0.1), np.asarray(LIDAR_POSITION, np.float64))


def base_pose(t_ns: int) -> Transform:
    """odom <- base_link: forward at 2 m/s while yawing at 0.5 rad/s (linear in time, so TF
    interpolation between samples is exact)."""
    s = (t_ns - T0) * 1e-9
    return Transform(rotation_z(0.5 * s), np.array([2.0 * s, 0.1 * s, 0.0]))


def render_camera(scene, cam: CameraSpec, t_ns: int):
    intr = cam.intrinsics(W, H)
    pose = base_pose(t_ns) @ cam.base_from_optical()
    rgb, depth = render(scene, intr, pose.translation, pose.rotation)
    return rgb, depth, intr


def lidar_points(views, t_cloud: int) -> np.ndarray:
    """GT depth of every camera back-projected into lidar_link at the cloud's stamp."""
    lidar_from_odom = (base_pose(t_cloud) @ BASE_FROM_LIDAR).inverse()
    pts = []
    for cam, depth, intr, t_img in views:
        xyz = backproject(depth, intr).reshape(-1, 3).astype(np.float64)
        xyz = xyz[np.isfinite(xyz).all(axis=1)]
        pts.append((lidar_from_odom @ base_pose(t_img) @ cam.base_from_optical()).apply(xyz))
    return np.concatenate(pts).astype(np.float32)


def write_test_bag(path, storage="mcap"):
    """Two cameras, 3 synchronised frames, one leading image without camera_info, TF, LiDAR, clock."""
    scene = Scene.street(seed=0)
    with BagWriter(path, storage) as bag:
        static = [
            BAG.transform_stamped(BAG.header(T0 - 3 * DT, BASE_FRAME), c.optical_frame, c.base_from_optical())
            for c in CAMERAS
        ]
        static.append(
            BAG.transform_stamped(BAG.header(T0 - 3 * DT, BASE_FRAME), LIDAR_FRAME, BASE_FROM_LIDAR)
        )
        bag.write("/tf_static", BAG.tf_message(static), T0 - 3 * DT)
        for t in range(T0 - 2 * DT, T0 + (N_FRAMES + 1) * DT, DT // 2):
            bag.write(
                "/tf",
                BAG.tf_message([BAG.transform_stamped(BAG.header(t, ODOM_FRAME), BASE_FRAME, base_pose(t))]),
                t + 1_000_000,
            )
        # an image before any camera_info: released by the first camera_info (the node's pairing
        # policy), then dropped for want of ground truth of its stamp
        rgb, _, _ = render_camera(scene, CAMERAS[0], T0 - DT)
        bag.write(
            camera_topics("front")["image"],
            BAG.image(BAG.header(T0 - DT, CAMERAS[0].optical_frame), rgb, "rgb8"),
            T0 - DT + 5_000_000,
        )
        truth = {}
        for i in range(N_FRAMES):
            t = T0 + i * DT
            bag.write("/clock", BAG.clock(t), t)
            views = []
            for cam in CAMERAS:
                rgb, depth, intr = render_camera(scene, cam, t)
                topics = camera_topics(cam.name)
                log_t = t + 5_000_000
                bag.write(
                    topics["camera_info"], BAG.camera_info(BAG.header(t, cam.optical_frame), intr), log_t
                )
                bag.write(topics["image"], BAG.image(BAG.header(t, cam.optical_frame), rgb, "rgb8"), log_t)
                bag.write(
                    topics["depth_gt"], BAG.image(BAG.header(t, cam.optical_frame), depth, "32FC1"), log_t
                )
                views.append((cam, depth, intr, t))
                truth[(cam.name, t)] = depth
            t_cloud = t + LIDAR_DELAY
            xyz = lidar_points(views, t_cloud)
            bag.write(
                LIDAR_TOPIC,
                BAG.pointcloud(BAG.header(t_cloud, LIDAR_FRAME), pack_points(xyz[None])),
                t_cloud + 2_000_000,
            )
    return truth


@pytest.fixture(scope="module")
def bag_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "rig"
    write_test_bag(path)
    return path


@pytest.fixture(scope="module")
def engine(structured_weights):
    # fixed test weights (conftest) rather than the shipped defaults, so the pipeline checks below
    # do not change when the embedded weights are retrained
    return DepthEngine(
        EngineConfig(weights=structured_weights, input_height=64, input_width=96, backend="onnxruntime")
    )


def read_bag(path):
    """{topic: [(log_ns, msg), ...]} of a whole bag."""
    out = {}
    with open_bag(path) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype), conn.msgtype))
    return out


# ----------------------------------------------------------------------------- TF buffer
def test_tf_chain_and_inverse_lookups():
    tf = TfBuffer()
    cam = CAMERAS[1]
    tf.set_transform("odom", "base_link", T0, base_pose(T0))
    tf.set_transform("base_link", cam.optical_frame, 0, cam.base_from_optical(), static=True)
    tf.set_transform("base_link", "lidar_link", 0, BASE_FROM_LIDAR, static=True)
    got = tf.lookup("odom", cam.optical_frame, T0)
    want = base_pose(T0) @ cam.base_from_optical()
    np.testing.assert_allclose(got.matrix(), want.matrix(), atol=1e-12)
    # sibling frames: through the common parent, and the reverse lookup is the inverse
    cam_from_lidar = tf.lookup(cam.optical_frame, "lidar_link", T0)
    np.testing.assert_allclose(
        cam_from_lidar.matrix(), (cam.base_from_optical().inverse() @ BASE_FROM_LIDAR).matrix(), atol=1e-12
    )
    np.testing.assert_allclose(
        tf.lookup("lidar_link", cam.optical_frame, T0).matrix(),
        np.linalg.inv(cam_from_lidar.matrix()),
        atol=1e-12,
    )
    # static edges answer at any time; leading slashes name the same frame
    assert tf.lookup("/base_link", "lidar_link", 123) is not None
    np.testing.assert_allclose(tf.lookup("odom", "odom", 5).matrix(), np.eye(4))


def test_tf_interpolates_translation_linearly_and_rotation_by_slerp():
    tf = TfBuffer()
    a = Transform(rotation_z(0.2), np.array([1.0, 2.0, 0.0]))
    b = Transform(rotation_z(1.0), np.array([3.0, -2.0, 1.0]))
    tf.set_transform("odom", "base_link", 1_000, a)
    tf.set_transform("odom", "base_link", 2_000, b)
    q = tf.lookup("odom", "base_link", 1_250)
    np.testing.assert_allclose(q.translation, [1.5, 1.0, 0.25], atol=1e-12)
    np.testing.assert_allclose(q.rotation, rotation_z(0.4), atol=1e-12)
    np.testing.assert_allclose(tf.lookup("odom", "base_link", 2_000).matrix(), b.matrix(), atol=1e-12)
    # 0 = latest
    np.testing.assert_allclose(tf.lookup("odom", "base_link", 0).matrix(), b.matrix(), atol=1e-12)
    # samples arriving out of order are kept sorted
    tf.set_transform("odom", "base_link", 1_500, Transform(rotation_z(0.0), np.zeros(3)))
    np.testing.assert_allclose(tf.lookup("odom", "base_link", 1_500).translation, 0.0)


def test_tf_missing_transforms_return_none_with_a_reason():
    tf = TfBuffer()
    tf.set_transform("odom", "base_link", 1_000, Transform.identity())
    tf.set_transform("odom", "base_link", 2_000, Transform.identity())
    tf.set_transform("map", "other", 0, Transform.identity(), static=True)
    assert tf.lookup("odom", "camera", 1_500) is None
    for target, source, t, reason in [
        ("odom", "camera", 1_500, UNKNOWN_FRAME),
        ("odom", "base_link", 2_500, EXTRAPOLATION),
        ("odom", "base_link", 500, EXTRAPOLATION),
        ("base_link", "other", 1_500, NOT_CONNECTED),
    ]:
        got, err = tf.resolve(target, source, t)
        assert got is None and isinstance(err, TfLookupError) and err.reason == reason, (target, source, t)
        assert source in err.detail or target in err.detail or "time" in err.detail
    with pytest.raises(TfLookupError):
        tf.lookup_transform("odom", "base_link", 3_000)
    # a bounded cache forgets old samples
    small = TfBuffer(cache_time_ns=1_000)
    for t in range(0, 5_001, 500):
        small.set_transform("odom", "base_link", t, Transform.identity())
    assert small.lookup("odom", "base_link", 3_000) is None and small.lookup("odom", "base_link", 4_500)


# ----------------------------------------------------------------------------- bag reading
def test_discovery_sync_and_drops(bag_path):
    with open_bag(bag_path) as reader:
        cams = discover_cameras(reader)
        assert [c.namespace for c in cams] == ["/cameras/front", "/cameras/left"]
        assert all(c.depth_gt == c.namespace + "/depth_gt/image" and c.encoding == "rgb8" for c in cams)
        explicit = discover_cameras(reader, ["/cameras/left/image"])
        assert [c.camera_info for c in explicit] == ["/cameras/left/camera_info"]
        with pytest.raises(ValueError, match="camera_info"):
            discover_cameras(reader, ["/cameras/left/depth_gt/image"])
        sync = FrameSync(reader, cams)
        frames = list(sync)
        # the leading image has no camera_info of its own; replay pairs as the node does (one
        # policy, core.pairing): the stream's first camera_info releases it, as a fallback
        assert [(f.camera.name, f.stamp_ns) for f in frames] == [("cameras_front", T0 - DT)] + [
            (c, T0 + i * DT) for i in range(N_FRAMES) for c in ("cameras_front", "cameras_left")
        ]
        assert not frames[0].info_exact and frames[0].depth_gt is None
        assert all(f.info_exact and f.depth_gt is not None for f in frames[1:])
        assert sync.drops_by_reason() == {}
        assert sync.tf.lookup("odom", "camera_left_optical_frame", T0 + DT) is not None
        tf = read_tf(reader)
        assert {"odom", "base_link", "lidar_link"} <= tf.frames()


def test_header_stamp_read_from_cdr():
    msg = BAG.image(BAG.header(123_456_789_012, "f"), np.zeros((2, 3, 3), np.uint8), "rgb8")
    raw = TYPESTORE.serialize_cdr(msg, msg.__msgtype__)
    assert cdr_header_stamp_ns(raw) == 123_456_789_012
    raw_be = TYPESTORE.serialize_cdr(msg, msg.__msgtype__, little_endian=False)
    assert cdr_header_stamp_ns(raw_be) == 123_456_789_012


# ----------------------------------------------------------------------------- comparison path
def test_perfect_prediction_scores_perfectly():
    cam = CAMERAS[0]
    _, gt, _ = render_camera(Scene.street(seed=0), cam, T0)
    assert np.isinf(gt).any() and np.isfinite(gt).any()
    pred = np.where(np.isfinite(gt), gt, np.nan).astype(np.float32)  # published depth: NaN for sky
    cmp = compare_frame(pred, gt, min_depth=0.1, max_depth=80.0)
    for m in (cmp.metric, cmp.median):
        assert m["abs_rel"] == pytest.approx(0.0, abs=1e-7) and m["rmse"] == pytest.approx(0.0, abs=1e-5)
        assert m["a1"] == 1.0 and m["a3"] == 1.0
    assert cmp.median["scale"] == pytest.approx(1.0)
    b = cmp.boundary
    assert b["n_gt"] > 0 and b["precision"] == 1.0 and b["recall"] == 1.0 and b["f1"] == 1.0
    assert b["dbe_acc"] == 0.0 and b["dbe_comp"] == 0.0
    assert cmp.bin_pixels.sum() == cmp.metric["n_valid"] and np.all(cmp.bin_abs_rel_sum == 0)
    # a prediction twice too far: metric AbsRel 1, median-scaled perfect, boundaries unchanged
    cmp2 = compare_frame(pred * 2, gt, min_depth=0.1, max_depth=1e3)
    assert cmp2.metric["abs_rel"] == pytest.approx(1.0) and cmp2.median["abs_rel"] == pytest.approx(
        0.0, abs=1e-6
    )
    assert cmp2.boundary["f1"] == 1.0


def test_the_confidence_curve_follows_the_error_the_confidence_predicts():
    rng = np.random.default_rng(1)
    gt = rng.uniform(2.0, 40.0, (40, 60)).astype(np.float32)
    wrong = rng.uniform(0.0, 0.5, gt.shape).astype(np.float32)  # relative error of each pixel
    pred = gt * (1 + wrong)
    gt[0, :] = np.inf  # sky: not scored
    informative = compare_frame(pred, gt, boundary=False, confidence=1 - wrong).confidence_abs_rel
    inverted = compare_frame(pred, gt, boundary=False, confidence=wrong).confidence_abs_rel
    metric_all, metric_half, metric_fifth = informative[0]
    valid = np.isfinite(gt)
    assert metric_all == pytest.approx(float(np.mean(wrong[valid])), rel=1e-5)
    # the 20 % most confident pixels are the 20 % with the smallest error
    best = np.sort(wrong[valid])[: round(0.2 * valid.sum())]
    assert (
        metric_fifth == pytest.approx(float(best.mean()), rel=1e-5)
        and metric_fifth < metric_half < metric_all
    )
    assert inverted[0, 2] > inverted[0, 1] > inverted[0, 0] == pytest.approx(metric_all)
    assert np.all(np.isfinite(informative[1]))  # median-scaled too
    assert np.all(np.isnan(compare_frame(pred, gt, boundary=False).confidence_abs_rel))
    with pytest.raises(ValueError, match="confidence"):
        compare_frame(pred, gt, boundary=False, confidence=np.ones((4, 4)))


def test_lidar_projection_reproduces_ground_truth_depth():
    scene = Scene.street(seed=0)
    cam = CAMERAS[1]
    t_img, t_cloud = T0 + DT, T0 + DT + 3 * LIDAR_DELAY
    _, gt, intr = render_camera(scene, cam, t_img)
    xyz = lidar_points([(cam, gt, intr, t_img)], t_cloud)
    tf = TfBuffer()
    for t in (T0, T0 + 2 * DT):
        tf.set_transform(ODOM_FRAME, BASE_FRAME, t, base_pose(t))
    tf.set_transform(BASE_FRAME, cam.optical_frame, 0, cam.base_from_optical(), static=True)
    tf.set_transform(BASE_FRAME, LIDAR_FRAME, 0, BASE_FROM_LIDAR, static=True)
    depth, compensated = lidar_gt_depth(tf, xyz, LIDAR_FRAME, t_cloud, cam.optical_frame, t_img, intr)
    assert compensated and depth.shape == (H, W)
    hit = np.isfinite(depth)
    finite_gt = np.isfinite(gt)
    assert not (hit & ~finite_gt).any()
    assert hit.sum() == finite_gt.sum()
    np.testing.assert_allclose(depth[hit], gt[hit], rtol=1e-4)
    # without motion compensation the same points land elsewhere
    naive = project_points(
        (tf.lookup(cam.optical_frame, LIDAR_FRAME, t_img)).apply(xyz.astype(np.float64)), intr
    )
    both = np.isfinite(naive) & finite_gt
    assert np.nanmax(np.abs(naive[both] - gt[both]) / gt[both]) > 1e-2
    with pytest.raises(TfLookupError):
        lidar_gt_depth(tf, xyz, "velodyne", t_cloud, cam.optical_frame, t_img, intr)


def test_occlusion_filter_drops_points_seen_through_nearer_objects():
    d = np.full((9, 12), np.nan, np.float32)
    d[4, 2] = 5.0  # a point on a near object
    d[4, 5] = 20.0  # background 3 px away: hidden behind it from the camera
    d[4, 5 + 5] = 20.0  # background 8 px away: kept
    d[5, 2] = 5.3  # same surface within the tolerance: kept
    out = remove_occluded(d, window=4, tolerance=0.1)
    assert np.isnan(out[4, 5]) and out[4, 10] == 20.0 and out[4, 2] == 5.0 and out[5, 2] == np.float32(5.3)
    assert np.isfinite(out).sum() == 3
    assert np.array_equal(remove_occluded(d, window=0), d, equal_nan=True)


# ----------------------------------------------------------------------------- end to end
# The untrained network's confidence lies in about [0.98, 1]; this masks part of every image.
CONF_THRESHOLD = 0.5


def test_evaluate_with_depth_ground_truth_and_output_bag(bag_path, engine, tmp_path):
    out_bag = tmp_path / "out_bag"
    cfg = EvalConfig(
        bag=str(bag_path),
        input_height=64,
        input_width=96,
        scale_mode="ground_plane",
        confidence_threshold=CONF_THRESHOLD,
        output_bag=str(out_bag),
        report_dir=str(tmp_path / "report"),
        points_decimation=4,
        panels_per_camera=2,
    )
    res = evaluate(cfg, progress=False, engine=engine)
    assert res.frames["evaluated"] == 2 * N_FRAMES and res.frames["images_read"] == 2 * N_FRAMES + 1
    # the leading image is paired as the node pairs it, then has no ground truth of its stamp
    assert res.drops == {"gt_depth_missing": 1}
    assert res.cameras[0].drops == {"gt_depth_missing": 1} and res.cameras[1].drops == {}
    for c in res.cameras:
        assert c.frames == N_FRAMES and c.gt_source == f"depth:{c.namespace}/depth_gt/image"
        assert c.camera_height == pytest.approx(1.5)  # from TF: optical origin z in base_link
        assert math.isfinite(c.metric["abs_rel"]) and math.isfinite(c.median["abs_rel"])
        assert 0 <= c.boundary["f1"] <= 1 and c.boundary["n_gt"] > 0
        assert len(c.distance_bins) == 5 and len(c.panels) == 2
        # every fraction of the most confident pixels scored; all of them = the frame's AbsRel
        assert [r["keep"] for r in c.confidence_curve] == [1.0, 0.5, 0.2]
        assert all(math.isfinite(r["abs_rel_metric"]) for r in c.confidence_curve)
        assert c.confidence_curve[0]["abs_rel_metric"] == pytest.approx(c.metric["abs_rel"], rel=1e-4)
    assert res.overall["metric"]["abs_rel"] == pytest.approx(
        np.mean([c.metric["abs_rel"] for c in res.cameras])
    )
    assert res.overall["confidence_curve"][2]["abs_rel_median"] == pytest.approx(
        np.mean([c.confidence_curve[2]["abs_rel_median"] for c in res.cameras])
    )
    assert res.timing["frames_per_second"] > 0 and res.timing["inference_ms"] > 0
    report = tmp_path / "report"
    for name in ("report.md", "report.html", "metrics.json", "error_vs_distance.png"):
        assert (report / name).stat().st_size > 0, name
    for c in res.cameras:
        for p in c.panels:
            assert (report / p).stat().st_size > 0
    html = (report / "report.html").read_text()
    assert "<img src='error_vs_distance.png'" in html and "gt_depth_missing" in html
    assert "Confidence: error of the most confident pixels" in html
    assert engine.weights_source in (report / "report.md").read_text()
    saved = json.loads((report / "metrics.json").read_text())
    assert saved["frames"]["evaluated"] == 6 and saved["drops"] == {"gt_depth_missing": 1}

    topics = read_bag(out_bag)
    invalid_fractions = []
    for ns in ("/cameras/front", "/cameras/left"):
        depth_msgs = topics[f"{ns}/depth/image"]
        assert len(depth_msgs) == N_FRAMES
        conf_msgs = topics[f"{ns}/confidence/image"]
        for (_, d, _), (_, c, _) in zip(depth_msgs, conf_msgs):
            assert (d.width, d.height, d.encoding) == (W, H, "32FC1")
            depth, conf = msgs.image_array(d), msgs.image_array(c)
            assert np.array_equal(np.isnan(depth), conf < CONF_THRESHOLD)  # NaN exactly where invalid
            assert np.all(depth[np.isfinite(depth)] > 0)
            invalid_fractions.append(np.isnan(depth).mean())
        info = topics[f"{ns}/depth/camera_info"][0][1]
        assert (info.width, info.height) == (W, H) and info.header.frame_id.endswith("_optical_frame")
        cloud = topics[f"{ns}/points"][0][1]
        assert (cloud.height, cloud.width) == (
            H // 4,
            W // 4,
        ) and cloud.header.frame_id == info.header.frame_id
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
        xyz = msgs.cloud_fields(cloud).reshape(H // 4, W // 4, 3)
        np.testing.assert_allclose(xyz[..., 2], msgs.image_array(depth_msgs[0][1])[::4, ::4])
        _, vc, msgtype = topics[f"{ns}/view_confidence"][0]
        assert msgtype == VIEW_CONFIDENCE and len(topics[f"{ns}/view_confidence"]) == N_FRAMES
        assert (vc.model, vc.backend, vc.camera_frame) == ("bore_depth", "onnxruntime", info.header.frame_id)
        assert vc.scale_source in ("ground_plane", "initial", "held") and vc.inference_time_ms > 0
        assert vc.valid_fraction == pytest.approx(1 - invalid_fractions[-N_FRAMES])
        assert len(topics[f"{ns}/image"]) >= N_FRAMES and len(topics[f"{ns}/camera_info"]) == N_FRAMES
    assert {"/tf_static", "/tf", "/clock"} <= set(topics)
    assert 0 < np.mean(invalid_fractions) < 1


def test_evaluate_with_lidar_ground_truth(bag_path, engine, tmp_path):
    cfg = EvalConfig(
        bag=str(bag_path),
        gt="lidar",
        input_height=64,
        input_width=96,
        scale_mode="median",
        report_dir=str(tmp_path / "report"),
        output_bag=str(tmp_path / "out_sqlite"),
        storage="sqlite3",
        panels_per_camera=1,
        max_frames=4,
    )
    res = evaluate(cfg, progress=False, engine=engine)
    assert res.frames["evaluated"] == 4 and res.drops == {"lidar_cloud_missing": 1}
    assert any("motion-compensated" in n for n in res.notes)
    assert any("max_frames" in n for n in res.notes)
    for c in res.cameras:
        assert c.gt_source == "lidar:/lidar/points" and c.boundary is None and c.frames == 2
        assert c.scale["sources"] == {"gt_median": 2}
        # the oracle scale equalises medians, so metric and median-scaled results nearly agree
        assert c.metric["abs_rel"] == pytest.approx(c.median["abs_rel"], rel=0.2)
        assert sum(b["pixels"] for b in c.distance_bins) > 0
    topics = read_bag(tmp_path / "out_sqlite")
    assert len(topics["/cameras/front/view_confidence"]) == 2
    assert topics["/cameras/front/view_confidence"][0][1].scale_source == "gt_median"
    assert "/lidar/points" in topics
    assert (tmp_path / "report" / "report.html").is_file()


def test_an_existing_report_is_replaced_only_with_force(bag_path, engine, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("a user's notes")

    def run(**kw):
        cfg = EvalConfig(
            bag=str(bag_path),
            input_height=64,
            input_width=96,
            report_dir=str(report),
            panels_per_camera=0,
            max_frames=2,
            **kw,
        )
        return evaluate(cfg, progress=False, engine=engine)

    with pytest.raises(FileExistsError, match="report already exists.*--force"):
        run()
    assert (report / "report.md").read_text() == "a user's notes"
    assert run(force=True).frames["evaluated"] == 2
    assert "a user's notes" not in (report / "report.md").read_text()


def test_a_truncated_or_missing_bag_is_one_line_and_leaves_nothing(bag_path, tmp_path, capsys):
    import argparse

    from bore_depth_ros.cli import eval as eval_cli

    mcap = next(bag_path.glob("*.mcap"))
    truncated = tmp_path / "truncated.mcap"
    truncated.write_bytes(mcap.read_bytes()[:5000])
    p = argparse.ArgumentParser()
    eval_cli.add_arguments(p)
    for bag, why in ((truncated, f"cannot read bag {truncated}"), (tmp_path / "nope", "bag not found")):
        report = tmp_path / f"report_{bag.name}"
        assert eval_cli.run(p.parse_args([str(bag), "--out", str(report), "--no-progress"])) == 2
        err = capsys.readouterr().err
        assert err.startswith("bore-depth eval: ") and why in err and err.count("\n") == 1, err
        assert not report.exists()  # an early failure leaves no folder behind
