"""The shipped default weights reach their card's figures on (a subset of) a held-out recording.

The cards in bore_depth_ros/data come from tools/make_cards.py: `bore-depth eval` over the held-out
recordings of tools/train_defaults.sh (seeds 9000 and 9001 at density 1.6, 9000 domain-randomised;
never trained on). This test renders the first two frames of heldout_9000 again with the same
`bore-depth synth` command (rendering is deterministic) and evaluates each embedded default with
eval's code: its card's figure on that recording must hold, within the scatter of a two-frame
subset.
"""

import json
from pathlib import Path

import pytest

from bore_depth_ros.cli import main
from bore_depth_ros.engine import embedded_weights_path
from bore_depth_ros.replay.evaluate import EvalConfig, evaluate

DATA = Path(__file__).resolve().parent.parent / "bore_depth_ros" / "data"
# a two-frame subset scatters around the 20-frame figure: allow this much above the card; the
# Semi-SMD-style model's first set runs without a previous set (no temporal context), half of a
# two-frame subset, so its subset figure sits further above the card's (0.307 against 0.257)
SUBSET_MARGIN = {"bore_depth": 0.05, "svr": 0.05, "semi_smd": 0.08}
MODELS = ("bore_depth", "svr", "semi_smd")


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    path = tmp_path_factory.mktemp("heldout") / "heldout_9000"
    argv = ["synth", str(path), "--randomise", "--seed", "9000", "--density", "1.6", "--frames", "2"]
    assert main([*argv, "--rate", "5", "--no-lidar"]) == 0
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_default_weights_reach_their_card(heldout, tmp_path, model):
    assert embedded_weights_path(model) is not None, f"no embedded default for {model}"
    card = json.loads((DATA / f"{model}_default.card.json").read_text())
    mode = card["target"]["mode"]  # median_scaled for relative BoRe-Depth, metric for the others
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
    card_abs_rel = card["held_out"]["after"]["per_recording"]["heldout_9000"][mode]["abs_rel"]
    got = res.overall["median" if mode == "median_scaled" else "metric"]["abs_rel"]
    assert got <= card_abs_rel + SUBSET_MARGIN[model], (model, mode, got, card_abs_rel)
