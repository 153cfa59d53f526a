"""Teacher labels (``bore-depth label``, train/labels.py, train/foundation.py): a tiny random Depth
Anything model built with transformers labels a small sim recording; the store has every view, fp16,
the teacher's identity and size; a hub id missing from the cache is one line naming its folder;
training refuses labels of another teacher or size and labels that miss a view; a distill step reads
the labels without loading the teacher. CPU, one thread, 64x96 recordings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bore_depth_ros.core.camera import Intrinsics
from bore_depth_ros.models import create_model, get_model_info
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.train import foundation
from bore_depth_ros.train.config import TrainConfig
from bore_depth_ros.train.dataset import Augment, RigDataset, prepare_view
from bore_depth_ros.train.labels import (
    INDEX,
    Labels,
    LabelStore,
    LabelView,
    crop_resize,
    label_bags,
    view_window,
)
from bore_depth_ros.train.recipes import build_recipe
from bore_depth_ros.train.recipes import teacher as teacher_mod
from bore_depth_ros.train.recipes.teacher import open_labelling_teacher, teacher_depth_features
from harness import entry_point

HW = (64, 96)
TINY_SIZE = 56  # preprocessor size: 64x96 images go in at 56x84

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored


def _record(path, seed):
    cfg = RecordingConfig(
        rig="surround", frames=3, width=HW[1], height=HW[0], lidar=False, rate_hz=5, seed=seed
    )
    record(path, cfg, progress=False)
    return str(path)


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return _record(tmp_path_factory.mktemp("label") / "rec", 3)


def save_tiny_depth_anything(folder, seed=0):
    """A random DepthAnythingForDepthEstimation (ViT of 4 layers, 32 wide) in the layout of the hub
    checkpoints: config.json, model.safetensors and a preprocessor_config.json."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        mlp_ratio=2,
        patch_size=14,
        image_size=TINY_SIZE,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
        initializer_range=0.1,  # (0.02: a random head's output is ~1e-8, constant in fp16)
    )
    cfg = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        patch_size=14,
        initializer_range=0.1,
    )
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(cfg).eval()
    with torch.no_grad():  # positive everywhere (the head ends in a ReLU)
        model.head.conv3.bias.fill_(1.0)
    model.save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"height": TINY_SIZE, "width": TINY_SIZE},
                "keep_aspect_ratio": True,
                "ensure_multiple_of": 14,
                "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225],
            }
        )
    )
    return str(folder)


@pytest.fixture(scope="module")
def tiny_da(tmp_path_factory):
    return save_tiny_depth_anything(tmp_path_factory.mktemp("tiny_da") / "tiny-depth-anything")


@pytest.fixture(scope="module")
def labels(bag, tiny_da, tmp_path_factory):
    out = tmp_path_factory.mktemp("stores") / "tiny_labels"
    index = label_bags([bag], open_labelling_teacher(tiny_da), out, batch=4)
    return str(out), index


