#!/usr/bin/env bash
# Reproduces the embedded default weights of the three models (issue 16):
#   tools/train_defaults.sh [render|train|cards|install|all]   (default: all)
# render  : domain-randomised training recordings (seeds 1000-1031, `synth --randomise`, 24 frames
#           each), plain streets (seeds 2000-2015, object density 0.6-1.8, 24 frames each) and the
#           held-out recordings (seeds 9000/9001, density 1.6: never trained on)
# train   : BoRe-Depth, the SVR-style student and the Semi-SMD-style model side by side, one CPU
#           thread each (config/train/*_default.yaml, each after its *_stage1.yaml: BoRe-Depth
#           on the plain streets, SVR on the plain and the randomised ones, Semi-SMD:
#           warm-up + cosine, EMA, per-image SILog,
#           gradient matching, a low-resolution warm-up then the recordings' 192x320); each run
#           resumes exactly from its last.ckpt, so the step can be repeated across sessions
# cards   : re-evaluates the held-out recordings with `bore-depth eval` and writes the cards
#           (tools/make_cards.py) next to the new weights
# install : copies weights and cards into bore_depth_ros/data (refuses to replace them unless
#           FORCE=1: they are tracked in git); KEEP="model ..." keeps those models' previous weights
#           (their cards then show both), as an earlier round did for bore_depth and svr
# Work goes to $WORK (default ./bore_depth_training). BoRe-Depth and SVR start from the previous
# embedded weights (init/ holds a copy made on the first run); Semi-SMD starts from the previous
# SVR-style encoder and decoder (tools/init_from.py), its fusion blocks from scratch.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
. "$repo/tools/env.sh"
work=${WORK:-$PWD/bore_depth_training}
stage=${1:-all}
mkdir -p "$work" && cd "$work"

render() {
  local jobs=${JOBS:-2} seeds=()
  for s in $(seq 1000 1031); do
    [[ -d train_data/rand_$s ]] || seeds+=("$s")
  done
  # two renderers at a time (pybullet is single-threaded)
  printf '%s\n' "${seeds[@]}" | xargs -r -P "$jobs" -I{} \
    bore-depth synth train_data/rand_{} --randomise --seed {} --frames 24 --rate 5 --no-lidar
  # plain streets (BoRe-Depth's recordings): seed 2000 + i at density 0.6 + 0.08 i
  for s in $(seq 2000 2015); do
    [[ -d train_data/plain_$s ]] || echo "$s $(python -c "print(round(0.6 + 0.08 * ($s - 2000), 2))")"
  done | xargs -r -P "$jobs" -n 2 sh -c \
    'bore-depth synth train_data/plain_$0 --seed $0 --density $1 --frames 24 --rate 5 --no-lidar'
  [[ -d train_data/heldout_9000 ]] ||
    bore-depth synth train_data/heldout_9000 --randomise --seed 9000 --density 1.6 --frames 20 --rate 5 --no-lidar
  [[ -d train_data/heldout_9001 ]] ||
    bore-depth synth train_data/heldout_9001 --seed 9001 --density 1.6 --frames 20 --rate 5 --no-lidar
}

train() {
  mkdir -p init
  for m in bore_depth svr; do
    [[ -f init/${m}_default.pt ]] || cp "$repo/bore_depth_ros/data/${m}_default.pt" "init/${m}_default.pt"
  done
  [[ -f init/semi_smd_init.pt ]] ||
    python "$repo/tools/init_from.py" --model semi_smd --source init/svr_default.pt --out init/semi_smd_init.pt
  # BoRe-Depth in two stages: plain streets at 128x224, then at the recordings' 192x320
  { bore-depth train "$repo/config/train/bore_depth_stage1.yaml" &&
    bore-depth train "$repo/config/train/bore_depth_default.yaml"; } >> train_bore_depth.log 2>&1 &
  # SVR in two stages at 192x320 on the plain and the randomised streets
  { bore-depth train "$repo/config/train/svr_stage1.yaml" &&
    bore-depth train "$repo/config/train/svr_default.yaml"; } >> train_svr.log 2>&1 &
  # Semi-SMD in two stages: from the SVR-style encoder/decoder, then a lower-rate fine-tune
  { bore-depth train "$repo/config/train/semi_smd_stage1.yaml" &&
    bore-depth train "$repo/config/train/semi_smd_default.yaml"; } >> train_semi_smd.log 2>&1 &
  wait
}

cards() {
  # KEEP="bore_depth svr": models whose previous weights stay shipped (the retrained ones did worse)
  # shellcheck disable=SC2086
  python "$repo/tools/make_cards.py" --work "$work" --out "$work/cards" --before init \
    --docs "$repo/docs/images" --keep ${KEEP:-}
}

install() {
  for m in bore_depth svr semi_smd; do
    cp "cards/${m}_default.card.md" "cards/${m}_default.card.json" "$repo/bore_depth_ros/data/"
    [[ " ${KEEP:-} " == *" $m "* ]] && continue   # the previous weights stay
    dst="$repo/bore_depth_ros/data/${m}_default.pt"
    if [[ -e $dst && ${FORCE:-0} != 1 ]] && ! cmp -s "train_output/$m/weights.pt" "$dst"; then
      echo "refusing to replace $dst (tracked in git): run with FORCE=1" >&2
      exit 1
    fi
    cp "train_output/$m/weights.pt" "$dst"
  done
  echo "embedded weights and cards updated in $repo/bore_depth_ros/data"
}

case $stage in
  render) render ;;
  train) train ;;
  cards) cards ;;
  install) install ;;
  all) render && train && cards && install ;;
  *) echo "usage: $0 [render|train|cards|install|all]" >&2; exit 2 ;;
esac
