"""Training safety (issue 12): a diverging run stops with a one-line error and never overwrites its
last good files; weights holding NaN or inf are refused by name; the card says whether the held-out
data was also trained on."""

import dataclasses
import json
import os
import shutil
import subprocess

import pytest
import torch
import yaml

from bore_depth_ros.engine import DepthEngine, EngineConfig
from bore_depth_ros.models import CheckpointError, create_model, get_model_info, load_checkpoint
from bore_depth_ros.models.checkpoint import save_lightning_checkpoint
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.train.dataset import RigDataset
from bore_depth_ros.train.state import TrainingDiverged, save_weights
from bore_depth_ros.train.trainer import held_out_independence, train
from harness import entry_point
from test_train import config

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: 1 thread, restored

HUGE_LR = dict(lr=1e6, lr_final=1e6)  # the reproduction: step 1 is finite, step 2 is NaN


def render(path, seed, frames=3):
    record(
        path,
        RecordingConfig(rig="surround", frames=frames, width=96, height=64, lidar=False, seed=seed),
        progress=False,
    )
    return str(path)


def cli(config_file, capsys) -> tuple[int, str]:
    """``bore-depth train CONFIG --quiet`` in this process: (exit code, stderr)."""
    from bore_depth_ros.cli import build_parser
    from bore_depth_ros.cli import train as train_cli

    code = train_cli.run(build_parser().parse_args(["train", str(config_file), "--quiet"]))
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return render(tmp_path_factory.mktemp("safety") / "rec", seed=7)


def nan_weights(path, fraction_of_keys=1.0):
    """A weights.pt in training's layout whose floating tensors are NaN (the issue's file)."""
    info = get_model_info("bore_depth")
    sd = create_model("bore_depth").state_dict()
    keys = [k for k, v in sd.items() if v.is_floating_point()]
    for k in keys[: int(len(keys) * fraction_of_keys)]:
        sd[k] = torch.full_like(sd[k], float("nan"))
    torch.save({"state_dict": {info.checkpoint_prefix + k: v for k, v in sd.items()}}, path)
    return path


@pytest.mark.slow
def test_a_diverging_run_stops_in_one_line_and_keeps_the_last_good_files(bag, tmp_path):
    run = tmp_path / "run"
    # One step at lr 1e6 is still finite, but its weights (about 1e6) do not fit in fp16:
    # weights.pt is refused, nothing is written in its place, last.ckpt (fp32) is good.
    with pytest.raises(TrainingDiverged, match=r"step 1: .*weights\.pt not saved: .*fp16 range"):
        train(config(bag, run, steps=1, save_fp16=True, **HUGE_LR), progress=False)
    assert (run / "last.ckpt").is_file() and not (run / "weights.pt").exists()
    # Saving fp32 instead is a change a resumed run may make: it only writes weights.pt.
    good = config(bag, run, steps=1, checkpoint_every=1000, **HUGE_LR)
    assert train(good, progress=False).steps == 1
    before = {name: (run / name).read_bytes() for name in ("last.ckpt", "weights.pt")}
    assert sorted(os.listdir(run)) == ["last.ckpt", "weights.pt"]  # no temporary file left
    # Continuing diverges at step 2 (NaN loss); through the command line: one line, exit 2.
    cfg_file = tmp_path / "huge_lr.yaml"
    cfg_file.write_text(yaml.safe_dump({**dataclasses.asdict(good), "steps": 6}))
    proc = subprocess.run(
        [entry_point("bore-depth"), "train", str(cfg_file), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    head = "bore-depth train: error: training diverged at step 2 (loss nan, lr 1e+06)"
    assert lines[0].startswith(head), lines
    assert (
        f"the last good files were kept: {run / 'last.ckpt'} (step 1), {run / 'weights.pt'} (step 1)"
        in lines[0]
    )
    assert {name: (run / name).read_bytes() for name in before} == before  # byte-identical
    assert sorted(os.listdir(run)) == ["last.ckpt", "weights.pt"]
    load_checkpoint(run / "weights.pt", model_name="bore_depth")  # still loads (finite)


def test_a_run_that_diverges_before_any_save_says_nothing_was_saved(bag, tmp_path, capsys):
    cfg = config(bag, tmp_path / "run", steps=3, checkpoint_every=1000, **HUGE_LR)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(dataclasses.asdict(cfg)))
    code, err = cli(cfg_file, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("bore-depth train: error: training diverged at step 2 (loss nan"), err
    assert f"nothing had been saved in {tmp_path / 'run'} yet" in err
    assert not any((tmp_path / "run").iterdir())


def test_saving_non_finite_weights_is_refused_and_leaves_the_file_as_it_was(tmp_path):
    info = get_model_info("bore_depth")
    model = create_model("bore_depth")
    path = tmp_path / "weights.pt"
    save_weights(path, model, info, fp16=False, meta={"steps": 1})
    good = path.read_bytes()
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match=r"weights\.pt not saved: 1 of \d+ tensors hold NaN or inf"):
        save_weights(path, model, info, fp16=False, meta={"steps": 2})
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["weights.pt"]


def test_weights_holding_nan_are_refused_as_from_a_diverged_run(tmp_path):
    path = nan_weights(tmp_path / "weights.pt")
    sd = create_model("bore_depth").state_dict()
    floating = sum(v.is_floating_point() for v in sd.values())  # integer BatchNorm counters stay finite
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, model_name="bore_depth")
    assert str(e.value) == (
        f"{path}: {floating} of {len(sd)} tensors contain NaN or inf (e.g. depth_net.{next(iter(sd))}): "
        "the file comes from a diverged run (or is damaged) and cannot be used"
    )
    # the engine (nodes, eval, export, prebuild) loads through the same check
    with pytest.raises(CheckpointError, match="tensors contain NaN or inf"):
        DepthEngine(EngineConfig(weights=str(path), backend="torch"))
    # the official Lightning layout: said to be NaN, not the "alias conflicts" NaN != NaN causes
    model = create_model("bore_depth")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    official = tmp_path / "official.ckpt"
    save_lightning_checkpoint(model, official)
    with pytest.raises(CheckpointError, match=r"official\.ckpt: \d+ of \d+ tensors contain NaN or inf") as e:
        load_checkpoint(official, model_name="bore_depth")
    assert "alias" not in str(e.value)