@pytest.fixture(scope="module")
def teacher_weights(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    torch.save({"state_dict": create_model("bore_depth").state_dict()}, path)
    return str(path)


def distill_config(bag, **kw):
    base = dict(
        model="svr",
        recipe="distill",
        train=[bag],
        input_height=HW[0],
        input_width=HW[1],
        batch=6,
        steps=1,
        threads=1,
        save_fp16=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_a_store_holds_every_view_in_fp16_with_the_teachers_identity(bag, tiny_da, labels):
    path, index = labels
    data = RigDataset([bag])
    assert index["views"] == 18  # 3 frames x 6 cameras
    assert index["teacher"]["name"] == "tiny-depth-anything" and index["teacher"]["kind"] == "huggingface"
    assert index["teacher"]["hash"] == foundation.folder_hash(foundation.resolve_folder(tiny_da))
    assert index["input_size"] == [56, 84] and index["dtype"] == "float16"
    assert len(index["arrays"]) == 6
    for a in index["arrays"]:
        arr = np.load(os.path.join(path, a["file"]), mmap_mode="r")
        stamps = np.load(os.path.join(path, a["stamps"]))
        assert arr.dtype == np.float16 and arr.shape == (3, 56, 84) and stamps.dtype == np.int64
        assert np.isfinite(arr).all() and float(np.ptp(arr)) > 0
    # every training view has its label, equal to the teacher's own prediction
    store = Labels([path])
    store.check_complete(data.samples)
    s = data[0]
    teacher = open_labelling_teacher(tiny_da)
    x = torch.from_numpy(teacher.resize(s.images[2], (56, 84))).permute(2, 0, 1)[None]
    direct = teacher.inverse_depth(x)[0].numpy()
    fp = store.fingerprint(bag)
    stored = LabelStore(path).get(fp, s.topics[2], s.stamps[2])
    assert stored.dtype == np.float16 and stored.shape == (56, 84)
    np.testing.assert_allclose(stored.astype(np.float32), direct, rtol=2e-3, atol=1e-3)


def test_cli_labels_a_bag_and_needs_force_to_replace_it(bag, tiny_da, tmp_path):
    out = tmp_path / "labels"
    cmd = [entry_point("bore-depth"), "label", bag, "--teacher", tiny_da, "--out", str(out), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "18 views of 1 recording(s)" in proc.stdout and "56x84 (float16)" in proc.stdout, proc.stdout
    index = json.loads((out / INDEX).read_text())
    assert index["views"] == 18
    before = (out / INDEX).read_bytes()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2
    lines = [x for x in again.stderr.splitlines() if not x.startswith("pybullet build time")]
    assert len(lines) == 1 and lines[0].startswith("bore-depth label: error: "), again.stderr
    assert str(out) in lines[0] and "--force" in lines[0]
    assert (out / INDEX).read_bytes() == before  # untouched
    # the library refuses the same way, and replaces with force
    with pytest.raises(FileExistsError, match="--force"):
        label_bags([bag], open_labelling_teacher(tiny_da), out)
    index = label_bags([bag], open_labelling_teacher(tiny_da), out, force=True)
    assert index["views"] == 18 and (out / INDEX).is_file()


def test_a_hub_id_missing_from_the_cache_is_one_line_naming_its_folder(tmp_path):
    cache = tmp_path / "hf_cache"
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache") as e:
        foundation.resolve_folder("someorg/no-such-depth-model", cache_dir=cache)
    assert str(cache / "models--someorg--no-such-depth-model") in str(e.value)
    env = {**os.environ, "HF_HUB_CACHE": str(cache)}
    out = tmp_path / "l"
    cmd = ["label", str(tmp_path), "--teacher", "someorg/no-such-depth-model", "--out", str(out)]
    proc = subprocess.run(
        [entry_point("bore-depth"), *cmd], capture_output=True, text=True, env=env, timeout=300
    )
    lines = [x for x in proc.stderr.splitlines() if not x.startswith("pybullet build time")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        "bore-depth label: error: teacher someorg/no-such-depth-model is not in the local"
    )
    assert str(cache / "models--someorg--no-such-depth-model") in lines[0] and "local folder" in lines[0]
    assert not out.exists()


def test_a_hub_id_in_the_cache_loads_without_network(tiny_da, tmp_path):
    snapshot = tmp_path / "hub" / "models--someorg--tiny-da" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for f in os.listdir(tiny_da):
        (snapshot / f).write_bytes(open(os.path.join(tiny_da, f), "rb").read())
    (tmp_path / "hub" / "models--someorg--tiny-da" / "refs").mkdir()
    (tmp_path / "hub" / "models--someorg--tiny-da" / "refs" / "main").write_text("0123abcd")
    t = foundation.load_foundation_teacher("someorg/tiny-da", cache_dir=tmp_path / "hub")
    assert t.name == "someorg/tiny-da" and t.folder == snapshot
    assert t.hash == foundation.folder_hash(foundation.resolve_folder(tiny_da))  # same files, same teacher
    assert t.input_size(HW) == (56, 84) and t.input_size((1216, 1936)) == (56, 84)


def test_training_refuses_labels_of_another_teacher_or_size(bag, labels, teacher_weights, tmp_path):
    path, _ = labels
    with pytest.raises(ValueError, match=r"come from teacher tiny-depth-anything .* asks for bore_depth"):
        distill_config(bag, teacher="bore_depth", teacher_weights=teacher_weights, labels=[path]).validate()
    other = save_tiny_depth_anything(tmp_path / "other-da", seed=5)
    with pytest.raises(ValueError, match=r"come from teacher tiny-depth-anything .* asks for other-da"):
        distill_config(bag, teacher=other, labels=[path]).validate()
    # a registered teacher's labels must be made at the training input size
    small = tmp_path / "small"
    label_bags([bag], open_labelling_teacher("bore_depth", teacher_weights, (32, 64)), small)
    cfg = distill_config(bag, teacher="bore_depth", teacher_weights=teacher_weights, labels=[str(small)])
    with pytest.raises(ValueError, match=r"made at teacher input size 32x64, but the config asks for 64x96"):
        cfg.validate()
    with pytest.raises(ValueError, match="uses no teacher"):  # no teacher named: labels would be unused
        distill_config(bag, model="semi_smd", recipe="semi_smd", labels=[path]).validate()


def test_a_missing_label_is_refused_naming_it(bag, labels, tmp_path):
    path, _ = labels
    sets = list(RigDataset([bag]).samples)
    s = sets[0]
    stamps = list(s.stamps)
    stamps[1] += 1  # a view the store has no label for
    sets[0] = SimpleNamespace(source=s.source, topics=s.topics, stamps=stamps)
    with pytest.raises(ValueError, match=rf"no label for {s.topics[1]} stamp {stamps[1]} of .*\(1 of 18 "):
        Labels([path]).check_complete(sets)
    other = _record(tmp_path / "other", 4)  # same topics and stamps, other images: not labelled
    with pytest.raises(ValueError, match=rf"no labels for recording {other}"):
        Labels([path]).check_complete(RigDataset([other]).samples)


def test_a_distill_step_reads_the_labels_and_never_loads_the_teacher(bag, tiny_da, labels, monkeypatch):
    path, _ = labels

    def no_teacher(*a, **k):
        raise AssertionError("the teacher was loaded")

    monkeypatch.setattr(foundation, "load_foundation_teacher", no_teacher)
    monkeypatch.setattr(teacher_mod, "load_foundation_teacher", no_teacher, raising=False)
    cfg = distill_config(bag, teacher=tiny_da, labels=[path])
    cfg.validate()
    data = RigDataset([bag])
    torch.manual_seed(0)
    r = build_recipe(cfg, get_model_info("svr"), create_model("svr").train())
    assert isinstance(r.teacher, teacher_mod.LabelTeacher)
    # distill names each view's crop window: zoom augmentation stays on with labels
    batch = r.sample(data, np.random.default_rng(0), HW, Augment(zoom=(1.0, 1.0)))
    views = batch["label_views"]
    assert len(views) == 6 and [v.topic for v in views] == data[0].topics
    # the teacher depth a loss sees is 1 / the stored inverse depth, resized to the view
    rgb = torch.from_numpy(batch["rgb"])
    depth, feat = teacher_depth_features(r.teacher, None, rgb, batch["fx"], True, views)
    store = LabelStore(path)
    lab = store.get(Labels([path]).fingerprint(bag), views[0].topic, views[0].stamp).astype(np.float32)
    expect = 1.0 / crop_resize(lab, (0, 0, 1, 1), False, HW)[0].numpy()
    np.testing.assert_allclose(depth[0, 0].numpy(), expect, rtol=1e-5)
    assert feat.shape == (6, teacher_mod.LABEL_FEATURE_BINS, *HW)
    loss, parts = r.loss(batch)
    assert {"silog", "kl", "cross", "relational"} <= set(parts)
    assert all(np.isfinite(v) for v in parts.values()) and parts["kl"] > 0  # the labels teach
    loss.backward()


def test_registered_teacher_labels_equal_running_the_teacher(bag, teacher_weights, tmp_path):
    out = tmp_path / "bd"
    index = label_bags([bag], open_labelling_teacher("bore_depth", teacher_weights, HW), out)
    assert index["teacher"]["kind"] == "registered" and index["input_size"] == list(HW)
    cfg = distill_config(bag, teacher="bore_depth", teacher_weights=teacher_weights, labels=[str(out)])
    cfg.validate()  # same teacher (hash of the weights), training size
    data = RigDataset([bag])
    s = data[1]
    module, info = teacher_mod.load_teacher(
        distill_config(bag, teacher="bore_depth", teacher_weights=teacher_weights)
    )
    views = [prepare_view(s.images[v], s.intrinsics[v], None, HW, None, None) for v in range(6)]
    rgb = torch.from_numpy(np.stack([x[0] for x in views]).transpose(0, 3, 1, 2).copy())
    online, _ = teacher_depth_features(module, info, rgb, np.asarray([x[1].fx for x in views]), False)
    stored = Labels([str(out)]).depth([LabelView(bag, t, st) for t, st in zip(s.topics, s.stamps)], HW)
    np.testing.assert_allclose(stored.numpy(), online.numpy(), rtol=2e-3)


def test_view_window_finds_the_crop_of_an_augmented_view():
    H, W = 64, 96
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rgb = np.stack([xx * 2, yy * 3, np.zeros_like(xx)], axis=-1).astype(np.uint8)
    intr = Intrinsics(80.0, 80.0, 47.5, 31.5, W, H)
    aug = Augment(flip=0.5, zoom=(1.2, 1.5), brightness=0, contrast=0, saturation=0)
    rng = np.random.default_rng(7)
    for _ in range(8):
        img, k, _, flipped = prepare_view(rgb, intr, None, (32, 48), rng, aug)
        window = view_window(intr, k, flipped)
        x = crop_resize(rgb[..., 0].astype(np.float32), window, flipped, (32, 48))[0].numpy()
        y = crop_resize(rgb[..., 1].astype(np.float32), window, flipped, (32, 48))[0].numpy()
        assert np.abs(x - img[..., 0] * 255).max() < 1.01 and np.abs(y - img[..., 1] * 255).max() < 1.51


def test_the_label_modules_do_not_import_transformers():
    code = (
        "import sys, bore_depth_ros.cli.label, bore_depth_ros.train.labels, "
        "bore_depth_ros.train.recipes.teacher, bore_depth_ros.train.foundation; "
        "assert 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_a_foundation_teacher_run_online_gives_what_its_labels_give(bag, tiny_da, labels):
    """Without labels the same Hugging Face teacher runs in training (its own input size for the
    view, resized back): at the recording's size and without zoom, the depth equals the labels'."""
    path, _ = labels
    cfg = distill_config(bag, teacher=tiny_da)
    cfg.validate()
    r = build_recipe(cfg, get_model_info("svr"), create_model("svr").train())
    assert isinstance(r.teacher, foundation.FoundationTeacher)
    data = RigDataset([bag])
    s = data[2]
    views = [prepare_view(s.images[v], s.intrinsics[v], None, HW, None, None) for v in range(6)]
    rgb = torch.from_numpy(np.stack([x[0] for x in views]).transpose(0, 3, 1, 2).copy())
    online, feat = teacher_depth_features(r.teacher, None, rgb, np.zeros(6), True)
    stored = Labels([path]).depth([LabelView(bag, t, st) for t, st in zip(s.topics, s.stamps)], HW)
    assert online.shape == stored.shape == (6, 1, *HW) and feat.shape[1] == teacher_mod.LABEL_FEATURE_BINS
    np.testing.assert_allclose(online.numpy(), stored.numpy(), rtol=3e-3)
    _, parts = r.loss(r.sample(data, np.random.default_rng(1), HW, None))
    assert all(np.isfinite(v) for v in parts.values())
