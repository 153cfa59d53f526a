"""The rig/video training recipes (train/recipes/) on a tiny recording: a few optimisation steps
reduce each recipe's loss on a fixed batch; the self-supervised checkpoint carries the PoseNet,
loads strictly and resumes exactly; rig models get a held-out card. CPU, one thread, 64x96."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bore_depth_ros.models import create_model, get_model_info, load_checkpoint
from bore_depth_ros.models.checkpoint import pose_net_state_shapes
from bore_depth_ros.replay.evaluate import EvalConfig, evaluate
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.train.config import TrainConfig
from bore_depth_ros.train.dataset import Augment, RigDataset
from bore_depth_ros.train.recipes import build_recipe
from bore_depth_ros.train.trainer import train

HW = (64, 96)
CONFIGS = Path(__file__).resolve().parent.parent / "config" / "train"


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipes") / "rec"
    record(
        path,
        RecordingConfig(rig="surround", frames=3, width=96, height=64, lidar=False, rate_hz=5),
        progress=False,
    )
    return str(path)


@pytest.fixture(scope="module")
def data(bag):
    return RigDataset([bag])


@pytest.fixture(scope="module")
def teacher_weights(tmp_path_factory):
    """A (randomly initialised, seeded) bore_depth teacher as a plain state_dict file."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    torch.save({"state_dict": create_model("bore_depth").state_dict()}, path)
    return str(path)