def test_starting_from_nan_weights_is_a_one_line_error(bag, tmp_path, capsys):
    path = nan_weights(tmp_path / "diverged.pt", fraction_of_keys=0.5)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        yaml.safe_dump({"train": [bag], "out_dir": str(tmp_path / "run"), "init_weights": str(path)})
    )
    code, err = cli(cfg_file, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"bore-depth train: error: {path}: ") and "tensors contain NaN or inf" in err


@pytest.mark.slow
def test_the_card_says_whether_the_held_out_data_was_trained_on(bag, tmp_path):
    other = render(tmp_path / "other", seed=8, frames=2)
    link = tmp_path / "link"
    link.symlink_to(bag, target_is_directory=True)
    copy = shutil.copytree(bag, tmp_path / "copy")
    val = [str(link), str(copy), other]
    res = train(config(bag, tmp_path / "run", steps=1, val=val, val_max_sets=1), progress=False)
    flags = {h["path"]: h["independent"] for h in res.card["held_out_data"]}
    assert flags == {str(link): False, str(copy): False, other: True}
    card = (tmp_path / "run" / "card.md").read_text()
    assert f"- held-out data: `{link}` (NOT independent: it is also a training recording ({bag}))" in card
    assert (
        f"- held-out data: `{copy}` (NOT independent: the same recording as training recording {bag})" in card
    )
    assert f"- held-out data: `{other}` (independent: not used for training)" in card
    assert "seed" not in card and "layout" not in card


def test_held_out_identity_by_path_and_content(bag, tmp_path):
    prints = RigDataset([bag], max_sets_per_bag=1).fingerprints()
    storage = next(p for p in os.listdir(bag) if not p.endswith(".yaml"))
    same = held_out_independence([bag], [bag, os.path.join(bag, storage), f"{bag}/../rec"], prints, {})
    assert [h["independent"] for h in same] == [False, False, False]
    assert same[0]["note"] == "NOT independent: it is also a training recording"
    elsewhere = str(tmp_path / "elsewhere")
    other = held_out_independence([bag], [elsewhere], prints, {elsewhere: "another fingerprint"})
    assert other == [{"path": elsewhere, "independent": True, "note": "independent: not used for training"}]


def test_the_card_text_flags_each_held_out_recording(tmp_path):
    from bore_depth_ros.train.config import TrainConfig
    from bore_depth_ros.train.trainer import write_card

    metrics = dict(abs_rel=0.1, sq_rel=0.2, rmse=3.0, rmse_log=0.3, a1=0.9, a2=0.95, a3=0.99)
    held_out = held_out_independence(["/data/a", "/data/b"], ["/data/a", "/data/c"], {}, {})
    card = dict(
        model="bore_depth",
        recipe="supervised_relative",
        steps=3,
        train_seconds=6.0,
        input_size=[64, 96],
        train_recordings=["/data/a", "/data/b"],
        held_out=["/data/a", "/data/c"],
        held_out_data=held_out,
        views=12,
        metric=metrics,
        median_scaled=metrics,
    )
    write_card(tmp_path, card, TrainConfig())
    text = (tmp_path / "card.md").read_text()
    assert "- held-out data: `/data/a` (NOT independent: it is also a training recording)\n" in text
    assert "- held-out data: `/data/c` (independent: not used for training)\n" in text
    assert "different seed" not in text
    assert [h["independent"] for h in json.loads((tmp_path / "card.json").read_text())["held_out_data"]] == [
        False,
        True,
    ]
