#!/usr/bin/env bash
# OSVOS with 1, 2 and 4 annotated frames per video (evenly spaced, as in the
# OSVOS paper's "more annotated frames help" experiment) on the real DAVIS
# 2016 240p dev videos, from the parent network of davis16_ablation.sh.
# Two fine-tuning schedules: OSVOS as configured in configs/osvos.py, and the
# best hand-tuned Lovasz/SGD schedule of the ablation (T = 100, rate 0.03).
# The score table counts only frames that were NOT given to the model, so
# extra annotated frames are not scored as free perfect frames.
#
#   bash benchmarks/davis16_annotated_frames.sh runs/davis16
set -euo pipefail
R=${1:-runs/davis16}
MAIN="python -m metavos.main"
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$R/jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1
[ -d "$R/parent/checkpoints" ] || { echo "Run benchmarks/davis16_ablation.sh $R first (it trains the parent)."; exit 2; }
for N in 1 2 4; do
  W="$R/frames${N}_osvos"
  [ -f "$W/metrics.json" ] || $MAIN --config=configs/osvos.py:davis16_cpu --workdir="$W" \
    --config.model.name=fcn --config.mode=evaluate --config.restore="$R/parent/checkpoints" \
    --config.finetune.num_annotated=$N >"$W.out" 2>&1
  W="$R/frames${N}_lovasz"
  [ -f "$W/metrics.json" ] || $MAIN --config=configs/osvos.py:davis16_cpu --workdir="$W" \
    --config.model.name=fcn --config.mode=evaluate --config.restore="$R/parent/checkpoints" \
    --config.finetune.loss=lovasz_hinge --config.finetune.momentum=0.0 \
    --config.finetune.copies=3 --config.finetune.num_steps=100 --config.finetune.lr=0.03 \
    --config.finetune.steps_per_call=10 --config.finetune.num_annotated=$N >"$W.out" 2>&1
done
python benchmarks/score_unannotated.py "$R"/frames*_osvos "$R"/frames*_lovasz
