#!/usr/bin/env bash
# The OSVOS/VGG16 fine-tuning rate, chosen on the first 2 dev videos
# (bmx-bumps, dance-jump) from one parent checkpoint of
# benchmarks/osvos_vgg16_davis16.sh: 100 SGD+momentum steps with blocks 1-3
# frozen at each rate, and the parent without fine-tuning (rate "none").
# OPTIMIZER=adam scores Adam rates instead (the preset's optimiser since
# 2026-12-06; the rows in BENCHMARKS.md before that are SGD's). The bank of
# augmented support copies stays at 16 and their zoom at 0.75-1.25x, as in
# every row this script made (the preset's: 64 copies since the evening of
# 2026-12-06, zoomed 0.5-1.5x since that night).
#
#   bash benchmarks/osvos_vgg16_lr.sh runs/osvos_vgg16 200 "none 0.001 0.005 0.02"
set -euo pipefail
R=$1; STEP=$2; RATES=${3:-"none 0.001 0.005 0.02"}; OPTIMIZER=${OPTIMIZER:-sgd}
for lr in $RATES; do
  W="$R/lr_${lr}_step$STEP"
  flags="--config.finetune.lr=$lr"
  [ "$lr" = none ] && flags="--config.finetune.num_steps=0"
  [ -f "$W/metrics.json" ] || python -m metavos.main \
    --config=configs/osvos.py:davis16_cpu,backbone=vgg16 --workdir="$W" --config.mode=evaluate \
    --config.restore="$R/checkpoints/$STEP" --config.data.max_eval_videos=2 \
    --config.finetune.num_steps=100 --config.finetune.frozen_stages=3 \
    --config.finetune.optimizer="$OPTIMIZER" --config.finetune.bank=16 \
    --config.finetune.augment.scale_range='(0.75,1.25)' \
    --config.eval.pictures=False $flags >"$W.out" 2>&1
  echo "lr $lr: $(grep 'J&F-Mean' "$W.out" | tail -1)"
done
