"""The streaming training dataset on real recordings rendered by the project's sim: the same sets as
loading every frame in memory, an index cached on disk, the synchroniser's slop, LiDAR ground truth
projected by eval's code where a camera has no depth image, and the same batches with DataLoader
workers as without."""

import os

import numpy as np
import pytest
import torch

from bore_depth_ros.bag.reader import FrameSync, discover_cameras, open_bag
from bore_depth_ros.bag.writer import BagWriter
from bore_depth_ros.core.messages import cloud_fields, intrinsics, validate_image
from bore_depth_ros.core.tf_buffer import TfBuffer
from bore_depth_ros.models import create_model, get_model_info
from bore_depth_ros.replay.config import EvalConfig
from bore_depth_ros.replay.ground_truth import lidar_gt_depth, remove_occluded
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.train import dataset as ds
from bore_depth_ros.train.batches import step_batches
from bore_depth_ros.train.config import TrainConfig
from bore_depth_ros.train.dataset import Augment, RigDataset, load_rig_samples
from bore_depth_ros.train.recipes import build_recipe
from bore_depth_ros.train.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    """Six cameras stamped up to 20 ms apart (each with its own ego pose), dense depth and LiDAR."""
    path = tmp_path_factory.mktemp("streaming") / "rec"
    record(
        path,
        RecordingConfig(
            rig="surround", frames=3, width=96, height=64, lidar=True, seed=3, camera_jitter_ms=20.0
        ),
        progress=False,
    )
    return path


@pytest.fixture(scope="module")
def lidar_only(bag, tmp_path_factory):
    """The same recording without any depth image: LiDAR is the only ground truth."""
    path = tmp_path_factory.mktemp("lidar_only") / "rec"
    with open_bag(bag) as reader, BagWriter(path) as out:
        for conn, log_ns, raw in reader.messages():
            if "depth_gt" not in conn.topic and "semantic" not in conn.topic:
                out.write_raw(
                    conn.topic, conn.msgtype, bytes(raw), log_ns, latched=conn.topic == "/tf_static"
                )
    return path


def assert_same_samples(streamed, in_memory):
    assert len(streamed) == len(in_memory)
    for i, ref in enumerate(in_memory):
        s = streamed[i]
        assert (s.stamp_ns, s.prev, s.source, s.cameras, s.topics, s.stamps) == (
            ref.stamp_ns,
            ref.prev,
            ref.source,
            ref.cameras,
            ref.topics,
            ref.stamps,
        )
        assert s.intrinsics == ref.intrinsics
        for a, b in zip(s.images, ref.images):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(s.depth_gt, ref.depth_gt):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)
        for a, b in zip([*s.base_from_cam, s.odom_from_base], [*ref.base_from_cam, ref.odom_from_base]):
            np.testing.assert_array_equal(a.matrix(), b.matrix())


def test_streaming_returns_the_in_memory_samples(bag, tmp_path):
    ref, drops = load_rig_samples(bag)
    data = RigDataset([bag], index_dir=tmp_path)
    assert len(ref) == 3 and data.drops == drops == {}
    assert_same_samples(data, ref)
    assert [s.prev for s in data.samples] == [None, 0, 1] == [data.prev_of(i) for i in range(3)]
    assert data.with_previous() == [1, 2]
    assert data.samples[2].images[0].shape == (64, 96, 3)  # light references read on demand
    assert data.num_views == 6 and data.neighbour_pairs == [((v + 1) % 6, v) for v in range(6)]
    # two bags: indices and prev links continue across them
    two = RigDataset([bag, bag], index_dir=tmp_path)
    assert len(two) == 6 and [s.prev for s in two.samples] == [None, 0, 1, None, 3, 4]
    np.testing.assert_array_equal(two[4].images[2], ref[1].images[2])


