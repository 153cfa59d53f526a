"""Training on the project's own recordings: losses go down, checkpoints resume exactly, trained
weights load strictly and carry their input size."""

import argparse

import numpy as np
import pytest
import torch

from bore_depth_ros.engine import DepthEngine, EngineConfig
from bore_depth_ros.models import create_model, get_model_info, load_checkpoint
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.train.batches import model_forward, sample_views
from bore_depth_ros.train.config import TrainConfig
from bore_depth_ros.train.dataset import RigDataset
from bore_depth_ros.train.recipes.supervised import supervised_loss as recipe_loss
from bore_depth_ros.train.trainer import train


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "rec"
    record(
        path,
        RecordingConfig(rig="surround", frames=3, width=96, height=64, lidar=False, seed=7),
        progress=False,
    )
    return str(path)


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored


def config(bag, out, **kw):
    base = dict(
        model="bore_depth",
        recipe="supervised_relative",
        train=[bag],
        out_dir=str(out),
        input_height=64,
        input_width=96,
        batch=2,
        steps=4,
        lr=1e-3,
        lr_final=1e-3,
        threads=1,
        log_every=1000,
        checkpoint_every=1,
        save_fp16=False,
        augment={},
    )
    base.update(kw)
    return TrainConfig(**base)


def fixed_batch_loss(cfg, model):
    info = get_model_info(cfg.model)
    data = RigDataset(cfg.train)
    batch = sample_views(data, 6, np.random.default_rng(123), (cfg.input_height, cfg.input_width), info, None)
    with torch.no_grad():
        depth, _ = model_forward(model.eval(), info, batch, torch)
        return float(recipe_loss(cfg, info, depth, batch, torch)[0])


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,recipe", [("bore_depth", "supervised_relative"), ("svr", "supervised_metric")]
)
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(bag, tmp_path, model, recipe):
    cfg = config(bag, tmp_path / "run", model=model, recipe=recipe, steps=10, lr=2e-3, lr_final=2e-3, batch=3)
    torch.manual_seed(cfg.seed)
    before = fixed_batch_loss(cfg, create_model(model))  # train() starts from this init
    res = train(cfg, progress=False)
    after = fixed_batch_loss(cfg, load_checkpoint(f"{res.out_dir}/weights.pt", model_name=model))
    assert after < before, (before, after)


@pytest.mark.slow
def test_resume_continues_exactly(bag, tmp_path):
    straight = train(config(bag, tmp_path / "a", steps=4), progress=False)
    train(config(bag, tmp_path / "b", steps=2), progress=False)
    resumed = train(config(bag, tmp_path / "b", steps=4), progress=False)
    assert resumed.steps == 4
    a = torch.load(f"{straight.out_dir}/weights.pt", weights_only=True)["state_dict"]
    b = torch.load(f"{resumed.out_dir}/weights.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_trained_weights_load_strictly_and_carry_their_input_size(bag, tmp_path):
    res = train(config(bag, tmp_path / "w", steps=2, save_fp16=True), progress=False)
    path = f"{res.out_dir}/weights.pt"
    sd = torch.load(path, weights_only=True)["state_dict"]
    assert all(k.startswith("depth_net.") for k in sd)
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
    load_checkpoint(path, model_name="bore_depth")  # strict
    # also loadable from the resumable training checkpoint
    load_checkpoint(f"{res.out_dir}/last.ckpt", model_name="bore_depth")
    engine = DepthEngine(EngineConfig(weights=path, backend="torch"))
    assert engine.input_hw == (64, 96)


def test_bad_configs_are_refused(bag, tmp_path):
    with pytest.raises(ValueError, match="recipe"):
        config(bag, tmp_path, recipe="magic").validate()
    with pytest.raises(ValueError, match="multiple of 32"):
        config(bag, tmp_path, input_height=100).validate()
    with pytest.raises(ValueError, match="rig recipe"):
        config(bag, tmp_path, model="semi_smd", recipe="supervised_metric").validate()


def test_a_run_folder_is_resumed_only_with_the_same_settings_and_replaced_only_with_force(bag, tmp_path):
    from bore_depth_ros.cli import train as train_cli

    first = train(config(bag, tmp_path / "run", steps=1), progress=False)
    weights = (tmp_path / "run" / "weights.pt").read_bytes()
    with pytest.raises(ValueError, match=r"other settings \(lr: 0\.001 -> 0\.5\)"):
        train(config(bag, tmp_path / "run", steps=2, lr=0.5), progress=False)
    with pytest.raises(FileExistsError, match="holds a training run.*--force"):
        train(config(bag, tmp_path / "run", steps=1, resume=False), progress=False)
    assert (tmp_path / "run" / "weights.pt").read_bytes() == weights  # nothing touched
    replaced = train(config(bag, tmp_path / "run", steps=1, lr=0.5, force=True), progress=False)
    assert replaced.steps == 1 and first.steps == 1
    assert (tmp_path / "run" / "weights.pt").read_bytes() != weights
    # the command line says it in one line, exit code 2
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(f"train: ['{bag}']\nout_dir: '{tmp_path / 'run'}'\nsteps: 1\nresume: false\n")
    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    assert train_cli.run(p.parse_args([str(cfg_file), "--quiet"])) == 2
