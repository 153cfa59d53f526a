"""The training recipe of the embedded default weights (issue 16): learning-rate warm-up before the
cosine, an EMA of the depth net (what weights.pt holds; resume exact), multi-scale gradient
matching of log depth, a smaller input size for the first steps (resume exact across the switch),
and configs without these keys training exactly as before. CPU, one thread, tiny recordings."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from bore_depth_ros.models import create_model, get_model_info, load_checkpoint
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.train.config import TrainConfig
from bore_depth_ros.train.dataset import Augment, RigDataset
from bore_depth_ros.train.losses.gradient import gradient_matching_loss
from bore_depth_ros.train.recipes import build_recipe
from bore_depth_ros.train.state import ModelEMA
from bore_depth_ros.train.trainer import _lr_at, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored

HW = (64, 96)
SMALL_SEMI_SMD = {"backbone": "resnet18", "width": 16, "embed_dim": 32, "heads": 2, "blocks": 1}


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe_v2") / "rec"
    record(
        path,
        RecordingConfig(rig="surround", frames=3, width=96, height=64, lidar=False, seed=7, rate_hz=5),
        progress=False,
    )
    return str(path)


@pytest.fixture(scope="module")
def teacher_weights(tmp_path_factory):
    """A (randomly initialised, seeded) bore_depth teacher as a plain state_dict file."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    torch.save({"state_dict": create_model("bore_depth").state_dict()}, path)
    return str(path)


def config(bag, out="unused", **kw) -> TrainConfig:
    base = dict(
        model="bore_depth",
        recipe="supervised_relative",
        train=[bag],
        out_dir=str(out),
        input_height=HW[0],
        input_width=HW[1],
        batch=2,
        steps=4,
        lr=1e-3,
        lr_final=1e-4,
        threads=1,
        log_every=1000,
        checkpoint_every=1,
        save_fp16=False,
        augment={},
    )
    base.update(kw)
    return TrainConfig(**base)


def weights_of(run) -> tuple[dict, dict]:
    w = torch.load(f"{run.out_dir}/weights.pt", weights_only=True)
    return w["state_dict"], json.loads(w["bore_depth_ros"])


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- learning rate ---------------------------------------------------------------------------------


def test_lr_rises_linearly_over_the_warm_up_then_follows_the_cosine_to_lr_final(bag):
    cfg = config(bag, steps=10, warmup_steps=4, lr=1.0, lr_final=0.1)
    cfg.validate()
    lrs = [_lr_at(cfg, k) for k in range(11)]
    assert lrs[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    # cosine over the 6 steps after the warm-up: lr_final + (lr - lr_final)(1 + cos(pi a)) / 2
    for k in range(4, 11):
        a = (k - 4) / 6
        assert lrs[k] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * a)))
    assert all(x > y for x, y in zip(lrs[4:], lrs[5:]))
    assert lrs[10] == pytest.approx(0.1)  # reaches lr_final at the last step
    # without warm-up: the cosine over all steps, as before
    plain = config(bag, steps=10, lr=1.0, lr_final=0.1)
    for k in range(11):
        assert _lr_at(plain, k) == 0.1 + 0.5 * 0.9 * (1 + math.cos(math.pi * k / 10))


# --- EMA -------------------------------------------------------------------------------------------


def test_ema_is_the_hand_computed_average_and_copies_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, 0.9)
    expected = [p.detach().clone() for p in model.parameters()]
    for step in range(1, 31):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(4, 3))  # moves the batch-norm statistics
        ema.update(model, step)
        d = min(0.9, (1 + step) / (10 + step))
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters())]
        for e, got in zip(expected, ema.module.parameters()):
            torch.testing.assert_close(got, e, rtol=1e-6, atol=1e-6)
        for b, got in zip(model.buffers(), ema.module.buffers()):
            assert torch.equal(b, got)
    assert ema.decay_at(1) == pytest.approx(2 / 11) and ema.decay_at(1000) == 0.9
    assert not any(p.requires_grad for p in ema.module.parameters())


@pytest.mark.parametrize("decay", [0.0, 1.0])
def test_ema_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(nn.Linear(2, 2), decay)