def test_the_index_is_built_once_and_rebuilt_when_the_bag_changes(bag, tmp_path, monkeypatch):
    RigDataset([bag], index_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    scans = []
    real_scan = ds._scan_bag
    monkeypatch.setattr(ds, "_scan_bag", lambda *a, **k: scans.append(a) or real_scan(*a, **k))
    cached = RigDataset([bag], index_dir=tmp_path)
    assert scans == [] and len(cached) == 3
    RigDataset([bag], index_dir=tmp_path, slop_s=0.01)  # other settings: another index
    assert len(scans) == 1
    storage = next(bag.glob("*.mcap"))
    st = storage.stat()
    os.utime(storage, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # the bag "changed"
    RigDataset([bag], index_dir=tmp_path)
    assert len(scans) == 2 and len(list(tmp_path.glob("*.npz"))) == 3
    assert not any(p.suffix == ".npz" for p in bag.iterdir())  # nothing written next to the bag


def test_slop_decides_which_sets_form(bag, tmp_path):
    for slop in (0.03, 0.01, 0.0):
        ref, drops = load_rig_samples(bag, slop_s=slop)
        data = RigDataset([bag], slop_s=slop, index_dir=tmp_path) if ref else None
        if data is not None:
            assert data.drops == drops
            assert_same_samples(data, ref)
        assert len(ref) == {0.03: 3, 0.01: 1, 0.0: 0}[slop]
    with pytest.raises(ValueError, match="no synchronized camera set"):
        RigDataset([bag], slop_s=0.0, index_dir=tmp_path)


def eval_lidar_depth(bag) -> dict:
    """(camera namespace, image stamp) -> the sparse depth bore-depth eval scores against: its
    FrameSync, nearest cloud, projection through TF and occlusion filter, with eval's defaults."""
    cfg = EvalConfig(bag=str(bag))
    out = {}
    with open_bag(bag) as reader:
        cams = discover_cameras(reader)
        sync = FrameSync(reader, cams, TfBuffer(cache_time_ns=60_000_000_000), cloud_topic="/lidar/points")
        for fr in sync:
            cloud, cloud_stamp = sync.nearest_cloud(fr.stamp_ns, int(cfg.lidar_max_dt * 1e9), "/lidar/points")
            rgb = validate_image(fr.image)
            k = intrinsics(fr.camera_info, rgb.shape[1], rgb.shape[0])
            gt, _ = lidar_gt_depth(
                sync.tf,
                cloud_fields(cloud),
                cloud.header.frame_id,
                cloud_stamp,
                fr.image.header.frame_id,
                fr.stamp_ns,
                k,
                cfg.odom_frame,
            )
            out[(fr.camera.namespace, fr.stamp_ns)] = remove_occluded(
                gt, cfg.lidar_occlusion_window, cfg.lidar_occlusion_tolerance
            )
    return out


def test_lidar_only_bag_gives_eval_s_sparse_depth(bag, lidar_only, tmp_path):
    data = RigDataset([lidar_only], index_dir=tmp_path)
    dense = RigDataset([bag], index_dir=tmp_path)
    expected = eval_lidar_depth(lidar_only)
    assert len(data) == 3 and data.drops == {} and data.no_ground_truth == {}
    assert_same_samples(data, load_rig_samples(lidar_only)[0])
    for i in range(len(data)):
        s, d = data[i], dense[i]
        for v, ns in enumerate(s.topics):
            sparse = s.depth_gt[v]
            np.testing.assert_array_equal(sparse, expected[(ns.rsplit("/", 1)[0], s.stamps[v])])
            valid = np.isfinite(sparse)
            assert 0.05 < valid.mean() < 0.5  # sparse
            both = valid & np.isfinite(d.depth_gt[v])
            rel = np.abs(sparse[both] - d.depth_gt[v][both]) / d.depth_gt[v][both]
            assert np.median(rel) < 0.01 and np.mean(rel < 0.05) > 0.95  # the metric depth of the scene
    # dense depth images win where present; an unknown LiDAR topic is refused
    assert all(np.isfinite(x).mean() > 0.5 for x in dense[0].depth_gt)
    with pytest.raises(ValueError, match="not a PointCloud2 topic"):
        RigDataset([lidar_only], lidar_topic="/velodyne_points", cache=False)


def config(bag, out, **kw):
    base = dict(
        model="bore_depth",
        recipe="supervised_relative",
        train=[str(bag)],
        out_dir=str(out),
        input_height=64,
        input_width=96,
        batch=2,
        steps=2,
        lr=1e-3,
        lr_final=1e-3,
        threads=1,
        log_every=1000,
        checkpoint_every=1000,
        save_fp16=False,
    )
    return TrainConfig(**{**base, **kw})


def test_workers_give_the_same_batches(bag, tmp_path):
    cfg = config(bag, tmp_path / "unused")
    info = get_model_info(cfg.model)
    recipe = build_recipe(cfg, info, create_model(cfg.model))
    data = RigDataset([bag], index_dir=tmp_path)
    runs = []
    for workers in (0, 2):
        rng = np.random.default_rng(5)
        batches = step_batches(recipe, data, rng, (64, 96), Augment(), workers)
        runs.append(([next(batches) for _ in range(3)], rng.bit_generator.state))
        batches.close()
    (plain, state0), (workers, state2) = runs
    assert state0 == state2  # the trainer's generator advanced alike: checkpoints resume alike
    for a, b in zip(plain, workers):
        assert a.keys() == b.keys()
        for k in ("image", "gt", "focal"):
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.slow
def test_training_with_workers_learns_exactly_as_without(bag, tmp_path):
    plain = train(config(bag, tmp_path / "plain"), progress=False)
    workers = train(config(bag, tmp_path / "workers", num_workers=2), progress=False)
    a = torch.load(f"{plain.out_dir}/weights.pt", weights_only=True)["state_dict"]
    b = torch.load(f"{workers.out_dir}/weights.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
