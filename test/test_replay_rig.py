"""Replay evaluation of six-camera models: synchronized camera sets, one batched call each."""

import json

import pytest

from bore_depth_ros.replay.evaluate import EvalConfig, evaluate
from bore_depth_ros.sim.recording import RecordingConfig, record


@pytest.fixture(scope="module")
def rig_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("rigbag") / "six"
    record(
        path,
        RecordingConfig(
            rig="surround", frames=2, width=96, height=64, seed=4, camera_jitter_ms=4.0, lidar=False
        ),
        progress=False,
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize("model", ["semi_smd", "svr"])
def test_rig_models_are_evaluated_on_synchronized_sets(rig_bag, tmp_path, model):
    res = evaluate(
        EvalConfig(
            bag=str(rig_bag),
            model=model,
            input_height=64,
            input_width=96,
            report_dir=str(tmp_path / "r"),
            panels_per_camera=1,
            rig_slop=0.01,
        ),
        progress=False,
    )
    assert res.frames["evaluated"] == 12 and res.frames["dropped"] == 0, res.drops
    assert len(res.cameras) == 6 and all(c.frames == 2 for c in res.cameras)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["engine"]["batch"] == ("6" if model == "semi_smd" else "1")


def test_sets_beyond_the_slop_are_dropped_and_counted(rig_bag, tmp_path):
    # 4 ms of jitter between cameras and a 1 ms slop: no complete set can form
    res = evaluate(
        EvalConfig(
            bag=str(rig_bag),
            model="semi_smd",
            input_height=64,
            input_width=96,
            report_dir=str(tmp_path / "r"),
            panels_per_camera=0,
            rig_slop=0.001,
        ),
        progress=False,
    )
    assert res.frames["evaluated"] < 12
    # every camera frame that was not evaluated is accounted for by a synchroniser reason
    sync_drops = {k: v for k, v in res.drops.items() if k.startswith("sync_")}
    assert sum(sync_drops.values()) == 12 - res.frames["evaluated"], res.drops