@pytest.mark.slow
def test_every_new_option_resumes_exactly_across_the_size_switch(bag, tmp_path):
    """EMA, lr warm-up, gradient matching and the size warm-up together: 5 steps in one go equal a
    run stopped after its first step (max_minutes) then resumed to 5 (the end of the lr warm-up and
    the switch to full size at step 3 fall in the resumed part). The first part keeps steps: 5, as
    the cosine depends on it."""
    opts = dict(
        ema=0.9,
        warmup_steps=2,
        warmup_size=[32, 64],
        warmup_size_steps=3,
        loss={"grad_match": 0.5},
    )
    straight = train(config(bag, tmp_path / "a", steps=5, **opts), progress=False)
    first = train(config(bag, tmp_path / "b", steps=5, max_minutes=1e-9, **opts), progress=False)
    assert first.steps == 1
    resumed = train(config(bag, tmp_path / "b", steps=5, **opts), progress=False)
    assert resumed.steps == 5 and resumed.final_loss == straight.final_loss
    (wa, meta), (wb, _) = weights_of(straight), weights_of(resumed)
    assert same(wa, wb)
    assert meta["ema"] == 0.9 and meta["input_size"] == list(HW)  # the size the node runs at
    ca = torch.load(f"{straight.out_dir}/last.ckpt", weights_only=True)
    cb = torch.load(f"{resumed.out_dir}/last.ckpt", weights_only=True)
    assert same(ca["state_dict"], cb["state_dict"]) and same(ca["ema_state_dict"], cb["ema_state_dict"])
    # weights.pt is the average, not the raw weights of last.ckpt
    assert same(wa, ca["ema_state_dict"])
    assert not same(wa, ca["state_dict"])
    # the trainer set the scheduled lr (the optimiser keeps that of the last step, 4)
    cfg = config(bag, steps=5, **opts)
    assert ca["optimizer"]["param_groups"][0]["lr"] == pytest.approx(_lr_at(cfg, 4))
    load_checkpoint(f"{straight.out_dir}/weights.pt", model_name="bore_depth")  # strict


# --- size warm-up ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_size_switch_happens_at_the_given_step(bag, tmp_path, capsys):
    cfg = config(bag, warmup_size=[32, 64], warmup_size_steps=2)
    cfg.validate()
    assert [cfg.step_size(k) for k in range(4)] == [(32, 64), (32, 64), HW, HW]
    # steps at the warm-up size are the steps of a run at that size: the same batches, the same weights
    warm = train(
        config(bag, tmp_path / "warm", steps=2, warmup_size=[32, 64], warmup_size_steps=2), progress=True
    )
    log = capsys.readouterr().out
    assert "batches at" not in log  # no switch within 2 steps
    small = train(config(bag, tmp_path / "small", steps=2, input_height=32, input_width=64), progress=False)
    (ww, meta), (ws, _) = weights_of(warm), weights_of(small)
    assert same(ww, ws) and meta["input_size"] == list(HW)
    train(config(bag, tmp_path / "switch", steps=3, warmup_size=[32, 64], warmup_size_steps=2))
    log = capsys.readouterr().out
    assert log.count("batches at") == 1 and "step 2: batches at 64x96 from now on" in log


# --- defaults ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_configs_without_the_new_keys_train_as_before(bag, tmp_path):
    """Explicit defaults (warm-up 0, ema 0, grad_match 0, no size warm-up) change nothing, and a
    last.ckpt saved before the keys existed resumes."""
    old = train(config(bag, tmp_path / "old", steps=3), progress=False)
    explicit = train(
        config(
            bag,
            tmp_path / "new",
            steps=3,
            warmup_steps=0,
            ema=0.0,
            warmup_size=[],
            warmup_size_steps=0,
            loss={"grad_match": 0.0},
        ),
        progress=False,
    )
    (wo, meta), (wn, _) = weights_of(old), weights_of(explicit)
    assert same(wo, wn) and old.final_loss == explicit.final_loss
    assert "ema" not in meta
    ckpt = torch.load(f"{old.out_dir}/last.ckpt", weights_only=True)
    assert "ema_state_dict" not in ckpt
    assert same(wo, {k: v for k, v in ckpt["state_dict"].items()})
    # a checkpoint from before these keys (its config lacks them) resumes
    saved = json.loads(ckpt["config"])
    for key in ("warmup_steps", "ema", "warmup_size", "warmup_size_steps"):
        del saved[key]
    ckpt["config"] = json.dumps(saved)
    torch.save(ckpt, f"{old.out_dir}/last.ckpt")
    assert train(config(bag, tmp_path / "old", steps=4), progress=False).steps == 4


