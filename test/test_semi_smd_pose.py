"""Semi-SMD-style training with a rig pose network (``pose: network``) and a trained confidence head
(train/posenet.py RigPoseNet, train/recipes/semi_smd.py). CPU, one thread, a tiny six-camera
recording at 64x96 and a small semi_smd network (ResNet-18 width 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bore_depth_ros.models import create_model, get_model_info, load_checkpoint
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.sim.rig import RING_ORDER, SURROUND_RIG
from bore_depth_ros.train import losses as L
from bore_depth_ros.train.config import TrainConfig
from bore_depth_ros.train.dataset import RigDataset
from bore_depth_ros.train.geometry import axis_angle_to_mat, rigid_inverse
from bore_depth_ros.train.posenet import RigPoseNet
from bore_depth_ros.train.recipes import build_recipe
from bore_depth_ros.train.recipes.semi_smd import confidence_loss, confidence_target
from bore_depth_ros.train.recipes.tensors import as_tensor
from bore_depth_ros.train.trainer import train

HW = (64, 96)
N = 6
SMALL = {"backbone": "resnet18", "width": 16, "embed_dim": 32, "heads": 2, "blocks": 1}

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("semi_smd_pose") / "rec"
    record(
        path,
        RecordingConfig(rig="surround", frames=3, width=96, height=64, lidar=False, rate_hz=5),
        progress=False,
    )
    return str(path)


@pytest.fixture(scope="module")
def data(bag):
    return RigDataset([bag])


def config(bag, out="unused", **kw) -> TrainConfig:
    base = dict(
        model="semi_smd",
        recipe="semi_smd",
        train=[bag],
        out_dir=str(out),
        input_height=HW[0],
        input_width=HW[1],
        batch=N,
        steps=2,
        lr=1e-3,
        lr_final=1e-3,
        threads=1,
        log_every=1000,
        checkpoint_every=1000,
        save_fp16=False,
        pose="network",
        model_options=dict(SMALL),
    )
    base.update(kw)
    return TrainConfig(**base)


def recipe_for(cfg: TrainConfig, seed: int = 0):
    cfg.validate()
    torch.manual_seed(seed)
    model = create_model(cfg.model, options=cfg.model_options).train()
    return build_recipe(cfg, get_model_info(cfg.model), model)


def rig_extrinsics() -> torch.Tensor:
    specs = {c.name: c for c in SURROUND_RIG}
    return torch.from_numpy(np.stack([specs[n].base_from_optical().matrix() for n in RING_ORDER])).float()


def test_one_rigid_motion_per_rig_and_camera_motions_follow_the_extrinsics():
    torch.manual_seed(0)
    net = RigPoseNet(width=8, hidden=32)
    with torch.no_grad():
        net.head[-1].weight.mul_(300.0)  # motions of a few degrees and decimetres, not ~0
    rigs = 2
    g = torch.Generator().manual_seed(1)
    image, prev = (torch.randn(rigs * N, 3, *HW, generator=g) for _ in range(2))
    depth = 1.0 + 10.0 * torch.rand(rigs * N, 1, *HW, generator=g)
    E = rig_extrinsics()
    out = net(image, prev, depth, E, N)
    base, cams = out["base"], out["cameras"]
    assert base.shape == (rigs, 4, 4) and cams.shape == (rigs * N, 4, 4)
    R = base[:, :3, :3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(rigs, 3, 3), atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(R), torch.ones(rigs), atol=1e-5)
    assert base[:, :3, 3].abs().max() > 1e-3  # a real motion, not the identity
    assert not torch.allclose(base[0], base[1])  # one per rig, from that rig's views
    Ev = E.repeat(rigs, 1, 1)
    Tv = base.repeat_interleave(N, dim=0)
    torch.testing.assert_close(cams, rigid_inverse(Ev) @ Tv @ Ev, atol=1e-5, rtol=0)
    # and every camera's motion, carried back through its extrinsics, is the one rig motion
    torch.testing.assert_close(Ev @ cams @ rigid_inverse(Ev), Tv, atol=1e-5, rtol=0)
    # the rig motion is the weighted mean of the per-view estimates in base_link
    w = out["weights"].reshape(rigs, N, 1)
    fused = (w * out["views"].reshape(rigs, N, 6)).sum(dim=1)
    torch.testing.assert_close(base[:, :3, 3], fused[:, :3], atol=1e-6, rtol=0)
    torch.testing.assert_close(R, axis_angle_to_mat(fused[:, 3:]), atol=1e-6, rtol=0)
    # extrinsics given per view ([B*N,4,4]) are the same as per camera ([N,4,4])
    again = net(image, prev, depth, Ev, N)["base"]
    torch.testing.assert_close(again, base)


def test_pose_network_steps_on_a_fixed_batch_reduce_the_loss_and_train_the_pose_net(data, bag):
    recipe = recipe_for(config(bag))
    pose_net = recipe.modules["rig_pose_net"]
    batch = recipe.sample(data, np.random.default_rng(0), HW, None)
    assert "ego" in batch  # the recording has odometry; the network does not use it (pose_tf: 0)
    params = [p for m in (recipe.model, pose_net) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    losses, temporal = [], []
    for _ in range(4):
        loss, parts = recipe.loss(batch)
        assert np.isfinite(float(loss.detach())) and "pose_tf" not in parts
        opt.zero_grad()
        loss.backward()
        grads = [p.grad for p in pose_net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert all(float(g.abs().sum()) > 0 for g in grads)
        opt.step()
        losses.append(float(loss.detach()))
        temporal.append(parts["temporal"])
    assert losses[-1] < losses[0], losses
    assert temporal[-1] < temporal[0], temporal


def test_pose_configs_are_checked_and_odometry_can_supervise_the_network(data, bag):
    with pytest.raises(ValueError, match="needs pose: network"):
        config(bag, pose="tf", loss={"pose_tf": 1.0}).validate()
    with pytest.raises(ValueError, match="temporal is 0"):
        config(bag, loss={"temporal": 0.0}).validate()
    recipe = recipe_for(config(bag, loss={"pose_tf": 1.0}))
    batch = recipe.sample(data, np.random.default_rng(0), HW, None)
    loss, parts = recipe.loss(batch)
    assert np.isfinite(parts["pose_tf"]) and parts["pose_tf"] > 0
    loss.backward()
    assert float(recipe.modules["rig_pose_net"].head[-1].weight.grad.abs().sum()) > 0
    # pose: tf keeps the odometry and builds no pose network
    assert recipe_for(config(bag, pose="tf")).modules == {}


@pytest.mark.slow
def test_pose_network_run_saves_it_in_last_ckpt_only_and_resumes(bag, tmp_path):
    res = train(config(bag, tmp_path / "run", steps=1), progress=False)
    state = torch.load(f"{res.out_dir}/last.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("rig_pose_net.") for k in state)
    weights = torch.load(f"{res.out_dir}/weights.pt", weights_only=True)["state_dict"]
    assert not any(k.startswith("rig_pose_net.") for k in weights)
    assert load_checkpoint(f"{res.out_dir}/weights.pt", model_name="semi_smd").width == 16
    assert train(config(bag, tmp_path / "run", steps=2), progress=False).steps == 2


def test_the_confidence_head_is_trained_and_only_by_its_term(data, bag):
    recipe = recipe_for(config(bag, pose="tf"))
    model = recipe.model
    head0 = [p.detach().clone() for p in model.confidence_head.parameters()]
    batch = recipe.sample(data, np.random.default_rng(0), HW, None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        loss, parts = recipe.loss(batch)
        assert parts["confidence"] > 0
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(head0, model.confidence_head.parameters()))
    # the confidence term alone moves the confidence head and nothing else (detached features)
    only = recipe_for(
        config(bag, pose="tf", loss={"spatial": 0.0, "temporal": 0.0, "lidar": 0.0, "smoothness": 0.0})
    )
    loss, parts = only.loss(batch)
    assert set(parts) == {"confidence"}
    loss.backward()
    for name, p in only.model.named_parameters():
        has = p.grad is not None and float(p.grad.abs().sum()) > 0
        assert has == name.startswith("confidence_head."), name


def test_the_trained_confidence_falls_where_the_photometric_error_is_high(data, bag):
    """Toy case: the spatial photometric error of a fixed (untrained) small network on one rig; the
    confidence head, fitted to the recipe's agreement target, must anti-correlate with it."""
    recipe = recipe_for(config(bag, pose="tf"))
    model = recipe.model.eval()
    batch = recipe.sample(data, np.random.default_rng(0), HW, None)
    with torch.no_grad():
        depth, features = recipe._forward(batch)
        _, info = L.spatial_photometric_loss(
            as_tensor(batch["rgb"]), depth, as_tensor(batch["K"]), as_tensor(batch["E"]), num_views=N
        )
    error = torch.where(info["mask"], info["error"], torch.full_like(depth, float("inf")))
    target, used = confidence_target(depth, error, None, None, tau=0.1)
    assert 0.02 < used.float().mean() < 1.0
    opt = torch.optim.Adam(model.confidence_head.parameters(), lr=1e-2)
    first = None
    for _ in range(100):
        _, logit = model.confidence_from_features(features)
        loss = confidence_loss(logit, target, used)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first
    with torch.no_grad():
        confidence, _ = model.confidence_from_features(features)
    c, e = confidence[used].numpy(), error[used].numpy()
    assert np.corrcoef(c, e)[0, 1] < -0.1
    high, low = e > np.quantile(e, 0.75), e < np.quantile(e, 0.25)
    assert c[high].mean() < c[low].mean()


def test_lidar_rows_set_the_confidence_target_by_depth_agreement():
    depth = torch.tensor([[[[10.0, 10.0, 10.0, 10.0]]]])
    lidar = torch.tensor([[[[10.0, 12.5, 20.0, 1.0]]]])
    mask = torch.tensor([[[[True, True, True, False]]]])
    photometric = torch.tensor([[[[0.5, 0.5, 0.5, 0.0]]]])
    target, used = confidence_target(depth, photometric, lidar, mask, tau=0.1)
    assert used.all()
    expected = [1.0, np.exp(-np.log(1.25) / np.log(1.25)), np.exp(-np.log(2.0) / np.log(1.25)), 1.0]
    np.testing.assert_allclose(target.flatten().numpy(), expected, rtol=1e-5)