def config(bag, out="unused", **kw):
    base = dict(
        model="bore_depth",
        recipe="self_supervised",
        train=[bag],
        out_dir=str(out),
        input_height=HW[0],
        input_width=HW[1],
        batch=2,
        steps=4,
        lr=3e-4,
        lr_final=3e-4,
        threads=1,
        log_every=1000,
        checkpoint_every=1000,
        save_fp16=False,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe,model,extra",
    [
        ("self_supervised", "bore_depth", {"loss": {"supervised": 0.1}, "teacher": "bore_depth"}),
        ("distill", "svr", {"teacher": "bore_depth"}),
        ("semi_smd", "semi_smd", {"teacher": "bore_depth"}),
    ],
)
def test_a_few_steps_reduce_the_recipe_loss_on_a_fixed_batch(
    bag, data, teacher_weights, recipe, model, extra
):
    cfg = config(bag, model=model, recipe=recipe, teacher_weights=teacher_weights, **extra)
    cfg.validate()
    torch.manual_seed(0)
    net = create_model(model).train()
    r = build_recipe(cfg, get_model_info(model), net)
    batch = r.sample(data, np.random.default_rng(0), HW, Augment())
    params = [p for m in (net, *r.modules.values()) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    with torch.no_grad():
        before, parts = r.loss(batch)
    expected = {
        "self_supervised": {"photo", "smooth", "silog", "semantic"},
        "distill": {"silog", "kl", "cross", "relational"},
        "semi_smd": {"spatial", "temporal", "lidar", "curvature", "smooth", "confidence"},
    }[recipe]
    assert set(parts) == expected and all(np.isfinite(v) for v in parts.values()), parts
    for _ in range(5):
        loss, _ = r.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        after, _ = r.loss(batch)
    assert float(after) < float(before), (float(before), float(after))


@pytest.mark.slow
def test_self_supervised_checkpoint_has_the_pose_net_and_resumes_exactly(bag, tmp_path):
    straight = train(config(bag, tmp_path / "a", steps=4, batch=1), progress=False)
    train(config(bag, tmp_path / "b", steps=2, batch=1), progress=False)
    resumed = train(config(bag, tmp_path / "b", steps=4, batch=1), progress=False)
    assert resumed.steps == 4
    a = torch.load(f"{straight.out_dir}/last.ckpt", weights_only=True)
    b = torch.load(f"{resumed.out_dir}/last.ckpt", weights_only=True)
    sa, sb = a["state_dict"], b["state_dict"]
    assert {k[len("pose_net.") :] for k in sa if k.startswith("pose_net.")} == set(pose_net_state_shapes())
    assert {k.split(".")[0] for k in sa} == {"depth_net", "pose_net"}
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert len(a["optimizer"]["param_groups"]) == 2  # depth net, PoseNet
    load_checkpoint(f"{straight.out_dir}/last.ckpt", model_name="bore_depth")  # strict
    weights = torch.load(f"{straight.out_dir}/weights.pt", weights_only=True)["state_dict"]
    assert all(k.startswith("depth_net.") for k in weights)
    load_checkpoint(f"{straight.out_dir}/weights.pt", model_name="bore_depth")


@pytest.mark.slow
def test_semi_smd_run_writes_a_card_from_whole_rigs(bag, tmp_path):
    res = train(
        config(
            bag,
            tmp_path / "s",
            model="semi_smd",
            recipe="semi_smd",
            steps=1,
            batch=6,
            val=[bag],
            loss={"lidar_row_step": 8},
        ),
        progress=False,
    )
    assert res.card["views"] == 18  # 3 sets x 6 cameras
    assert np.isfinite(res.card["metric"]["abs_rel"])
    load_checkpoint(f"{res.out_dir}/weights.pt", model_name="semi_smd")
    # the card's figures are bore-depth eval's on the saved weights: its report is kept, and the
    # same evaluation run by hand gives the same figures
    rec = res.card["per_recording"]["rec"]
    assert rec["views"] == 18 and (tmp_path / "s" / "held_out" / "rec" / "report.html").is_file()
    assert res.card["boundary_f1"] is not None and res.card["temporal_stability_median"] is not None
    by_hand = evaluate(
        EvalConfig(
            bag=str(bag),
            model="semi_smd",
            weights=f"{res.out_dir}/weights.pt",
            backend="torch",
            input_height=64,
            input_width=96,
            min_depth=0.5,
            max_frames=18,
            report_dir=str(tmp_path / "by_hand"),
        ),
        progress=False,
    )
    assert by_hand.overall["metric"]["abs_rel"] == pytest.approx(res.card["metric"]["abs_rel"], rel=1e-6)
    assert "bore-depth eval" in (tmp_path / "s" / "card.md").read_text()


def test_recipe_configs_are_checked(bag):
    with pytest.raises(ValueError, match="unknown loss keys"):
        config(bag, loss={"photometrc": 1.0}).validate()
    with pytest.raises(ValueError, match="teacher"):
        config(bag, model="svr", recipe="distill").validate()
    with pytest.raises(ValueError, match="per-view"):
        config(bag, model="semi_smd", recipe="self_supervised").validate()
    for name in ("self_supervised", "distill", "semi_smd"):
        assert TrainConfig.from_yaml(CONFIGS / f"{name}_example.yaml").recipe == name


def test_heldout_figures_resolve_camera_namespaces_and_keep_reports_apart(bag, tmp_path):
    """Two held-out recordings with the same folder name get separate reports; ``cameras`` given as
    camera namespaces (as a training config may) select those cameras in each recording."""
    from bore_depth_ros.replay.heldout import heldout_figures

    other = tmp_path / "copy" / "rec"
    shutil.copytree(bag, other)
    figures = heldout_figures(
        "bore_depth",
        "",
        [bag, str(other)],
        tmp_path / "reports",
        cameras=["/cameras/front", "/cameras/back"],
        backend="torch",
        input_height=64,
        input_width=96,
        min_depth=0.5,
        max_frames=4,
        panels_per_camera=1,
    )
    assert list(figures["per_recording"]) == ["0_rec", "1_rec"]
    for name, rec in figures["per_recording"].items():
        assert rec["views"] == 4 and (tmp_path / "reports" / name / "report.html").is_file()
        cams = json.loads((tmp_path / "reports" / name / "metrics.json").read_text())["cameras"]
        assert sorted(c["namespace"] for c in cams) == ["/cameras/back", "/cameras/front"], cams
    assert figures["views"] == 8 and figures["metric"]["abs_rel"] is not None
    with pytest.raises(ValueError, match="neither an image topic nor a camera namespace"):
        heldout_figures("bore_depth", "", [bag], tmp_path / "r2", cameras=["/nope"], backend="torch")
