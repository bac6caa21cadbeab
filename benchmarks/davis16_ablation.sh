#!/usr/bin/env bash
# The e-OSVOS ablation on the real DAVIS 2016 240p videos (train on
# train-no-dev, report on dev), on this 2-core CPU box:
#   1. a parent network (OSVOS training, FCN head so e-OSVOS can start from it);
#   2. hand-tuned single rate from the parent: plain SGD, Lovász loss, the
#      same 3 augmented copies as e-OSVOS, grid over rate x T;
#   3. meta-learned init + single rate, and + neuron-level rates, T = 10.
# Then benchmarks/summarize_runs.py prints the table for BENCHMARKS.md.
#
#   bash benchmarks/davis16_ablation.sh runs/davis16 [META_STEPS]
set -euo pipefail
R=${1:-runs/davis16}
META_STEPS=${2:-1000}
MAIN="python -m metavos.main"
mkdir -p "$R"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$R/ablation.log"; }

# Compiled programs are shared across the runs below (same shapes, rates
# are arguments), so each run does not pay XLA:CPU compile time again.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$R/jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1

if [ ! -d "$R/parent/checkpoints" ]; then
  log "parent network"
  $MAIN --config=configs/osvos.py:davis16_cpu --workdir="$R/parent" \
    --config.model.name=fcn --config.train.num_steps=4000 >"$R/parent.out" 2>&1
fi

for MODE in neuron global; do
  log "meta-learned init + $MODE rates"
  $MAIN --config=configs/eosvos.py:davis16_cpu --workdir="$R/meta_$MODE" \
    --config.meta.init_from="$R/parent/checkpoints" --config.meta.lr_mode=$MODE \
    --config.train.num_steps="$META_STEPS" >"$R/meta_$MODE.out" 2>&1
done

# Hand-tuned rate grid; 10-step jitted chunks keep compile time small.
for T in 10 50 100 1000; do
  if [ "$T" = 1000 ]; then LRS="0.0003 0.001 0.003 0.01"
  elif [ "$T" = 10 ]; then LRS="0.001 0.003 0.01 0.03 0.1 0.3 1.0"
  else LRS="0.001 0.003 0.01 0.03"; fi
  for LR in $LRS; do
    [ -f "$R/hand_T${T}_lr${LR}/metrics.json" ] && continue
    log "hand-tuned T=$T lr=$LR"
    $MAIN --config=configs/osvos.py:davis16_cpu --workdir="$R/hand_T${T}_lr${LR}" \
      --config.model.name=fcn --config.mode=evaluate \
      --config.restore="$R/parent/checkpoints" --config.finetune.loss=lovasz_hinge \
      --config.finetune.momentum=0.0 --config.finetune.copies=3 \
      --config.finetune.num_steps=$T --config.finetune.lr=$LR \
      --config.finetune.steps_per_call=10 >"$R/hand_T${T}_lr${LR}.out" 2>&1
  done
done
log "done"
python benchmarks/summarize_runs.py "$R" | tee "$R/summary.md"