def test_bad_schedule_settings_are_refused(bag):
    cases = [
        (dict(warmup_steps=4, steps=4), "warmup_steps"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(ema=1.0), "ema"),
        (dict(ema=-0.1), "ema"),
        (dict(warmup_size=[30, 64], warmup_size_steps=2), "warmup_size: input height 30"),
        (dict(warmup_size=[32], warmup_size_steps=2), r"warmup_size must be \[height, width\]"),
        (dict(warmup_size=[32, 64]), "warmup_size_steps > 0"),
        (dict(warmup_size_steps=3), "needs warmup_size"),
        (
            dict(model="semi_smd", recipe="semi_smd", batch=6, loss={"grad_match": 0.1}),
            "grad_match in semi_smd matches the teacher",
        ),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            config(bag, **kw).validate()


def test_yaml_keys_reach_the_config(bag, tmp_path):
    path = tmp_path / "v2.yaml"
    path.write_text(
        f"train: ['{bag}']\nwarmup_steps: 10\nema: 0.999\nwarmup_size: [96, 160]\n"
        "warmup_size_steps: 100\ninput_height: 192\ninput_width: 320\nloss: {grad_match: 0.5}\n"
    )
    cfg = TrainConfig.from_yaml(path)
    assert (cfg.warmup_steps, cfg.ema, cfg.warmup_size, cfg.warmup_size_steps) == (10, 0.999, [96, 160], 100)
    assert dataclasses.asdict(cfg)["loss"] == {"grad_match": 0.5}


# --- gradient matching -------------------------------------------------------------------------


def _scene(b=2, h=32, w=48):
    torch.manual_seed(0)
    gt = 2.0 + 10.0 * torch.rand(b, 1, h, w)
    gt[..., :, : w // 2] += 20.0  # a depth boundary
    return gt


def test_gradient_matching_is_zero_for_any_per_image_scale_of_the_target():
    gt = _scene()
    for c in (1.0, 0.37, 3.0, 250.0):
        assert float(gradient_matching_loss(c * gt, gt)) < 1e-5
    per_image = torch.tensor([0.5, 7.0]).reshape(2, 1, 1, 1)
    assert float(gradient_matching_loss(per_image * gt, gt)) < 1e-5
    # and with a mask, and invalid targets (NaN, 0) left out
    gt2 = gt.clone()
    gt2[:, :, :5] = math.nan
    gt2[:, :, -3:] = 0.0
    mask = torch.rand_like(gt) > 0.3
    assert float(gradient_matching_loss(3.0 * gt, gt2, mask)) < 1e-5


def test_gradient_matching_charges_a_shifted_boundary_at_every_scale():
    h, w = 32, 64
    gt = torch.full((1, 1, h, w), 5.0)
    gt[..., 32:] = 20.0
    shifted = torch.full_like(gt, 5.0)
    shifted[..., 36:] = 20.0
    one = float(gradient_matching_loss(shifted, gt, scales=1))
    four = float(gradient_matching_loss(shifted, gt, scales=4))
    assert one > 0 and four > one
    assert float(gradient_matching_loss(2 * shifted, gt)) == pytest.approx(four, rel=1e-5)  # scale-free
    blurred = gt.clone()
    blurred[..., 28:36] = torch.linspace(5.0, 20.0, 8)
    assert float(gradient_matching_loss(blurred, gt)) > 0  # a soft boundary costs too


def test_gradient_matching_with_no_valid_pixel_is_an_attached_finite_zero():
    pred = torch.rand(2, 1, 16, 16, requires_grad=True)
    gt = torch.full((2, 1, 16, 16), math.nan)
    loss = gradient_matching_loss(pred + 1.0, gt)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    loss = gradient_matching_loss(pred + 1.0, torch.ones_like(gt), torch.zeros_like(gt, dtype=torch.bool))
    assert float(loss.detach()) == 0.0
    # tiny maps stop early, odd sizes work
    assert torch.isfinite(gradient_matching_loss(torch.rand(1, 1, 5, 7) + 1, torch.rand(1, 1, 5, 7) + 1))
    with pytest.raises(ValueError, match="scales"):
        gradient_matching_loss(pred, pred, scales=0)


def test_gradient_matching_pulls_a_prediction_towards_the_target_boundaries():
    gt = _scene(1, 16, 24)
    logp = torch.zeros_like(gt, requires_grad=True)
    opt = torch.optim.Adam([logp], lr=0.05)
    first = None
    for _ in range(60):
        loss = gradient_matching_loss(torch.exp(logp), gt)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(gradient_matching_loss(torch.exp(logp), gt).detach()) < 0.5 * first


# --- the recipes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recipe,model,extra",
    [
        ("supervised_relative", "bore_depth", {}),
        ("supervised_metric", "svr", {}),
        ("distill", "svr", {"teacher": "bore_depth"}),
    ],
)
def test_recipes_with_a_dense_target_add_the_gradient_term(bag, teacher_weights, recipe, model, extra):
    data = RigDataset([bag])
    parts_of = {}
    for weight in (0.0, 0.5):
        cfg = config(
            bag,
            model=model,
            recipe=recipe,
            teacher_weights=teacher_weights,
            loss={"grad_match": weight},
            **extra,
        )
        cfg.validate()
        torch.manual_seed(0)
        r = build_recipe(cfg, get_model_info(model), create_model(model).train())
        batch = r.sample(data, np.random.default_rng(0), HW, Augment())
        with torch.no_grad():
            _, parts_of[weight] = r.loss(batch)
    assert "grad_match" not in parts_of[0.0]
    assert set(parts_of[0.5]) == set(parts_of[0.0]) | {"grad_match"}
    assert parts_of[0.5]["grad_match"] > 0
    assert all(parts_of[0.5][k] == parts_of[0.0][k] for k in parts_of[0.0])


def test_semi_smd_trains_its_confidence_head_with_the_new_options(bag, teacher_weights, tmp_path):
    """semi_smd with EMA, lr and size warm-up and gradient matching against the teacher: the
    confidence term is there, the averaged confidence head is saved, the weights load."""
    cfg = config(
        bag,
        tmp_path / "smd",
        model="semi_smd",
        recipe="semi_smd",
        batch=6,
        steps=2,
        checkpoint_every=1000,
        teacher="bore_depth",
        teacher_weights=teacher_weights,
        model_options=dict(SMALL_SEMI_SMD),
        ema=0.9,
        warmup_steps=1,
        warmup_size=[32, 64],
        warmup_size_steps=1,
        loss={"grad_match": 0.5, "lidar_row_step": 8},
    )
    cfg.validate()
    torch.manual_seed(0)
    r = build_recipe(cfg, get_model_info("semi_smd"), create_model("semi_smd", options=cfg.model_options))
    batch = r.sample(RigDataset([bag]), np.random.default_rng(0), (32, 64), Augment())
    with torch.no_grad():
        _, parts = r.loss(batch)
    assert {"confidence", "grad_match", "curvature"} <= set(parts), parts
    assert all(np.isfinite(v) for v in parts.values())
    res = train(cfg, progress=False)
    w, meta = weights_of(res)
    assert meta["ema"] == 0.9 and meta["input_size"] == list(HW)
    ckpt = torch.load(f"{res.out_dir}/last.ckpt", weights_only=True)
    heads = [k for k in w if "confidence_head." in k]
    assert heads and same({k: w[k] for k in heads}, {k: ckpt["ema_state_dict"][k] for k in heads})
    # the raw head was trained and differs from its average
    assert not same({k: w[k] for k in heads}, {k: ckpt["state_dict"][k] for k in heads})
    load_checkpoint(f"{res.out_dir}/weights.pt", model_name="semi_smd")
