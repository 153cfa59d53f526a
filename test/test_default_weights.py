"""The shipped default weights reach their card's metrics on (a subset of) the held-out recording.

The cards in bore_depth_ros/data were computed on 20 frames of a recording rendered with seed 99
and density 1.3 (tools/train_defaults.sh); this test renders its first two frames again
(rendering is deterministic) and evaluates the embedded defaults through `bore-depth eval`'s code.
"""

import json
from pathlib import Path

import pytest

from bore_depth_ros.engine import embedded_weights_path
from bore_depth_ros.replay.evaluate import EvalConfig, evaluate
from bore_depth_ros.sim.recording import RecordingConfig, record
from bore_depth_ros.sim.scene_config import SceneConfig

DATA = Path(__file__).resolve().parent.parent / "bore_depth_ros" / "data"
# a two-frame subset scatters around the 20-frame figure: allow this much above the card
SUBSET_MARGIN = 0.05


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    path = tmp_path_factory.mktemp("heldout") / "heldout_99"
    record(
        path,
        RecordingConfig(
            rig="surround", frames=2, seed=99, rate_hz=5.0, lidar=False, scene=SceneConfig(density=1.3)
        ),
        progress=False,
    )
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("model,mode", [("bore_depth", "median"), ("svr", "metric")])
def test_default_weights_reach_their_card(heldout, tmp_path, model, mode):
    assert embedded_weights_path(model) is not None, f"no embedded default for {model}"
    card = json.loads((DATA / f"{model}_default.card.json").read_text())
    res = evaluate(
        EvalConfig(
            bag=heldout,
            model=model,
            report_dir=str(tmp_path / "r"),
            min_depth=0.5,
            max_depth=80.0,
            panels_per_camera=0,
        ),
        progress=False,
    )
    assert res.engine["weights_source"].startswith("embedded:")
    assert res.engine["input"] == "x".join(map(str, card["input_size"]))
    card_abs_rel = card["median_scaled" if mode == "median" else "metric"]["abs_rel"]
    got = res.overall[mode]["abs_rel"]
    assert got <= card_abs_rel + SUBSET_MARGIN, (model, mode, got, card_abs_rel)
