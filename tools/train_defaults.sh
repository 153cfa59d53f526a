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
bore-depth train "$repo/config/train/bore_depth_default.yaml" > bore_depth.log 2>&1 &
bore-depth train "$repo/config/train/svr_default.yaml" > svr.log 2>&1 &
wait
for m in bore_depth svr; do
  cp "train_output/$m/weights.pt" "$repo/bore_depth_ros/data/${m}_default.pt"
  cp "train_output/$m/card.md" "$repo/bore_depth_ros/data/${m}_default.card.md"
  cp "train_output/$m/card.json" "$repo/bore_depth_ros/data/${m}_default.card.json"
done
echo "embedded defaults updated in $repo/bore_depth_ros/data"
