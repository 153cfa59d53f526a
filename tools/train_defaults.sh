#!/usr/bin/env bash
# Reproduces the embedded default weights: renders the training and held-out recordings, trains
# BoRe-Depth and the SVR-style student side by side (one CPU thread each), and copies the results
# into bore_depth_ros/data. About an hour on 2 CPU cores. Run from any folder; work goes to $WORK.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
. "$repo/tools/env.sh"
work=${WORK:-$PWD/bore_depth_training}
mkdir -p "$work" && cd "$work"
for s in 10 11 12 13; do
  [[ -d train_data/rec_$s ]] || bore-depth synth train_data/rec_$s --frames 80 --seed $s --no-lidar --rate 5
done
[[ -d train_data/heldout_99 ]] || bore-depth synth train_data/heldout_99 --frames 20 --seed 99 --density 1.3 --rate 5 --no-lidar
for stage in "" _stage2; do   # stage 2: a warm restart from stage 1's last.ckpt
  bore-depth train "$repo/config/train/bore_depth_default$stage.yaml" > "bore_depth$stage.log" 2>&1 &
  bore-depth train "$repo/config/train/svr_default$stage.yaml" > "svr$stage.log" 2>&1 &
  wait
done
for m in bore_depth svr; do
  cp "train_output/${m}_ft/weights.pt" "$repo/bore_depth_ros/data/${m}_default.pt"
done
# The shipped cards (bore_depth_ros/data/*_default.card.*) combine both stages' cards
# (train_output/<model>/card.json and train_output/<model>_ft/card.json).
echo "embedded weights updated in $repo/bore_depth_ros/data; cards: train_output/*/card.md"
